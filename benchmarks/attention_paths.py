"""Time the causal attention kernels (`hwgpt_jax.model.attention`) on this machine and print JSON.

Runs the CPU-blocked kernel and XLA's `jax.nn.dot_product_attention` interleaved (A B A B)
on q, k, v of one layer at the widest heads of a scale, forward and forward+backward, and
checks them equal. Usage: python benchmarks/attention_paths.py [--seq 1024 --batch 8 ...]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from hwgpt_jax.model.attention import causal_attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, (args.batch, args.seq, args.heads, args.head_size))
               for key in keys)
    paths = ("cpu_blocked", "xla")
    forward = {p: jax.jit(lambda q, k, v, p=p: causal_attention(q, k, v, p)) for p in paths}
    grad = {p: jax.jit(jax.grad(lambda q, k, v, p=p: causal_attention(q, k, v, p).sum(),
                                argnums=(0, 1, 2))) for p in paths}
    error = float(jnp.abs(forward["cpu_blocked"](q, k, v) - forward["xla"](q, k, v)).max())
    times: dict[str, list[float]] = {f"{kind}/{p}": [] for kind in ("fwd", "fwd_bwd")
                                     for p in paths}
    for fns, kind in ((forward, "fwd"), (grad, "fwd_bwd")):
        for p in paths:
            jax.block_until_ready(fns[p](q, k, v))
        for _ in range(args.repeats):
            for p in paths:  # interleaved
                start = time.perf_counter()
                jax.block_until_ready(fns[p](q, k, v))
                times[f"{kind}/{p}"].append(time.perf_counter() - start)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    print(json.dumps({"platform": jax.default_backend(), **vars(args), "max_abs_diff": error,
                      "median_s": medians,
                      "xla_over_blocked": {kind: medians[f"{kind}/xla"]
                                           / medians[f"{kind}/cpu_blocked"]
                                           for kind in ("fwd", "fwd_bwd")}}))


if __name__ == "__main__":
    main()
