"""Causal self-attention kernels, and the one place that picks one for the platform.

On GPUs and TPUs attention is `jax.nn.dot_product_attention(is_causal=True)`: cuDNN's fused
flash attention on NVIDIA GPUs where the dtype allows it (bfloat16 / float16), XLA's fused
attention elsewhere, so every (batch, head) pair runs in parallel on the accelerator.

On CPUs a hand-blocked kernel measurably wins (docs/performance.md): queries are cut into
blocks that never compute the fully masked upper blocks of the (T, T) score matrix, and from
`PER_HEAD_MIN_SEQ` tokens on the (batch, head) pairs run one after another (`lax.map`) on
plain 2-D products, because XLA's CPU batched matmul is much slower than the same products
one head at a time and one head's scores stay in cache. `attention_path()` decides which
kernel runs; both kernels are tested equal.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

QUERY_BLOCK = 128  # query block of the CPU kernel
PER_HEAD_MIN_SEQ = 512  # from this length on, the CPU kernel runs one (batch, head) at a time
PATHS = ("cpu_blocked", "xla", "cudnn")


def attention_path(platform: str | None = None, dtype: jnp.dtype | None = None) -> str:
    """The attention kernel for a platform ('cpu', 'gpu', 'tpu'; default: JAX's default
    backend) and compute dtype: 'cpu_blocked', 'cudnn' (NVIDIA GPU, 16-bit floats) or
    'xla'."""
    platform = platform or jax.default_backend()
    if platform == "cpu":
        return "cpu_blocked"
    if platform in ("gpu", "cuda") and dtype is not None and jnp.dtype(dtype) in (
            jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return "cudnn"
    return "xla"


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, path: str | None = None
                     ) -> jax.Array:
    """Causal attention of q, k, v (B, T, H, S) -> (B, T, H, S), scale 1/sqrt(S), softmax in
    float32. `path` (one of `PATHS`) defaults to `attention_path()` for q's dtype."""
    path = path or attention_path(dtype=q.dtype)
    if path == "cpu_blocked":
        return _cpu_attention(q, k, v)
    if path not in PATHS:
        raise ValueError(f"attention path {path!r}; expected one of {PATHS}")
    return jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                        implementation="cudnn" if path == "cudnn" else "xla")


def _cpu_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    batch, seq, heads, head_size = q.shape
    q = q * jnp.asarray(1.0 / math.sqrt(head_size), q.dtype)
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))  # (B, H, T, S)
    if seq >= PER_HEAD_MIN_SEQ:
        flat = [x.reshape(batch * heads, seq, head_size) for x in (q, k, v)]
        out = lax.map(lambda x: _blocked_attention(*x), flat).reshape(q.shape)
    else:
        out = _blocked_attention(q, k, v)
    return jnp.swapaxes(out, 1, 2)


def _blocked_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Causal attention of pre-scaled q, k, v (..., T, S) -> (..., T, S).

    Queries of block i attend only to keys 0..end of block i, so the fully masked upper
    blocks of the (T, T) score matrix are never computed (about half the work at long
    sequences). Exact: every softmax row still spans all of its unmasked keys."""
    seq = q.shape[-2]
    outputs = []
    for start in range(0, seq, QUERY_BLOCK):
        end = min(start + QUERY_BLOCK, seq)
        scores = jnp.einsum("...tc,...sc->...ts", q[..., start:end, :], k[..., :end, :])
        scores = scores.astype(jnp.float32)  # (..., end - start, end)
        causal = jnp.arange(start, end)[:, None] >= jnp.arange(end)[None, :]
        scores = jnp.where(causal, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        outputs.append(jnp.einsum("...ts,...sc->...tc", probs, v[..., :end, :]))
    return outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-2)
