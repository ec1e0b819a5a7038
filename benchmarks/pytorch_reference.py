"""The PyTorch peer of `evaluate_throughput.py` and `train_throughput.py`, on this machine now.

The issues compare against PyTorch figures measured once on this machine (HW-GPT-Bench's
supernet, 2 threads, float32); the machine's speed drifts by tens of percent between sessions,
so this script re-measures a PyTorch peer in the same session as ours. It is a *dense* PyTorch
GPT with the same architecture (the weights of our supernet sliced to each arch by
`model.extract`: RoPE on half the head dims, parallel residual, exact GELU, tied head, causal
`scaled_dot_product_attention`), so its time is a lower bound for a PyTorch supernet, which
also slices its weights per arch (`set_sample_config`). Its logits are first checked against
our `dense_forward`.

Like every benchmark here, it first restarts itself with the allocator settings of
`hwgpt_jax.runtime`, so both sides run under the same allocator (`HWGPT_SYSTEM_MALLOC=1`:
glibc's defaults, as when the issues' reference figures were taken).

PyTorch is not a dependency of hwgpt-jax: run this with any Python that has torch and the
repository on its path; without torch it exits with a message.

    PYTHONPATH=. /path/to/python-with-torch benchmarks/pytorch_reference.py --scale s --n 50
    PYTHONPATH=. /path/to/python-with-torch benchmarks/pytorch_reference.py --train
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import numpy as np

from hwgpt_jax.model import ROPE_BASE, ROPE_FRACTION, dense_forward, extract, init_params
from hwgpt_jax.runtime import reexec_with_tuned_allocator
from hwgpt_jax.space import get_space

try:
    import torch
    from torch.nn import functional
except ImportError:  # pragma: no cover - the peer is optional
    sys.exit("pytorch_reference.py needs torch (not a hwgpt-jax dependency); run it with a "
             "Python that has torch installed")


def to_torch(tree):
    return jax.tree.map(lambda x: torch.from_numpy(np.array(x)), tree)  # a writable copy


def layer_norm(x, scale, bias):
    return functional.layer_norm(x, x.shape[-1:], scale, bias, 1e-5)


def rope_tables(seq: int, head_size: int):
    dims = int(head_size * ROPE_FRACTION)
    inv_freq = 1.0 / ROPE_BASE ** (torch.arange(0, dims, 2, dtype=torch.float32) / dims)
    angles = torch.arange(seq, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], -1)
    return angles.cos(), angles.sin()


def rope(x, cos, sin):  # x (B, H, T, S)
    dims = cos.shape[-1]
    rot, rest = x[..., :dims], x[..., dims:]
    first, second = rot.chunk(2, -1)
    return torch.cat([rot * cos + torch.cat([-second, first], -1) * sin, rest], -1)


def forward(p, tokens, cos, sin):
    """Logits (B, T, V) of the dense GPT `p` (extract's layout, torch tensors)."""
    x = p["token_embedding"][tokens]
    batch, seq, _ = x.shape
    for b in p["blocks"]:
        h = layer_norm(x, b["ln1_scale"], b["ln1_bias"])
        d, _, heads, size = b["qkv_kernel"].shape
        qkv = h @ b["qkv_kernel"].reshape(d, -1)
        if "qkv_bias" in b:
            qkv = qkv + b["qkv_bias"].reshape(-1)
        q, k, v = qkv.view(batch, seq, 3, heads, size).permute(2, 0, 3, 1, 4)  # (B, H, T, S)
        out = functional.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin), v,
                                             is_causal=True)
        attn = out.transpose(1, 2).reshape(batch, seq, heads * size) @ b[
            "attn_out_kernel"].reshape(heads * size, -1)
        h2 = layer_norm(x, b["ln2_scale"], b["ln2_bias"])
        fc = h2 @ b["fc_kernel"]
        if "fc_bias" in b:
            fc = fc + b["fc_bias"]
        mlp = functional.gelu(fc) @ b["proj_kernel"]
        x = x + attn + mlp
        if "attn_out_bias" in b:
            x = x + b["attn_out_bias"] + b["proj_bias"]
    x = layer_norm(x, p["ln_f_scale"], p["ln_f_bias"])
    return x @ p["token_embedding"].T


def check_against_jax(params, space, arch, tokens) -> float:
    dense = extract(params, arch, space)
    want = np.asarray(jax.jit(dense_forward)(dense, tokens))
    cos, sin = rope_tables(tokens.shape[1], space.head_size)
    with torch.no_grad():
        got = forward(to_torch(dense), torch.from_numpy(tokens).long(), cos, sin).numpy()
    return float(np.max(np.abs(got - want)) / (1.0 + np.max(np.abs(want))))


def evaluate(args, space, params) -> dict:
    rng = np.random.default_rng(args.seed)
    window = rng.integers(0, space.vocab_size, (1, args.seq + 1), dtype=np.int32)
    archs = space.sample_unique(jax.random.key(args.seed + 1), args.n)  # as evaluate_throughput
    tokens = torch.from_numpy(window[:, :-1]).long()
    targets = torch.from_numpy(window[:, 1:]).long().reshape(-1)
    cos, sin = rope_tables(args.seq, space.head_size)
    dense = [to_torch(extract(params, archs[i], space)) for i in range(args.n)]
    with torch.no_grad():
        forward(dense[0], tokens, cos, sin)  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        for p in dense:
            logits = forward(p, tokens, cos, sin)
            functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)
            (logits.argmax(-1).reshape(-1) == targets).sum()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"mode": "evaluate", "archs": args.n, "seq": args.seq,
            "archs_per_s": round(args.n / wall, 3), "ms_per_arch": round(1e3 * wall / args.n, 1),
            "cpu_s_per_arch": round(cpu / args.n, 3),
            "timed": "dense forward + cross-entropy + argmax per arch (weights pre-sliced)"}


def train(args, space, params) -> dict:
    """Forward + backward of the largest arch on (batch x seq) tokens, like the reference's
    'largest arch alone' step (no optimizer update)."""
    rng = np.random.default_rng(args.seed)
    window = rng.integers(0, space.vocab_size, (args.batch, args.seq + 1), dtype=np.int32)
    tokens = torch.from_numpy(window[:, :-1]).long()
    targets = torch.from_numpy(window[:, 1:]).long().reshape(-1)
    cos, sin = rope_tables(args.seq, space.head_size)
    p = jax.tree.map(lambda t: t.requires_grad_(), to_torch(extract(params, space.largest(),
                                                                    space)))
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        logits = forward(p, tokens, cos, sin)
        loss = functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)
        loss.backward()
        times.append(time.perf_counter() - start)
    step = float(np.median(times[1:]))
    return {"mode": "train_largest", "batch": args.batch, "seq": args.seq,
            "largest_step_s": round(step, 2),
            "tokens_per_s": round(args.batch * args.seq / step, 1),
            "timed": "forward + backward of the largest arch (no optimizer update)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="s")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seq", type=int, default=None, help="default 1024 (256 with --train)")
    parser.add_argument("--batch", type=int, default=8, help="--train only")
    parser.add_argument("--steps", type=int, default=2, help="--train only")
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    args.seq = args.seq or (256 if args.train else 1024)
    torch.set_num_threads(args.threads)
    space = get_space(args.scale)
    params = jax.device_get(init_params(jax.random.key(args.seed), space))
    tokens = np.random.default_rng(1).integers(0, space.vocab_size, (1, 64), dtype=np.int32)
    error = check_against_jax(params, space, space.mid(), tokens)
    if not math.isfinite(error) or error > 1e-4:
        sys.exit(f"the PyTorch peer's logits differ from dense_forward's by {error:.3g} "
                 "(relative); expected <= 1e-4")
    result = train(args, space, params) if args.train else evaluate(args, space, params)
    print(json.dumps({"benchmark": "pytorch_reference", "scale": args.scale, **result,
                      "dtype": "float32", "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "logits_vs_jax_rel_error": error,
                      "load_avg_1m": round(os.getloadavg()[0], 2),
                      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
