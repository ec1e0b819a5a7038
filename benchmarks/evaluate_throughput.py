"""Throughput of `hwgpt evaluate`: archs per second through the batched masked supernet.

Per scale: N unique random archs evaluated on one window of (batch 1 x seq) tokens (float32,
random-init supernet weights: the cost does not depend on the weight values), in chunks of K
archs, one compiled program per embed dim. Prints one JSON line per scale with the number of
compiles, the seconds of the first pass over each embed-dim bucket (compile + one chunk), the
steady throughput (archs/s, compiles excluded) and the end-to-end throughput (compiles
included), plus this process's CPU seconds (a shared machine inflates wall time, not CPU time).

    .venv/bin/python benchmarks/evaluate_throughput.py --scale tiny --n 1000 --seq 256
    .venv/bin/python benchmarks/evaluate_throughput.py --scale s --n 50 --seq 1024
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.measure.profiler import host_cpu_model
from hwgpt_jax.measure.quality import Evaluator
from hwgpt_jax.model.supernet import init_params
from hwgpt_jax.space.arch import Arch, get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch-archs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single-program", action="store_true",
                        help="one compile on the full-width supernet instead of one per embed dim")
    parser.add_argument("--vectorized", action="store_true",
                        help="vmap over the archs of a chunk (masked: every arch costs its "
                             "bucket's largest) instead of one arch after another with real "
                             "conditionals")
    args = parser.parse_args()

    space = get_space(args.scale)
    params = init_params(jax.random.key(args.seed), space)
    rng = np.random.default_rng(args.seed)
    windows = rng.integers(0, space.vocab_size, (1, args.seq + 1), dtype=np.int32)
    archs = space.sample_unique(jax.random.key(args.seed + 1), args.n)
    evaluator = Evaluator(params, space, windows, batch_archs=args.batch_archs,
                          per_embed_dim=not args.single_program,
                          conditional=not args.vectorized)

    # Warm-up: one chunk per embed-dim bucket compiles every program once.
    start_wall = time.perf_counter()
    firsts = [int(np.flatnonzero(archs.embed_dim == d)[0]) for d in space.embed_dims
              if np.any(archs.embed_dim == d)]
    evaluator.evaluate(Arch.concatenate([archs[i] for i in firsts]))
    warm_wall = time.perf_counter() - start_wall

    run_wall, run_cpu = time.perf_counter(), time.process_time()
    result = evaluator.evaluate(archs)
    steady_wall = time.perf_counter() - run_wall
    cpu = time.process_time() - run_cpu
    device = jax.devices()[0]
    print(json.dumps({
        "benchmark": "evaluate_throughput", "scale": args.scale, "archs": args.n,
        "batch": 1, "seq": args.seq, "dtype": "float32", "weights": "random init",
        "batch_archs": args.batch_archs, "per_embed_dim": not args.single_program,
        "conditional": not args.vectorized,
        "compiles": evaluator.compiles,
        "compile_and_first_chunks_s": round(warm_wall, 2),
        "steady_s": round(steady_wall, 2),
        "archs_per_s": round(args.n / steady_wall, 3),
        "ms_per_arch": round(1e3 * steady_wall / args.n, 1),
        "archs_per_s_with_compiles": round(args.n / (steady_wall + warm_wall), 3),
        "process_cpu_s": round(cpu, 1), "cpu_s_per_arch": round(cpu / args.n, 3),
        "finite": bool(np.isfinite(result.perplexity).all()),
        "device": f"{device.platform}:{device.device_kind}", "host_cpu": host_cpu_model(),
        "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "jax": jax.__version__}))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
