"""Closed-form parameters, MACs and FLOPs of the models HW-GPT-Bench profiled (arXiv 2405.10299).

The published `params`, `macs` and `flops` arrays describe the profiled models, not the trained
supernet (see `../shared/reference/hwgpt-bench/README.md`): a LLaMA-style SiLU-gated MLP
(fc1, fc2: d -> r*d; proj: r*d -> d), untied token embedding and LM head over 50,254 tokens, two
LayerNorms (scale + bias) per block and a final one. FLOPs and MACs are DeepSpeed's profiler
counts on (batch, 1024) tokens with batch 8 (s), 4 (m) and 1 (l). Fitted per component on the
30,000 published archs and then checked for exact equality (every arch of s, m and l matches
all three arrays exactly; tests/test_published_costs.py), with A = 64 * sum(n_head) and
R = sum(mlp_ratio) over active layers, L = n_layer, d = embed_dim, b = bias:

  params = 2 * 50254 d + 2 d + 4 d L + 4 d A + 3 d^2 R + b (3 A + 2 d L + 2 d R)
  macs   = B T (50254 d + 4 d A + 3 d^2 R)
  flops  = 2 macs + B T (5 d + 10 d L + d R)

What DeepSpeed counts shows in the terms: every nn.Linear (no bias adds), the LM head, 5 FLOPs
per LayerNorm element, 1 per SiLU element; the attention products (a functional call the
profiler does not hook) and the gate's element-wise product are not counted.

Inputs as NumPy arrays give exact int64 results; JAX arrays give float32 (jit-able).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from hwgpt_jax.space.arch import Arch, SearchSpace

PUBLISHED_VOCAB = 50254  # embedding and LM head rows of the profiled models (from the params)
PUBLISHED_SEQ = 1024
PUBLISHED_BATCH = {"s": 8, "m": 4, "l": 1}  # the profiling batch of each scale's FLOPs/MACs
PUBLISHED_HEAD_SIZE = 64


def has_published_costs(space: SearchSpace) -> bool:
    """Whether HW-GPT-Bench profiled a model of this space (s, m, l; not tiny)."""
    return space.scale in PUBLISHED_BATCH


def published_costs(arch: Arch, space: SearchSpace) -> dict[str, Any]:
    """{'params', 'macs', 'flops'} of the published profiled models, shape = arch batch shape.

    Raises ValueError for a space without a published model (tiny).
    """
    if not has_published_costs(space):
        raise ValueError(f"scale {space.scale!r} has no published HW-GPT-Bench model; published "
                         f"costs exist for {sorted(PUBLISHED_BATCH)}")
    d, n_layer, n_head, ratio, bias = _arrays(arch)
    attn_width = PUBLISHED_HEAD_SIZE * n_head.sum(-1)  # padding is 0
    ratio_total = ratio.sum(-1)
    tokens = PUBLISHED_BATCH[space.scale] * PUBLISHED_SEQ
    params = (2 * PUBLISHED_VOCAB * d + 2 * d + 4 * d * n_layer + 4 * d * attn_width
              + 3 * d * d * ratio_total
              + bias * (3 * attn_width + 2 * d * n_layer + 2 * d * ratio_total))
    macs = tokens * (PUBLISHED_VOCAB * d + 4 * d * attn_width + 3 * d * d * ratio_total)
    flops = 2 * macs + tokens * (5 * d + 10 * d * n_layer + d * ratio_total)
    return {"params": params, "macs": macs, "flops": flops}


def _arrays(arch: Arch) -> tuple[Any, ...]:
    """The arch fields as int64 NumPy arrays (exact) or, for traced/JAX input, float32."""
    exact = isinstance(arch.embed_dim, (np.ndarray, np.generic, int))
    xp, dtype = (np, np.int64) if exact else (jnp, jnp.float32)
    return tuple(xp.asarray(getattr(arch, name)).astype(dtype)
                 for name in ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias"))
