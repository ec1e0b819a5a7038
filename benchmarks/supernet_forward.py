"""Cost of masking: the masked supernet forward vs the dense extracted model of the same arch.

Prints JSON lines: per scale the compile time of the supernet forward, and for the largest and
the smallest arch the median wall time of the masked supernet and of the dense model (float32,
inference, `block_until_ready`), with their ratio; also the ratio of the minima and of the
median process CPU times (both less sensitive to load from other processes on a shared
machine). Masked and dense runs are interleaved so that such load hits both alike.

    .venv/bin/python benchmarks/supernet_forward.py --scales tiny s --reps 7
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.model import supernet as model
from hwgpt_jax.space.arch import get_space


def _timed(fn, *args) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - wall, time.process_time() - cpu


def _meta(args: argparse.Namespace, scale: str) -> dict:
    device = jax.devices()[0]
    return {"scale": scale, "batch": args.batch, "seq": args.seq, "dtype": "float32",
            "reps": args.reps, "device": f"{device.platform}:{device.device_kind}",
            "host": platform.processor() or platform.machine(), "jax": jax.__version__}


def bench_scale(args: argparse.Namespace, scale: str) -> None:
    space = get_space(scale)
    params = model.init_params(jax.random.key(0), space)
    tokens = jnp.asarray(np.random.default_rng(0).integers(
        0, space.vocab_size, (args.batch, args.seq)), jnp.int32)
    masked = jax.jit(model.masked_forward, static_argnums=3)
    largest, smallest = space.largest(), space.smallest()

    start = time.perf_counter()
    compiled = masked.lower(params, tokens, largest, space).compile()
    compile_s = time.perf_counter() - start
    print(json.dumps({"figure": "supernet_forward_compile_s", "value": round(compile_s, 3),
                      "unit": "s", **_meta(args, scale)}), flush=True)

    for name, arch in (("largest", largest), ("smallest", smallest)):
        dense_params = model.extract(params, arch, space)
        dense = jax.jit(model.dense_forward).lower(dense_params, tokens).compile()
        arch_arrays = jax.tree.map(jnp.asarray, arch)
        for _ in range(args.warmup):
            _timed(compiled, params, tokens, arch_arrays)
            _timed(dense, dense_params, tokens)
        masked_runs, dense_runs = [], []
        for rep in range(args.reps):  # alternate which runs first, against order effects
            if rep % 2:
                dense_runs.append(_timed(dense, dense_params, tokens))
            masked_runs.append(_timed(compiled, params, tokens, arch_arrays))
            if not rep % 2:
                dense_runs.append(_timed(dense, dense_params, tokens))
        masked_s, masked_cpu = zip(*masked_runs, strict=True)
        dense_s, dense_cpu = zip(*dense_runs, strict=True)
        masked_med, dense_med = statistics.median(masked_s), statistics.median(dense_s)
        print(json.dumps({
            "figure": f"masked_over_dense_{name}", "value": round(masked_med / dense_med, 4),
            "unit": "ratio of median wall times", "arch": space.arch_ids(arch)[0],
            "ratio_of_min_wall": round(min(masked_s) / min(dense_s), 4),
            "ratio_of_median_cpu": round(statistics.median(masked_cpu)
                                         / statistics.median(dense_cpu), 4),
            "masked_median_ms": round(1e3 * masked_med, 2),
            "dense_median_ms": round(1e3 * dense_med, 2),
            "masked_ms": [round(1e3 * t, 2) for t in masked_s],
            "dense_ms": [round(1e3 * t, 2) for t in dense_s],
            "masked_cpu_ms": [round(1e3 * t, 2) for t in masked_cpu],
            "dense_cpu_ms": [round(1e3 * t, 2) for t in dense_cpu],
            "params_dense": model.param_count(dense_params),
            **_meta(args, scale)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["tiny", "s"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    for scale in args.scales:
        bench_scale(args, scale)


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
