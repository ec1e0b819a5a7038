"""The PyTorch peers of `evaluate_throughput.py` and `train_throughput.py`, on this machine now.

The issues compare against PyTorch figures measured once on this machine (HW-GPT-Bench's
supernet, 2 threads, float32); the machine's speed drifts by tens of percent between sessions,
so this script re-measures PyTorch peers in the same session as ours:

- default (evaluation) and `--train` (the largest arch's forward + backward): a *dense*
  PyTorch GPT with the same architecture (the weights of our supernet sliced to each arch by
  `model.extract`: RoPE on half the head dims, parallel residual, exact GELU, tied head, causal
  `scaled_dot_product_attention`), a lower bound for a PyTorch supernet's time. Its logits are
  first checked against our `dense_forward`.
- `--sandwich` / `--sandwich-from OURS.jsonl`: sandwich steps of a PyTorch *supernet*
  (`Supernet`: full-size parameters used through leading-slice views, gradients accumulated
  into them, global-norm clipping and AdamW), the way HW-GPT-Bench trains its own, on the
  archs our `train_throughput.py` drew and recorded (or, without a file, on `Trainer`'s draws).
  Its logits are first checked against our masked supernet.

Like every benchmark here, it first restarts itself with the allocator settings of
`hwgpt_jax.cli.runtime`, so both sides run under the same allocator (`HWGPT_SYSTEM_MALLOC=1`:
glibc's defaults, as when the issues' reference figures were taken).

PyTorch is not a dependency of hwgpt-jax: run this with any Python that has torch and the
repository on its path; without torch it exits with a message.

    PYTHONPATH=. /path/to/python-with-torch benchmarks/peers/pytorch_reference.py --scale s --n 50
    PYTHONPATH=. /path/to/python-with-torch benchmarks/peers/pytorch_reference.py --train
    .venv/bin/python benchmarks/train_throughput.py --scales s > ours.jsonl
    PYTHONPATH=. /path/to/torch-python benchmarks/peers/pytorch_reference.py \
        --sandwich-from ours.jsonl
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

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.model.supernet import (
    ROPE_BASE,
    ROPE_FRACTION,
    dense_forward,
    extract,
    init_params,
    masked_forward,
)
from hwgpt_jax.space.arch import get_space

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
    for _ in range((args.steps or 2) + 1):
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


class Supernet:
    """A weight-sharing GPT supernet in PyTorch, trained the way HW-GPT-Bench trains its own:
    full-size parameters in `nn.Linear`'s (out, in) layout, one set per layer, and every
    sub-network computing with leading-slice views of them (`F.linear(x, W[:out, :in],
    b[:out])`, LayerNorm on `w[:d]`, the tied head on `wte[:, :d]`), so autograd accumulates
    each member's gradient into the full tensors. Rows of the qkv projection are head-major,
    (head, q/k/v, dim), so the first n heads are a leading slice. Same weights and function as
    our supernet (`check_supernet`)."""

    def __init__(self, params) -> None:
        def tensor(array) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array, np.float32)).requires_grad_()

        b = params["blocks"]
        _, dim, _, heads, size = b["qkv_kernel"].shape
        self.head_size = size
        self.wte = tensor(params["token_embedding"])
        self.ln_f = (tensor(params["ln_f_scale"]), tensor(params["ln_f_bias"]))
        self.layers = [{
            "ln1": (tensor(b["ln1_scale"][i]), tensor(b["ln1_bias"][i])),
            "ln2": (tensor(b["ln2_scale"][i]), tensor(b["ln2_bias"][i])),
            "qkv_w": tensor(np.transpose(b["qkv_kernel"][i], (2, 1, 3, 0)).reshape(-1, dim)),
            "qkv_b": tensor(np.transpose(b["qkv_bias"][i], (1, 0, 2)).reshape(-1)),
            "out_w": tensor(b["attn_out_kernel"][i].reshape(heads * size, dim).T),
            "out_b": tensor(b["attn_out_bias"][i]),
            "fc_w": tensor(b["fc_kernel"][i].T), "fc_b": tensor(b["fc_bias"][i]),
            "proj_w": tensor(b["proj_kernel"][i].T), "proj_b": tensor(b["proj_bias"][i]),
        } for i in range(b["qkv_kernel"].shape[0])]

    def parameter_groups(self) -> list[dict]:
        """AdamW groups: decay on kernels and the embedding, none on biases and norms."""
        decay = [self.wte] + [p[k] for p in self.layers for k in ("qkv_w", "out_w", "fc_w",
                                                                    "proj_w")]
        rest = [*self.ln_f] + [t for p in self.layers for k in ("ln1", "ln2") for t in p[k]]
        rest += [p[k] for p in self.layers for k in ("qkv_b", "out_b", "fc_b", "proj_b")]
        return [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]

    def loss(self, arch, tokens, targets, cos, sin) -> torch.Tensor:
        """Mean next-token cross-entropy of one sub-network (`arch` of batch shape ())."""
        logits = self.logits(arch, tokens, cos, sin)
        return functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                        targets.reshape(-1))

    def logits(self, arch, tokens, cos, sin) -> torch.Tensor:
        """Logits (B, T, V_pad) of one sub-network (`arch` of batch shape ())."""
        dim, size, bias = int(arch.embed_dim), self.head_size, bool(arch.bias)
        batch, seq = tokens.shape

        def linear(x, weight, bias_vector, n_out, n_in):
            return functional.linear(x, weight[:n_out, :n_in],
                                     bias_vector[:n_out] if bias else None)

        x = functional.embedding(tokens, self.wte[:, :dim])
        for layer in range(int(arch.n_layer)):
            p, heads = self.layers[layer], int(arch.n_head[layer])
            hidden = int(arch.mlp_ratio[layer]) * dim
            h = layer_norm(x, p["ln1"][0][:dim], p["ln1"][1][:dim])
            qkv = linear(h, p["qkv_w"], p["qkv_b"], heads * 3 * size, dim)
            q, k, v = qkv.view(batch, seq, heads, 3, size).permute(3, 0, 2, 1, 4)
            out = functional.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin),
                                                          v, is_causal=True)
            out = out.transpose(1, 2).reshape(batch, seq, heads * size)
            h2 = layer_norm(x, p["ln2"][0][:dim], p["ln2"][1][:dim])
            mlp = functional.gelu(linear(h2, p["fc_w"], p["fc_b"], hidden, dim))
            x = (x + linear(out, p["out_w"], p["out_b"], dim, heads * size)
                 + linear(mlp, p["proj_w"], p["proj_b"], dim, hidden))
        x = layer_norm(x, self.ln_f[0][:dim], self.ln_f[1][:dim])
        return functional.linear(x, self.wte[:, :dim])


def sandwich_draws(args, space) -> list[dict[str, str]]:
    """Per step, member name -> arch id: from a `train_throughput.py` output (`--sandwich-from`,
    the row of this scale), else drawn as `Trainer` draws them (its key, from step 0)."""
    if args.sandwich_from:
        if not os.path.isfile(args.sandwich_from):
            sys.exit(f"--sandwich-from {args.sandwich_from}: no such file; expected the JSON "
                     "lines printed by train_throughput.py")
        with open(args.sandwich_from) as lines:
            rows = [json.loads(line) for line in lines if line.startswith("{")]
        rows = [r for r in rows if r.get("benchmark") == "train_throughput"
                and r.get("scale") == space.scale and "sandwich_steps" in r]
        if not rows:
            sys.exit(f"{args.sandwich_from} holds no train_throughput row of scale "
                     f"{space.scale!r} with sandwich_steps")
        return [step["archs"] for step in rows[-1]["sandwich_steps"]][:args.steps]
    from hwgpt_jax.model.step import sandwich_members, training_keys

    key = training_keys(args.seed)[1]
    return [{m.name: space.arch_ids(m.arch[0])[0]
             for m in sandwich_members(space, jax.random.fold_in(key, step), 1, 2)}
            for step in range(args.steps or 8)]


def check_supernet(net, params, space, arch, tokens) -> float:
    """Largest logit difference to our masked supernet, relative to the logits' scale."""
    want = np.asarray(jax.jit(masked_forward, static_argnums=3)(params, tokens, arch, space))
    cos, sin = rope_tables(tokens.shape[1], space.head_size)
    with torch.no_grad():
        got = net.logits(arch, torch.from_numpy(tokens).long(), cos, sin).numpy()
    return float(np.max(np.abs(got - want)) / (1.0 + np.max(np.abs(want))))


def sandwich(args, space, params) -> dict:
    """Sandwich steps of the PyTorch supernet on the same archs as ours: each member's forward
    and backward (gradients accumulate into the full tensors), then global-norm clipping at 1.0
    and one AdamW step, as `Trainer.step` does."""
    from train_throughput import step_matmul_flops  # the sibling benchmark's FLOP count

    net = Supernet(params)
    rng = np.random.default_rng(args.seed)
    window = rng.integers(0, space.vocab_size, (args.batch, args.seq + 1), dtype=np.int32)
    error = max(check_supernet(net, params, space, arch, window[:2, :64])
                for arch in (space.mid(), space.smallest()))
    if not math.isfinite(error) or error > 1e-4:
        sys.exit(f"the PyTorch supernet's logits differ from masked_forward's by {error:.3g} "
                 "(relative); expected <= 1e-4")
    tokens = torch.from_numpy(window[:, :-1]).long()
    targets = torch.from_numpy(window[:, 1:]).long()
    cos, sin = rope_tables(args.seq, space.head_size)
    groups = net.parameter_groups()
    optimizer = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95))
    every = [t for g in groups for t in g["params"]]
    draws = sandwich_draws(args, space)
    steps = []
    for i, draw in enumerate([draws[0]] + draws):  # the first, repeated, warms up
        seconds, start = {}, time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for name, arch_id in draw.items():
            member = time.perf_counter()
            net.loss(space.from_ids([arch_id])[0], tokens, targets, cos, sin).backward()
            seconds[name] = round(time.perf_counter() - member, 2)
        update = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(every, 1.0)
        optimizer.step()
        seconds["update"] = round(time.perf_counter() - update, 2)
        if i:
            step_s = time.perf_counter() - start
            flops = step_matmul_flops(space, draw, args.batch, args.seq)
            steps.append({"step_s": round(step_s, 2), "archs": draw, "seconds": seconds,
                          "matmul_gflops_per_s": round(flops / step_s / 1e9, 1)})
    times = [s["step_s"] for s in steps]
    return {"mode": "sandwich", "batch": args.batch, "seq": args.seq,
            "archs_from": args.sandwich_from or "Trainer's draws",
            "sandwich_step_s": round(float(np.median(times)), 2), "sandwich_step_s_all": times,
            "sandwich_steps": steps, "supernet_logits_vs_jax_rel_error": error,
            "timed": "HW-GPT-Bench-style supernet (sliced views of full parameters): "
                     "members' forward + backward, clipping and AdamW"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="s")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seq", type=int, default=None, help="default 1024 (256 with --train)")
    parser.add_argument("--batch", type=int, default=8, help="--train only")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (--train: default 2; --sandwich: default 8, or every "
                             "step of --sandwich-from)")
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--sandwich", action="store_true",
                        help="sandwich steps of a PyTorch supernet on the same archs as ours")
    parser.add_argument("--sandwich-from", default=None,
                        help="a train_throughput.py output whose archs to replay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    args.sandwich = args.sandwich or bool(args.sandwich_from)
    args.seq = args.seq or (256 if args.train or args.sandwich else 1024)
    torch.set_num_threads(args.threads)
    space = get_space(args.scale)
    params = jax.device_get(init_params(jax.random.key(args.seed), space))
    tokens = np.random.default_rng(1).integers(0, space.vocab_size, (1, 64), dtype=np.int32)
    error = check_against_jax(params, space, space.mid(), tokens)
    if not math.isfinite(error) or error > 1e-4:
        sys.exit(f"the PyTorch peer's logits differ from dense_forward's by {error:.3g} "
                 "(relative); expected <= 1e-4")
    if args.sandwich:
        result = sandwich(args, space, params)
    else:
        result = train(args, space, params) if args.train else evaluate(args, space, params)
    print(json.dumps({"benchmark": "pytorch_reference", "scale": args.scale, **result,
                      "dtype": "float32", "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "logits_vs_jax_rel_error": error,
                      "load_avg_1m": round(os.getloadavg()[0], 2),
                      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
