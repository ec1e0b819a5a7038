"""Throughput of sampling and one-hot encoding architectures (prints JSON lines).

Usage: python benchmarks/space_sampling.py [--scale s] [-n 1000000] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.encoding import onehot


def _best_time(fn, reps: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="s")
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    space = get_space(args.scale)
    key = jax.random.key(0)
    sample = jax.jit(lambda k: space.sample(k, args.n))
    encode = jax.jit(lambda a: onehot(a, space))
    archs = sample(key)
    device = jax.devices()[0]
    common = {"scale": args.scale, "n": args.n, "device": device.device_kind,
              "platform": device.platform, "jax": jax.__version__, "timing": "best of reps"}
    for name, fn in (("sample", lambda: sample(key)), ("onehot_encode", lambda: encode(archs))):
        seconds = _best_time(fn, args.reps)
        print(json.dumps({"benchmark": name, "archs_per_s": args.n / seconds,
                          "seconds": seconds, **common}))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
