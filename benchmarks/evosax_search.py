"""Hypervolume and wall time of evosax strategies (multi-objective shaping) against our
baselines and pymoo's NSGA-II, on the packaged published s benchmark (surrogate objectives),
plus a brute-force check on the fully enumerated tiny space.

Every method gets the same evaluation budget; each (method, seed) prints one JSON line (final
hypervolume of everything evaluated, min-max normalized by the smallest and largest arch of
the space, reference point 1; wall time of the compiled run, the first seed including
compilation), then one summary line per method (mean and std over seeds, wall time after
compilation). `--methods` takes names, `evosax:<Strategy>/<shaping>[/<NAME=VALUE>+...]`
(the last part sets fields of the strategy's evosax Params, and `genotype=index` searches
choice indices instead of the unit box), and the groups
`baselines` (RS, MO-RE, NSGA-II, LS), `gp` (RSBO, LSBO, EHVI: run at `--gp-seeds` seeds, on a
GP archive of at most `--gp-capacity` evaluations), `evosax` (every strategy that builds,
nsga2 shaping), `evosax-shapings` (hv and chebyshev for `--shaping-subset`) and `pymoo`
(pymoo's NSGA-II, one run).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/evosax_search.py --budget 4096 --seeds 5 \
        [--first-seed 0] [--population 128] [--objectives perplexity,energy:a100] \
        [--methods baselines,evosax]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/evosax_search.py --tiny --budget 1024
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from hwgpt_jax.search.base import Problem
from hwgpt_jax.search.objectives import build_problem, random_mlp_objective
from hwgpt_jax.search.pareto import (
    hypervolume,
    non_dominated_mask,
    normalization_bounds,
    normalize_objectives,
)
from hwgpt_jax.search.registry import make_algorithm, strategy_names
from hwgpt_jax.search.runner import run_compiled
from hwgpt_jax.space.arch import SPACES
from hwgpt_jax.space.rules import canonical_genes

GROUPS = {
    "baselines": ("random_search", "mo_regularized_evolution", "nsga2", "local_search"),
    "gp": ("rsbo", "lsbo", "ehvi"),
}


def build(method: str, space, n_objectives: int, population: int, gp_capacity: int,
          evosax_archive: int | None = None):
    """`name` or `evosax:<Strategy>/<shaping>[/NAME=VALUE+...]` (`genotype=unit|index`
    among them picks the genotype) -> algorithm at this population."""
    name, _, rest = method.partition("/")
    shaping, _, params = rest.partition("/")
    if name.startswith("evosax:"):
        fields = [p for p in params.split("+") if p and not p.startswith("genotype=")]
        genotype = [p.split("=", 1)[1] for p in params.split("+") if p.startswith("genotype=")]
        return make_algorithm(name, space, n_objectives, population_size=population,
                              shaping=shaping or "nsga2",
                              archive_size=population if evosax_archive is None
                              else evosax_archive,
                              strategy_params=tuple(fields), genotype=(genotype or [None])[-1])
    options = {
        "random_search": {"batch_size": population},
        "mo_regularized_evolution": {"population_size": population,
                                     "batch_size": max(1, population // 8)},
        "local_search": {"batch_size": min(64, population), "archive_size": population},
        "nsga2": {"population_size": population},
    }.get(name, {"batch_size": min(128, gp_capacity // 8), "max_evaluations": gp_capacity})
    return make_algorithm(name, space, n_objectives, **options)


def expand(methods: str, shaping_subset: str) -> list[str]:
    """Method groups -> method names."""
    names: list[str] = []
    for method in methods.split(","):
        if method == "evosax":
            names += [f"{name}/nsga2" for name in strategy_names()]
        elif method == "evosax-shapings":
            names += [f"evosax:{s}/{shaping}" for shaping in ("hv", "chebyshev")
                      for s in shaping_subset.split(",")]
        else:
            names += list(GROUPS.get(method, (method,)))
    return names


def pymoo_nsga2(problem: Problem, budget: int, population: int, seed: int) -> np.ndarray:
    """Objectives of every evaluation of one pymoo NSGA-II run (integer genes, SBX and
    polynomial mutation with rounding repair, duplicates eliminated: pymoo's integer recipe)."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem as PymooProblem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    cardinality = np.asarray(problem.space.gene_cardinality)
    evaluate = jax.jit(lambda genes: problem.evaluate(genes, jax.random.key(0))[0])
    seen: list[np.ndarray] = []

    class Surrogate(PymooProblem):
        def __init__(self):
            super().__init__(n_var=len(cardinality), n_obj=problem.n_objectives, xl=0,
                             xu=cardinality - 1, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            values = np.asarray(evaluate(jnp.asarray(np.rint(x).astype(np.int32))))
            seen.append(values)
            out["F"] = values

    algorithm = NSGA2(pop_size=population, sampling=IntegerRandomSampling(),
                      crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                      mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
                      eliminate_duplicates=True)
    minimize(Surrogate(), algorithm, ("n_eval", budget), seed=seed, verbose=False)
    return np.concatenate(seen)[:budget]


def run_method(method, problem, args, seeds, lower, upper, common, scale=1.0) -> None:
    """Every seed of one method, then its summary line (hypervolumes times `scale`)."""
    values, times = [], []
    m = problem.n_objectives
    first = args.first_seed
    for seed in range(first, first + seeds):
        start = time.perf_counter()
        if method == "pymoo":
            objectives = pymoo_nsga2(problem, args.budget, args.population, seed)
        else:
            algorithm = build(method, problem.space, m, args.population, args.gp_capacity,
                              args.evosax_archive)
            _, result = run_compiled(algorithm, problem, args.budget, jax.random.key(seed),
                                     seed=seed)
            objectives = result.objectives
        times.append(time.perf_counter() - start)
        normalized = normalize_objectives(objectives.astype(np.float64), lower, upper)
        values.append(scale * hypervolume(normalized, np.ones(m)))
        print(json.dumps({**common, "method": method, "seed": seed,
                          "evaluations": len(objectives), "hypervolume": values[-1],
                          "wall_s": round(times[-1], 3), "includes_compile": seed == first}),
              flush=True)
    print(json.dumps({**common, "method": method, "summary": True, "seeds": seeds,
                      "first_seed": first,
                      "hypervolume_mean": float(np.mean(values)),
                      "hypervolume_std": float(np.std(values)),
                      "wall_s_first": round(times[0], 3),
                      "wall_s_after_compile_mean": round(float(np.mean(times[1:])), 3)
                      if len(times) > 1 else None}), flush=True)


def tiny_problem() -> tuple[Problem, np.ndarray]:
    """The tiny space with random-MLP objectives, and every one of its archs' objectives."""
    space = SPACES["tiny"]
    genes = np.array(list(itertools.product(*[range(c) for c in space.gene_cardinality])))
    genes = np.unique(np.asarray(canonical_genes(space, genes)), axis=0)
    problem = Problem(space, random_mlp_objective(space, seed=0), 2)
    everything = np.asarray(problem.evaluate(jnp.asarray(genes, jnp.int32),
                                             jax.random.key(0))[0])
    return problem, everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--population", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="run seeds first-seed .. first-seed + seeds - 1 (held-out seeds "
                             "for settings chosen on seeds 0 .. seeds - 1)")
    parser.add_argument("--gp-seeds", type=int, default=1)
    parser.add_argument("--gp-capacity", type=int, default=1024)
    parser.add_argument("--objectives", default="perplexity,energy:a100")
    parser.add_argument("--methods", default="baselines,evosax")
    parser.add_argument("--evosax-archive", type=int, default=None,
                        help="Pareto archive size of the evosax:<Strategy> methods (default: "
                             "the population; 0 keeps none, as our NSGA-II and MO-RE: the "
                             "hypervolume is taken from every evaluation either way)")
    parser.add_argument("--shaping-subset", default="CMA_ES,DifferentialEvolution,SimpleGA,PSO")
    parser.add_argument("--tiny", action="store_true",
                        help="brute-force check on the enumerated tiny space (random-MLP "
                             "objectives): HV as a fraction of the true front's")
    args = parser.parse_args()
    common = {"budget": args.budget, "population": args.population,
              "device": jax.devices()[0].device_kind, "platform": platform.machine(),
              "jax": jax.__version__}
    if args.tiny:
        problem, everything = tiny_problem()
        lower, upper = everything.min(axis=0), everything.max(axis=0)
        true_hv = hypervolume(normalize_objectives(everything, lower, upper), np.ones(2))
        common.update(benchmark="tiny space, all archs enumerated", n_archs=len(everything),
                      objectives="random_mlp_objective(seed 0)", true_front_hypervolume=true_hv,
                      true_front_size=int(np.sum(np.asarray(non_dominated_mask(everything)))),
                      note="hypervolume below is a fraction of the true front's")
        lower_hv, upper_hv = lower, upper
    else:
        from hwgpt_jax.surrogates.benchmark import Benchmark

        bench = Benchmark.published("s")
        problem = build_problem(bench.space, args.objectives.split(","), bench=bench)
        m = problem.n_objectives
        lower_hv, upper_hv = normalization_bounds(
            lambda arch, key: problem.metrics_fn(arch, key)[:, :m], bench.space)
        true_hv = 1.0
        common.update(benchmark="published s", objectives=args.objectives.split(","))
    for method in expand(args.methods, args.shaping_subset):
        seeds = 1 if method == "pymoo" else args.gp_seeds if method in GROUPS["gp"] else args.seeds
        try:
            build(method, problem.space, problem.n_objectives, args.population,
                  args.gp_capacity) if method != "pymoo" else None
        except ValueError as error:
            print(json.dumps({**common, "method": method, "builds": False,
                              "error": str(error)}), flush=True)
            continue
        run_method(method, problem, args, seeds, lower_hv, upper_hv, common, 1.0 / true_hv)


if __name__ == "__main__":
    main()
