"""Hypervolume and wall time of evosax strategies (multi-objective shaping) against our
baselines, on the packaged published s benchmark (surrogate objectives).

Every method gets the same evaluation budget and population; each (method, seed) prints one
JSON line (final hypervolume of everything evaluated, min-max normalized by the smallest and
largest arch of the space, reference point 1; wall time of the compiled run, the first seed
including compilation), then one summary line per method (mean and std over seeds).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/evosax_search.py --budget 1024 --seeds 2 \
        [--population 128] [--objectives perplexity,energy:a100] \
        [--methods nsga2,random_search,evosax:CMA_ES/nsga2,...]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import numpy as np

from hwgpt_jax.bench import Benchmark
from hwgpt_jax.pareto import hypervolume, normalization_bounds, normalize_objectives
from hwgpt_jax.search import build_problem, make_algorithm, run_compiled

DEFAULT_METHODS = (
    "random_search", "nsga2", "mo_regularized_evolution", "local_search",
    "evosax:CMA_ES/nsga2", "evosax:CMA_ES/hv", "evosax:CMA_ES/chebyshev", "evosax:SNES/nsga2",
    "evosax:Open_ES/nsga2", "evosax:SimpleGA/nsga2", "evosax:DifferentialEvolution/nsga2",
    "evosax:DifferentialEvolution/hv", "evosax:PSO/nsga2", "evosax:DiffusionEvolution/nsga2",
)


def build(method: str, space, n_objectives: int, population: int):
    """`name` or `evosax:<Strategy>/<shaping>` -> algorithm at this population."""
    name, _, shaping = method.partition("/")
    if name.startswith("evosax:"):
        return make_algorithm(name, space, n_objectives, population_size=population,
                              shaping=shaping or "nsga2", archive_size=population)
    if name == "random_search":
        return make_algorithm(name, space, n_objectives, batch_size=population)
    if name == "mo_regularized_evolution":
        return make_algorithm(name, space, n_objectives, population_size=population,
                              batch_size=max(1, population // 8))
    if name == "local_search":
        return make_algorithm(name, space, n_objectives, batch_size=min(64, population),
                              archive_size=population)
    return make_algorithm(name, space, n_objectives, population_size=population)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--population", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--objectives", default="perplexity,energy:a100")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    args = parser.parse_args()
    bench = Benchmark.published("s")
    objectives = args.objectives.split(",")
    problem = build_problem(bench.space, objectives, bench=bench)
    m = problem.n_objectives
    lower, upper = normalization_bounds(lambda arch, key: problem.metrics_fn(arch, key)[:, :m],
                                        bench.space)
    common = {"benchmark": "published s", "objectives": objectives, "budget": args.budget,
              "population": args.population, "device": jax.devices()[0].device_kind,
              "platform": platform.machine(), "jax": jax.__version__}
    for method in args.methods.split(","):
        algorithm = build(method, bench.space, m, args.population)
        values, times = [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            _, result = run_compiled(algorithm, problem, args.budget, jax.random.key(seed),
                                     seed=seed)
            times.append(time.perf_counter() - start)
            normalized = normalize_objectives(result.objectives.astype(np.float64), lower, upper)
            values.append(hypervolume(normalized, np.ones(m)))
            print(json.dumps({**common, "method": method, "seed": seed,
                              "evaluations": len(result.genes), "hypervolume": values[-1],
                              "wall_s": round(times[-1], 3),
                              "includes_compile": seed == 0}), flush=True)
        print(json.dumps({**common, "method": method, "summary": True,
                          "hypervolume_mean": float(np.mean(values)),
                          "hypervolume_std": float(np.std(values)),
                          "wall_s_after_compile_mean": float(np.mean(times[1:]))
                          if len(times) > 1 else None}), flush=True)


if __name__ == "__main__":
    main()
