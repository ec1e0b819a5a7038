"""Throughput of the `supernet_perplexity` search objective: archs per second in one jit call.

Random-init supernet weights (the cost does not depend on the weight values) and random token
windows; a population of N random archs is scored inside `jax.jit`, as the search runner
calls it (the weights become constants of that program). Prints one JSON line per
`--arch-batch` value: compile seconds (first call), steady seconds per population call,
archs/s, and this process's CPU seconds (a shared machine inflates wall time, not CPU time).

    .venv/bin/python benchmarks/supernet_objective.py --scale tiny --n 16 --windows 4 --seq 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.model.supernet import init_params
from hwgpt_jax.search.objectives import supernet_perplexity
from hwgpt_jax.space.arch import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--n", type=int, default=16, help="population size")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--arch-batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    space = get_space(args.scale)
    params = jax.device_get(init_params(jax.random.key(0), space))
    windows = np.random.default_rng(0).integers(0, space.vocab_size,
                                                (args.windows, args.seq + 1))
    archs = space.sample(jax.random.key(1), args.n)
    key = jax.random.key(0)
    for arch_batch in args.arch_batch:
        objective = jax.jit(supernet_perplexity(params, windows, space, arch_batch=arch_batch))
        cpu, start = os.times(), time.perf_counter()
        objective(archs, key).block_until_ready()
        compile_s = time.perf_counter() - start
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            objective(archs, key).block_until_ready()
            runs.append(time.perf_counter() - start)
        end = os.times()
        steady = float(np.median(runs))
        print(json.dumps({
            "figure": "supernet_perplexity archs/s", "value": round(args.n / steady, 3),
            "steady_s_per_call": round(steady, 3), "first_call_s": round(compile_s, 2),
            "cpu_s": round(end.user + end.system - cpu.user - cpu.system, 1),
            "config": {"scale": args.scale, "population": args.n, "windows": args.windows,
                       "seq": args.seq, "arch_batch": arch_batch, "dtype": "float32"},
            "device": f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}, "
                      f"{platform.machine()})",
            "jax": jax.__version__}))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
