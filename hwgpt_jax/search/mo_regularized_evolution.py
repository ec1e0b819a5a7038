"""Multi-objective regularized evolution (MO-RE), as an evosax algorithm.

Regularized ("aging") evolution (Real et al., "Regularized evolution for image classifier
architecture search", AAAI 2019) keeps a queue of the `population_size` most recent
architectures; each child mutates one gene of the winner of a tournament among
`tournament_size` random queue members, and the oldest member dies. The multi-objective
variant (as in syne-tune's MO regularized evolution, used by HW-GPT-Bench) ranks the
tournament by non-dominated rank, ties by crowding distance, with constrained domination.
Batched: each ask makes `batch_size` children from independent tournaments, and the
`batch_size` oldest die. The first asks fill the queue with random architectures.

The population machinery is evosax's: `MORegularizedEvolutionStrategy` is an evosax
`PopulationBasedAlgorithm` on choice indices (asking `batch_size` children, keeping a queue of
`population_size`), run by the multi-objective wrapper of `hwgpt_jax.search.evosax_search`,
whose nsga2 shaping ranks queue and children jointly by (rank, crowding) at every tell; a
tournament is won by the lowest such fitness.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from evosax.algorithms.population_based.base import Params as BaseParams
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm
from evosax.algorithms.population_based.base import State as BaseState
from flax import struct

from hwgpt_jax.search.base import mutate_one
from hwgpt_jax.search.evosax_search import EvosaxSearch
from hwgpt_jax.space.arch import SearchSpace
from hwgpt_jax.space.rules import random_genes


@struct.dataclass
class State(BaseState):
    origin: jax.Array  # (Q,) row of each member in (old queue + children) at the last tell
    oldest: jax.Array  # slot of the oldest member (next to be replaced)
    n_filled: jax.Array  # slots holding evaluated members


@struct.dataclass
class Params(BaseParams):
    pass


class MORegularizedEvolutionStrategy(PopulationBasedAlgorithm):
    """Aging evolution: `population_size` children per ask, a queue of `queue_size`."""

    genotype = "index"  # solutions hold choice indices (as floats)

    def __init__(self, population_size: int, solution: jax.Array,
                 cardinality: tuple[int, ...], queue_size: int, tournament_size: int):
        super().__init__(population_size, solution)
        self.cardinality = tuple(cardinality)
        self.queue_size, self.tournament_size = queue_size, tournament_size

    @property
    def _default_params(self) -> Params:
        return Params()

    def _init(self, key, params):
        q, g = self.queue_size, self.num_dims
        return State(population=jnp.zeros((q, g)), fitness=jnp.full((q,), jnp.inf),
                     origin=jnp.arange(q, dtype=jnp.int32), oldest=jnp.int32(0),
                     n_filled=jnp.int32(0), best_solution=jnp.zeros(g), best_fitness=jnp.inf,
                     generation_counter=0)

    def init(self, key, population, fitness, params):
        """The first evaluated batch is told to an empty queue."""
        return self.tell(key, population, fitness, self._init(key, params), params)[0]

    def _ask(self, key, state, params):
        key_random, key_pick, key_mutate = jax.random.split(key, 3)
        b = self.population_size
        picks = jax.random.randint(key_pick, (b, self.tournament_size), 0, self.queue_size)
        winners = jnp.take_along_axis(picks, jnp.argmin(state.fitness[picks], 1)[:, None], 1)
        children = mutate_one(key_mutate, state.population[winners[:, 0]].astype(jnp.int32),
                              self.cardinality)
        fresh = random_genes(key_random, self.cardinality, b)
        children = jnp.where(state.n_filled < self.queue_size, fresh, children)
        return children.astype(jnp.float32), state

    def _tell(self, key, population, fitness, state, params):
        """The children replace the `population_size` oldest slots (empty ones first)."""
        b, q = self.population_size, self.queue_size
        slots = (state.oldest + jnp.arange(b)) % q
        origin = jnp.arange(q, dtype=jnp.int32).at[slots].set(q + jnp.arange(b, dtype=jnp.int32))
        return state.replace(
            population=state.population.at[slots].set(population),
            fitness=state.fitness.at[slots].set(fitness), origin=origin,
            oldest=(state.oldest + b) % q, n_filled=jnp.minimum(state.n_filled + b, q))


class MORegularizedEvolution(EvosaxSearch):
    """Aging-population evolution with parents chosen by non-dominated rank."""

    name = "mo_regularized_evolution"

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 population_size: int = 256, batch_size: int | None = None,
                 tournament_size: int = 10):
        batch_size = max(1, population_size // 8) if batch_size is None else batch_size
        if population_size < 2 or not 1 <= batch_size <= population_size:
            raise ValueError(f"need population_size >= 2 and 1 <= batch_size <= population_size;"
                             f" got {population_size}, {batch_size}")
        if population_size % batch_size:
            raise ValueError(f"population_size ({population_size}) must be a multiple of "
                             f"batch_size ({batch_size})")
        if not 1 <= tournament_size <= population_size:
            raise ValueError(f"tournament_size must be in [1, population_size]; got "
                             f"{tournament_size}")
        options = (("queue_size", population_size), ("tournament_size", tournament_size))
        super().__init__(space, n_objectives, n_constraints,
                         strategy=MORegularizedEvolutionStrategy, shaping="nsga2",
                         population_size=batch_size, archive_size=0,
                         strategy_options=options)
        self.batch_size, self.queue_size = batch_size, population_size
        self.min_budget = population_size
