"""Analytic parameter count and forward FLOPs of a sub-network (the model of DESIGN.md).

Per block (d = embed dim, A = n_head * head_size attention width, H = mlp_ratio * d):
  LayerNorms 2 x (scale + bias) = 4d; qkv d x 3A; attention out A x d; MLP fc d x H, proj H x d;
  with biases: 3A + d + H + d. Globally: the token embedding V_pad x d (tied with the LM head;
  RoPE and the absent position table add nothing) and the final LayerNorm 2d.

FLOPs count 2 per multiply-accumulate of every matrix product in the forward pass on (B, T):
projections, attention scores and attention x values over the full T x T (the model's blocked
causal attention skips the key blocks past each query block, so from T > 128 on it computes
less: 3/4 of this at T = 256), and the LM head over the padded vocabulary. Element-wise work
(LayerNorm, GELU, softmax, RoPE, bias adds) is not counted; it is <2 % for the shapes of these
spaces, and XLA's cost analysis, which counts it, is compared against this count in the
profiler. `training_flops` is the forward + backward count.

Inputs as NumPy arrays give exact int64 results; JAX arrays give float32 (jit-able).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from hwgpt_jax.space.arch import Arch, SearchSpace


def _as(arch: Arch) -> tuple[Any, ...]:
    exact = isinstance(arch.embed_dim, (np.ndarray, np.generic, int))
    cast = (lambda x: np.asarray(x).astype(np.int64)) if exact else (
        lambda x: jax.numpy.asarray(x).astype(jax.numpy.float32))
    return cast(arch.embed_dim), cast(arch.n_layer), cast(arch.n_head), cast(arch.mlp_ratio), \
        cast(arch.bias)


def param_count(arch: Arch, space: SearchSpace) -> Any:
    """Exact number of parameters of the dense sub-network (tied head, padded vocabulary)."""
    d, n_layer, n_head, ratio, bias = _as(arch)
    heads_total = n_head.sum(-1)  # padding is 0, so sums run over active layers only
    ratio_total = ratio.sum(-1)
    attn_width = heads_total * space.head_size
    weights = 3 * d * attn_width + attn_width * d + 2 * d * d * ratio_total
    biases = 3 * attn_width + 2 * d * n_layer + d * ratio_total
    norms = 4 * d * n_layer + 2 * d
    return space.padded_vocab_size * d + weights + bias * biases + norms


def forward_flops(arch: Arch, space: SearchSpace, batch: int, seq: int) -> Any:
    """Matrix-product FLOPs (2 per MAC) of one forward pass on (batch, seq) tokens."""
    d, _, n_head, ratio, _ = _as(arch)
    tokens = batch * seq
    attn_width = n_head.sum(-1) * space.head_size
    projections = 4 * d * attn_width + 2 * d * d * ratio.sum(-1)
    attention = 2 * seq * attn_width  # q @ k^T and probs @ v, per token
    head = d * space.padded_vocab_size
    return 2 * tokens * (projections + attention + head)


def training_flops(arch: Arch, space: SearchSpace, batch: int, seq: int) -> Any:
    """Matrix-product FLOPs of one forward + backward pass (a training member's work): the
    backward pass runs two products per forward product (the input's and the weight's
    gradient), so 3x `forward_flops`."""
    return 3 * forward_flops(arch, space, batch, seq)
