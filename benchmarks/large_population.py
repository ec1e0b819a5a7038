"""One large-population search on the packaged published s benchmark (surrogate objectives):
wall time and peak memory of the whole compiled run, in one process.

    PYTHONPATH=$PWD /usr/bin/time -v .venv/bin/python benchmarks/large_population.py \
        --population 65536 --generations 100 --method nsga2 [--objectives perplexity,energy:a100]

`--method` is a registered name or `evosax:<Strategy>/<shaping>` (archive of at most 4,096).
A run that does not fit in free memory is refused before it starts (one line).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import jax

from hwgpt_jax.search.objectives import build_problem
from hwgpt_jax.search.registry import make_algorithm
from hwgpt_jax.search.runner import run_compiled
from hwgpt_jax.surrogates.benchmark import Benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=65536)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--method", default="nsga2")
    parser.add_argument("--objectives", default="perplexity,energy:a100")
    args = parser.parse_args()
    bench = Benchmark.published("s")
    objectives = args.objectives.split(",")
    problem = build_problem(bench.space, objectives, bench=bench)
    name, _, shaping = args.method.partition("/")
    options = {"population_size": args.population}
    if name.startswith("evosax:"):
        options.update(shaping=shaping or "nsga2", archive_size=min(args.population, 4096))
    try:
        algorithm = make_algorithm(name, bench.space, problem.n_objectives, **options)
        start = time.perf_counter()
        _, result = run_compiled(algorithm, problem, args.population * args.generations,
                                 jax.random.key(0))
    except ValueError as error:
        sys.exit(f"error: {error}")
    print(json.dumps({
        "benchmark": "published s", "objectives": objectives, "method": args.method,
        "population": args.population, "generations": args.generations,
        "evaluations": len(result.genes), "wall_s_including_compile":
        round(time.perf_counter() - start, 1),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "device": jax.devices()[0].device_kind, "platform": platform.machine()}))


if __name__ == "__main__":
    main()
