"""Trace and compile time of one training member's gradient program (prints one JSON line).

The program `Trainer` compiles per width bucket: the gradient of `train.train_loss` (the
conditional masked supernet with the fused head) with respect to the parameters sliced to one
embed dim, arch as traced data. Wall and process-CPU seconds of `jit(...).lower()` (tracing)
and of `.compile()` are reported separately (CPU seconds are steadier on a shared machine).
    python benchmarks/train_compile_time.py [--scale tiny] [--dim 128] [--batch 8 --seq 256]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

from hwgpt_jax.model.step import train_loss
from hwgpt_jax.model.supernet import init_params, slice_embed_dim
from hwgpt_jax.space.arch import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--dim", type=int, default=None, help="default: the middle embed dim")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args()
    space = get_space(args.scale)
    dim = args.dim or sorted(space.embed_dims)[len(space.embed_dims) // 2]
    params = jax.eval_shape(lambda: slice_embed_dim(init_params(jax.random.key(0), space), dim,
                                                    max(space.mlp_ratios)))
    windows = jax.ShapeDtypeStruct((args.batch, args.seq + 1), jnp.int32)
    arch = space.sample(jax.random.key(1), 1)[0]
    grad = jax.jit(jax.value_and_grad(train_loss), static_argnums=(3, 4, 5, 6))
    wall, cpu = time.perf_counter(), time.process_time()
    lowered = grad.lower(params, windows, arch, space, None, 8, True)
    trace_wall, trace_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    lowered.compile()
    print(json.dumps({"benchmark": "train_compile_time", "scale": args.scale, "embed_dim": dim,
                      "batch": args.batch, "seq": args.seq, "trace_s": trace_wall,
                      "trace_cpu_s": trace_cpu, "compile_s": time.perf_counter() - wall,
                      "compile_cpu_s": time.process_time() - cpu, "jax": jax.__version__}))


if __name__ == "__main__":
    main()
