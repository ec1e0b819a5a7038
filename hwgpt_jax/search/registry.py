"""The search algorithms by name: what `hwgpt search --algorithm` and the search stage accept.

    from hwgpt_jax.search.registry import make_algorithm
    algorithm = make_algorithm("nsga2", space, n_objectives=2, population_size=256)

A new algorithm is one module (an `ask`/`tell` `SearchAlgorithm` subclass, see `base.py`) plus
one entry in `ALGORITHMS` (and in `POPULATION_BASED` or `MODEL_BASED`); `evosax:<Strategy>`
wraps any evosax strategy without an entry.
"""

from __future__ import annotations

from typing import Any

from hwgpt_jax.search.base import SearchAlgorithm
from hwgpt_jax.search.ehvi import EHVI
from hwgpt_jax.search.evosax_search import PREFIX as EVOSAX_PREFIX
from hwgpt_jax.search.evosax_search import EvosaxSearch, strategy_names
from hwgpt_jax.search.local_search import LocalSearch
from hwgpt_jax.search.lsbo import LSBO
from hwgpt_jax.search.mo_regularized_evolution import MORegularizedEvolution
from hwgpt_jax.search.nsga2 import NSGA2
from hwgpt_jax.search.random_search import RandomSearch
from hwgpt_jax.search.rsbo import RSBO
from hwgpt_jax.space.arch import SearchSpace

ALGORITHMS: dict[str, type[SearchAlgorithm]] = {
    cls.name: cls
    for cls in (RandomSearch, MORegularizedEvolution, NSGA2, LocalSearch, RSBO, LSBO, EHVI)
}
POPULATION_BASED = ("random_search", "mo_regularized_evolution", "nsga2", "local_search")
MODEL_BASED = ("rsbo", "lsbo", "ehvi")  # GP on a fixed-capacity archive: `max_evaluations`


def check_algorithm_name(name: str) -> None:
    """Raise a one-line ValueError unless `name` is registered or `evosax:<Strategy>`."""
    if name.startswith(EVOSAX_PREFIX):
        if name not in strategy_names():
            raise ValueError(f"unknown evosax strategy {name!r}; expected one of "
                             f"{strategy_names()}")
    elif name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {sorted(ALGORITHMS)} "
                         f"or '{EVOSAX_PREFIX}<Strategy>' (any evosax strategy)")


def make_algorithm(name: str, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                   **config: Any) -> SearchAlgorithm:
    """Build a registered algorithm by name; `config` are its constructor options.

    `evosax:<Strategy>` (e.g. `evosax:CMA_ES`) wraps that evosax strategy as a multi-objective
    search (`EvosaxSearch`; options `shaping`, `population_size`, `archive_size`,
    `strategy_params`, `genotype`).
    """
    check_algorithm_name(name)
    if name.startswith(EVOSAX_PREFIX):
        return EvosaxSearch(space, n_objectives, n_constraints,
                            strategy=name[len(EVOSAX_PREFIX):], **config)
    return ALGORITHMS[name](space, n_objectives, n_constraints, **config)


__all__ = ["ALGORITHMS", "EVOSAX_PREFIX", "MODEL_BASED", "POPULATION_BASED",
           "check_algorithm_name", "make_algorithm", "strategy_names"]
