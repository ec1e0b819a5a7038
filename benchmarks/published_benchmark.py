"""The packaged published benchmark: cold load time and query throughput, per scale.

For each scale: (a) a fresh Python process that imports the package and runs
`Benchmark.published(scale)` (wall time of the whole process, import included, and of the
load alone, as the process reports it); (b) in this process, `Benchmark.query` of every key on
N archs (default 100,000) in median mode: arch-keys per second over the median of a few calls
after a compile call. Prints one JSON line per scale and measurement.

    .venv/bin/python benchmarks/published_benchmark.py --scales s m l --n 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax

from hwgpt_jax.surrogates.benchmark import Benchmark

COLD = ("import time; t = time.perf_counter(); "
        "from hwgpt_jax.surrogates.benchmark import Benchmark; "
        "i = time.perf_counter(); Benchmark.published({scale!r}); "
        "print(time.perf_counter() - i, i - t)")


def cold_load(scale: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", COLD.format(scale=scale)], check=True,
                          capture_output=True, text=True)
    process = time.perf_counter() - start
    load, imports = (float(v) for v in proc.stdout.split())
    return {"figure": "cold_load", "scale": scale, "process_seconds": round(process, 2),
            "load_seconds": round(load, 2), "import_seconds": round(imports, 2)}


def throughput(scale: str, n: int, reps: int) -> dict:
    bench = Benchmark.published(scale)
    archs = bench.space.sample(jax.random.key(0), n).to_numpy()
    keys = bench.keys()

    def call():
        return jax.block_until_ready(bench.query(archs, keys))

    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    walls = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    return {"figure": "query_all_keys", "scale": scale, "n_archs": n, "n_keys": len(keys),
            "first_call_seconds": round(first, 2), "seconds": round(wall, 3),
            "arch_keys_per_second": round(n * len(keys) / wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["s", "m", "l"])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    machine = {"device": str(jax.devices()[0]), "cpus": os.cpu_count(),
               "processor": platform.processor(), "jax": jax.__version__,
               "load_average": os.getloadavg()[0]}
    for scale in args.scales:
        print(json.dumps(cold_load(scale) | machine), flush=True)
        print(json.dumps(throughput(scale, args.n, args.reps) | machine), flush=True)


if __name__ == "__main__":
    main()
