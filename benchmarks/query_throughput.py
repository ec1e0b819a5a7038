"""Query throughput of the surrogate Benchmark: archs per second, batched vs one at a time.

Measures, for N archs (default 100,000): (a) `Benchmark.query` (validation of the NumPy input,
encoding and every surrogate in one jit call), (b) the pure jitted `objective_fn` on device
arrays (what a search loop calls), each for perplexity alone and for perplexity + latency +
energy on 3 devices; and (c) a Python loop of single-arch `query` calls on the same model.
Prints JSON lines (figure, configuration, device). Reference (issue 6): the PyTorch 4 x 128
perplexity MLP of HW-GPT-Bench answers 9,400 archs/s per arch and 804,000 archs/s batched.

Each batched line also gives the process CPU time of a call (all threads) and the load average,
since other processes may share the cores: `archs_per_cpu_second` does not depend on them.

Usage (surrogates of the s space fitted on the published data):
    .venv/bin/hwgpt fit --data ../shared/reference/hwgpt-bench/hwgpt_s_full.npz \
        --config default --out /tmp/bench_s
    .venv/bin/python benchmarks/query_throughput.py --surrogates /tmp/bench_s
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.surrogates.benchmark import Benchmark


def timed(fn, reps: int) -> tuple[float, float]:
    """Median wall time and median process CPU time of `reps` calls after one warm-up
    (compilation) call."""
    jax.block_until_ready(fn())
    walls, cpus = [], []
    for _ in range(reps):
        cpu, start = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surrogates", required=True, help="folder written by `hwgpt fit`")
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--loop-n", type=int, default=2000, help="archs in the Python loop")
    parser.add_argument("--devices", nargs="+", default=None, help="3 devices (default: first)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    bench = Benchmark.load(args.surrogates)
    devices = args.devices or sorted(set(bench.devices("latency")) &
                                     set(bench.devices("energy")))[:3]
    sets = {"perplexity": ["perplexity"],
            "ppl+lat+energy@3": ["perplexity"] + [f"{m}:{d}" for m in ("latency", "energy")
                                                  for d in devices]}
    archs = bench.space.sample(jax.random.key(args.seed), args.n)
    archs_np = archs.to_numpy()
    base = {"n_archs": args.n, "scale": bench.space.scale, "jax_device": str(jax.devices()[0]),
            "host": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "reps": args.reps, "surrogates": args.surrogates, "jax": jax.__version__}
    for name, keys in sets.items():
        load = load_average()
        seconds, cpu = timed(lambda keys=keys: bench.query(archs_np, keys), args.reps)
        print(json.dumps({"figure": "archs_per_second", "path": "Benchmark.query (batched)",
                          "metrics": keys, "value": args.n / seconds, "seconds": seconds,
                          "cpu_seconds": cpu, "archs_per_cpu_second": args.n / cpu,
                          "load_average_1min": [load, load_average()], **base}), flush=True)
        objective = jax.jit(bench.objective_fn(keys))
        key = jax.random.key(0)
        load = load_average()
        seconds_fn, cpu_fn = timed(lambda objective=objective: objective(archs, key), args.reps)
        print(json.dumps({"figure": "archs_per_second", "path": "jit(objective_fn) (batched)",
                          "metrics": keys, "value": args.n / seconds_fn,
                          "seconds": seconds_fn, "cpu_seconds": cpu_fn,
                          "archs_per_cpu_second": args.n / cpu_fn,
                          "load_average_1min": [load, load_average()], **base}), flush=True)
        bench.query(archs_np[0], keys)  # compile the single-arch shape
        start = time.perf_counter()
        for i in range(args.loop_n):
            jax.block_until_ready(bench.query(archs_np[i], keys))
        loop = args.loop_n / (time.perf_counter() - start)
        print(json.dumps({"figure": "archs_per_second", "path": "Python loop of single-arch "
                          "Benchmark.query", "metrics": keys, "value": loop,
                          "loop_n": args.loop_n, "batched_over_loop": args.n / seconds / loop,
                          "objective_fn_over_loop": args.n / seconds_fn / loop, **base}),
              flush=True)


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
