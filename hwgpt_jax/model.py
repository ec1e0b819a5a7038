"""The GPT supernet of HW-GPT-Bench with masked weight entanglement, and dense extraction.

HW-GPT-Bench (Sukthanker et al., arXiv 2405.10299) trains one weight-sharing GPT-2 supernet
(Radford et al. 2019) whose sub-networks are the architectures of a search space. Weight
entanglement (Chen et al., AutoFormer, arXiv 2107.00651) lets every sub-network use the
*leading slice* of each weight: the first d embedding dims, the first h heads, the first r*d
MLP hidden units and the first n_layer blocks.

Two forwards share one set of helpers:
- `masked_forward(params, tokens, arch, space)`: the supernet. `arch` is data (an `Arch` of
  arrays), so the masks are computed inside jit and ONE compiled function serves every
  architecture of a space (vmap it over archs with `masked_forward_batched`). Inactive
  embedding dims stay exactly zero, LayerNorm statistics cover the active dims only, inactive
  heads and hidden units are masked out, and inactive blocks are the identity. Masks do not
  reduce FLOPs.
- `dense_forward(extract(params, arch, space), tokens)`: a plain dense GPT whose parameter
  shapes are the sub-network's real shapes; this is what profiling times and counts.

Model (DESIGN.md): GPT-2 base, vocabulary padded to 50304, LM head tied to the token
embedding, no learned position embedding, parallel residual `x + attn(ln1(x)) + mlp(ln2(x))`,
final LayerNorm (biases always on, eps 1e-5), causal attention of width n_head * head_size
with scale 1/sqrt(head_size), RoPE (GPT-NeoX rotate-half, base 10000) on the first half of
each head's dims, MLP fc(d -> r*d), exact (erf) GELU as in PyTorch/LitGPT, proj(r*d -> d).
The bias flag switches every linear-layer bias. Logits cover the padded vocabulary.

Parameters are a plain dict pytree (no Flax module state): the masked forward is a pure
function of `(params, tokens, arch)`, so jit, vmap over archs, grad and pmap apply directly.
Supernet block parameters are stacked along a leading Lmax axis and run by `lax.scan`, so the
compile time does not grow with depth.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from hwgpt_jax.space import Arch, SearchSpace

Params = dict[str, Any]

LAYER_NORM_EPS = 1e-5
ROPE_BASE = 10000.0
ROPE_FRACTION = 0.5
INIT_STD = 0.02
ATTENTION_BLOCK = 128  # query block of the causal attention
VOCAB_CHUNK = 384  # tokens of the vocabulary per chunk of the chunked LM heads (50304 = 131 x 384)
ATTENTION_MAP_MIN_SEQ = 512  # from this length on, attention runs one (batch, head) at a time


# ---------------------------------------------------------------------------- initialization
@partial(jax.jit, static_argnames=("space", "dtype"))
def init_params(key: jax.Array, space: SearchSpace, dtype: Any = jnp.float32) -> Params:
    """Supernet parameters at the largest shapes of `space`, GPT-2 style.

    Kernels and the token embedding are normal(0, 0.02); the residual projections (attention
    output and MLP proj) use 0.02 / sqrt(2 * Lmax) so the residual stream's variance does not
    grow with depth (GPT-2, Radford et al. 2019); biases are 0 and LayerNorm scales 1.

    Shapes (L = Lmax, D = max embed dim, H = max heads, S = head size, F = max ratio * D):
    token_embedding (V_pad, D); blocks: ln{1,2}_{scale,bias} (L, D), qkv_kernel (L, D, 3, H, S),
    qkv_bias (L, 3, H, S), attn_out_kernel (L, H, S, D), attn_out_bias (L, D),
    fc_kernel (L, D, F), fc_bias (L, F), proj_kernel (L, F, D), proj_bias (L, D);
    ln_f_{scale,bias} (D,).
    """
    n_layer, dim, heads, head = (space.max_layers, max(space.embed_dims), max(space.n_heads),
                                 space.head_size)
    hidden = max(space.mlp_ratios) * dim
    residual_std = INIT_STD / math.sqrt(2 * n_layer)
    shapes = {
        "token_embedding": (space.padded_vocab_size, dim),
        "qkv_kernel": (n_layer, dim, 3, heads, head),
        "attn_out_kernel": (n_layer, heads, head, dim),
        "fc_kernel": (n_layer, dim, hidden),
        "proj_kernel": (n_layer, hidden, dim),
    }
    # One flat draw, cut into pieces: XLA compiles one random-number kernel instead of five,
    # which takes seconds less on CPU.
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
    pieces = jnp.split(flat, np.cumsum(sizes)[:-1])
    kernels = {name: piece.reshape(shape) for (name, shape), piece in
               zip(shapes.items(), pieces, strict=True)}

    def normal(name: str, std: float) -> jax.Array:
        return (std * kernels[name]).astype(dtype)

    def zeros(*shape: int) -> jax.Array:
        return jnp.zeros(shape, dtype)

    def ones(*shape: int) -> jax.Array:
        return jnp.ones(shape, dtype)

    blocks = {
        "ln1_scale": ones(n_layer, dim), "ln1_bias": zeros(n_layer, dim),
        "ln2_scale": ones(n_layer, dim), "ln2_bias": zeros(n_layer, dim),
        "qkv_kernel": normal("qkv_kernel", INIT_STD),
        "qkv_bias": zeros(n_layer, 3, heads, head),
        "attn_out_kernel": normal("attn_out_kernel", residual_std),
        "attn_out_bias": zeros(n_layer, dim),
        "fc_kernel": normal("fc_kernel", INIT_STD),
        "fc_bias": zeros(n_layer, hidden),
        "proj_kernel": normal("proj_kernel", residual_std),
        "proj_bias": zeros(n_layer, dim),
    }
    return {
        "token_embedding": normal("token_embedding", INIT_STD),
        "blocks": blocks,
        "ln_f_scale": ones(dim),
        "ln_f_bias": zeros(dim),
    }


def weight_decay_mask(params: Params) -> Params:
    """True for leaves that take weight decay (kernels and the embedding), False for biases and
    LayerNorm parameters; works for supernet and dense parameter trees."""
    def decays(path: tuple[Any, ...], _: Any) -> bool:
        name = str(getattr(path[-1], "key", ""))
        return name.endswith("_kernel") or name == "token_embedding"
    return jax.tree_util.tree_map_with_path(decays, params)


def param_count(tree: Any) -> int:
    """Number of scalars in a parameter pytree (its real shapes)."""
    return int(sum(np.prod(np.shape(leaf), dtype=np.int64) for leaf in jax.tree.leaves(tree)))


# ---------------------------------------------------------------------------- shared helpers
def vocab_chunks(embedding: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The tied embedding (V, D) as (V / V_c, V_c, D) chunks (a free reshape) and each
    chunk's first token id: the scan operands of the heads that never hold (N, V) logits.
    V_c is the largest divisor of V up to `VOCAB_CHUNK`."""
    vocab = embedding.shape[0]
    size = next(c for c in range(min(VOCAB_CHUNK, vocab), 0, -1) if vocab % c == 0)
    return (embedding.reshape(vocab // size, size, embedding.shape[1]),
            jnp.arange(0, vocab, size, dtype=jnp.int32))


def _rope_tables(seq: int, head_size: int) -> tuple[jax.Array, jax.Array]:
    """cos, sin of shape (T, R) for the first R = head_size/2 dims (NeoX: frequencies
    repeated for the two halves)."""
    rope_dims = int(head_size * ROPE_FRACTION)
    inv_freq = 1.0 / ROPE_BASE ** (jnp.arange(0, rope_dims, 2, dtype=jnp.float32) / rope_dims)
    angles = jnp.arange(seq, dtype=jnp.float32)[:, None] * inv_freq[None, :]  # (T, R/2)
    angles = jnp.concatenate([angles, angles], axis=-1)  # (T, R)
    return jnp.cos(angles), jnp.sin(angles)


def _apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half RoPE on the first R dims of x (B, T, H, S); the rest passes through."""
    rope_dims = cos.shape[-1]
    rotated, passed = x[..., :rope_dims], x[..., rope_dims:]
    first, second = jnp.split(rotated, 2, axis=-1)
    cos, sin = cos[:, None, :].astype(x.dtype), sin[:, None, :].astype(x.dtype)  # (T, 1, R)
    rotated = rotated * cos + jnp.concatenate([-second, first], axis=-1) * sin
    return jnp.concatenate([rotated, passed], axis=-1)


def _causal_attention(qkv: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """qkv (B, T, 3, H, S) -> attention output (B, T, H, S); softmax in float32.

    Blocked over queries (`_blocked_attention`). From `ATTENTION_MAP_MIN_SEQ` tokens on, the
    (batch, head) pairs run one after another (`lax.map`) on plain 2-D products: XLA's CPU
    batched matmul is about 3x slower than the same products one head at a time, and one
    head's (T, T) scores stay in cache (T = 1024: 25 instead of 50 ms per 12-head layer).
    Shorter sequences keep the batched form, which wins there."""
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, H, S)
    q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
    batch, seq, heads, head_size = q.shape
    q = q * jnp.asarray(1.0 / math.sqrt(head_size), q.dtype)
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))  # (B, H, T, S)
    if seq >= ATTENTION_MAP_MIN_SEQ:
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
    for start in range(0, seq, ATTENTION_BLOCK):
        end = min(start + ATTENTION_BLOCK, seq)
        scores = jnp.einsum("...tc,...sc->...ts", q[..., start:end, :], k[..., :end, :])
        scores = scores.astype(jnp.float32)  # (..., end - start, end)
        causal = jnp.arange(start, end)[:, None] >= jnp.arange(end)[None, :]
        scores = jnp.where(causal, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        outputs.append(jnp.einsum("...ts,...sc->...tc", probs, v[..., :end, :]))
    return outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-2)


@jax.custom_jvp
def _gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU. Its derivative Phi(x) + x phi(x) is formed once, in the forward pass,
    so the backward pass reads one saved array instead of re-deriving erfc's pieces (autodiff
    of `jax.nn.gelu` saved four (tokens, hidden) arrays per layer)."""
    return jax.nn.gelu(x, approximate=False)


@_gelu.defjvp
def _gelu_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]
              ) -> tuple[jax.Array, jax.Array]:
    (x,), (t,) = primals, tangents
    cdf = 0.5 * lax.erfc(x * jnp.asarray(-1 / math.sqrt(2), x.dtype))  # Phi(x)
    pdf = jnp.exp(-0.5 * x * x) * jnp.asarray(1 / math.sqrt(2 * math.pi), x.dtype)  # phi(x)
    return x * cdf, t * (cdf + x * pdf)


# Under differentiation, a conditional branch saves only these padded intermediates and
# recomputes the rest (see `masked_hidden`).
_BRANCH_SAVED = ("qkv", "attention", "mlp_pre")
_branch_remat = partial(
    jax.checkpoint, policy=jax.checkpoint_policies.save_only_these_names(*_BRANCH_SAVED))


def _saved_padded(x: jax.Array, full: int, axis: int, name: str) -> jax.Array:
    """x, named `name` for `_branch_remat` in a zero-padded copy of size `full` along `axis`.

    A differentiated `lax.switch` merges its branches' residuals by shape; padded to the widest
    branch, the narrower branches' saved values share its slots instead of each adding slots
    of their own (zero-filled whenever another branch runs)."""
    if x.shape[axis] == full:
        return checkpoint_name(x, name)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, full - x.shape[axis])
    padded = checkpoint_name(jnp.pad(x, pad), name)
    return lax.slice_in_dim(padded, 0, x.shape[axis], axis=axis)


def _cast(tree: Any, dtype: Any) -> Any:
    return tree if dtype is None else jax.tree.map(lambda a: a.astype(dtype), tree)


# ---------------------------------------------------------------------------- masked supernet
def _masked_layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, dim_mask: jax.Array,
                       dim: jax.Array) -> jax.Array:
    """LayerNorm over the first `dim` features of x (B, T, D) whose other features are zero;
    the output is zero outside them too."""
    x32 = x.astype(jnp.float32)
    mean = x32.sum(-1, keepdims=True) / dim
    centered = (x32 - mean) * dim_mask
    var = jnp.square(centered).sum(-1, keepdims=True) / dim
    y = centered * lax.rsqrt(var + LAYER_NORM_EPS) * scale + bias * dim_mask
    return y.astype(x.dtype)


def masked_hidden(params: Params, tokens: jax.Array, arch: Arch, space: SearchSpace,
                  compute_dtype: Any = None, conditional: bool = False) -> jax.Array:
    """Final hidden states (B, T, D) of the supernet (after the last LayerNorm, before the
    tied head); `masked_forward` applies the head, training fuses it with the loss.

    `arch` is traced data; `space`, `compute_dtype` and `conditional` are static. Masks are
    built once, outside the layer loop: (D,), (L, H), (L, F), (L,).

    With `conditional`, work that masks would discard is not done: an inactive block is
    skipped by `lax.cond`, and each layer's attention and MLP run, through `lax.switch`, the
    branch whose weights are statically sliced to the smallest head count and hidden width
    of the space that covers the layer's choice (masks still apply inside a branch, so the
    result is the same for any arch). A sub-network then costs about what its dense model
    costs (on params sliced to its embed dim, see `train.slice_embed_dim`). Use it only where
    the arch is not vmapped: under vmap a conditional becomes a select that computes every
    branch.

    Under differentiation each branch saves only its products' outputs, zero-padded to the
    widest branch (`_saved_padded`: the qkv projection, the attention output and the MLP
    pre-activation), and recomputes the cheap rest (RoPE, softmax, GELU) in the backward
    pass. A differentiated `lax.switch` stores the union of all branches' residuals, merged
    only where shapes agree and zero-filled for the branches not taken, and the layer scan
    stacks them all: with each branch's own residuals that traffic cost more than
    recomputing the whole branch (s, batch 8 x 256 on 2 CPU cores, back to back: the smallest
    arch's gradient 4.1-4.7 -> 2.5 s), and recomputing the whole branch costs its products
    again (a width-768 random arch: 10.0 -> 9.1 s with the padded saves). Without
    differentiation none of this changes anything.
    """
    _, dim_max, _, heads_max, _ = params["blocks"]["qkv_kernel"].shape
    hidden_max = params["blocks"]["fc_kernel"].shape[-1]
    dtype = compute_dtype or params["token_embedding"].dtype
    dim = arch.embed_dim.astype(jnp.float32)
    dim_mask = (jnp.arange(dim_max) < arch.embed_dim).astype(jnp.float32)
    head_mask = (jnp.arange(heads_max)[None, :] < arch.n_head[:, None]).astype(dtype)
    hidden_units = arch.mlp_ratio * arch.embed_dim
    hidden_mask = (jnp.arange(hidden_max)[None, :] < hidden_units[:, None]).astype(dtype)
    layer_active = jnp.arange(space.max_layers) < arch.n_layer
    use_bias = arch.bias.astype(dtype)
    cos, sin = _rope_tables(tokens.shape[1], space.head_size)
    x = params["token_embedding"].astype(dtype)[tokens] * dim_mask.astype(dtype)  # (B, T, D)
    norm = _masked_layer_norm

    def attention(p: Params, h: jax.Array, heads: jax.Array, n: int) -> jax.Array:
        """Attention over the first n heads (static), masked to the layer's heads."""
        qkv = (jnp.einsum("btd,dkhs->btkhs", h, p["qkv_kernel"][..., :n, :])
               + use_bias * p["qkv_bias"][:, :n])
        qkv = _saved_padded(qkv, heads_max, 3, "qkv")
        out_kernel = p["attn_out_kernel"][:n] * heads[:n, None, None]
        att = _saved_padded(_causal_attention(qkv, cos, sin), heads_max, 2, "attention")
        return (jnp.einsum("bthc,hcd->btd", att, out_kernel)
                + use_bias * p["attn_out_bias"])

    def mlp(p: Params, h: jax.Array, hidden: jax.Array, n: int) -> jax.Array:
        """MLP over the first n hidden units (static), masked to the layer's width."""
        pre = _saved_padded(h @ p["fc_kernel"][:, :n] + use_bias * p["fc_bias"][:n],
                            hidden_max, 2, "mlp_pre")
        h = _gelu(pre) * hidden[:n]
        return h @ p["proj_kernel"][:n] + use_bias * p["proj_bias"]

    # Branch widths: one per head count / MLP ratio of the space, at this params' width.
    head_widths = tuple(n for n in space.n_heads if n <= heads_max)
    hidden_widths = tuple(hidden_max * r // max(space.mlp_ratios) for r in space.mlp_ratios)

    def update(x: jax.Array, p: Params, heads: jax.Array, hidden: jax.Array) -> jax.Array:
        p = _cast(p, dtype)
        h_attn = norm(x, p["ln1_scale"], p["ln1_bias"], dim_mask, dim)
        h_mlp = norm(x, p["ln2_scale"], p["ln2_bias"], dim_mask, dim)
        if conditional:
            # Branch index: the first width that covers the active heads / hidden units.
            head_branch = jnp.sum(jnp.asarray(head_widths) < heads.sum().astype(jnp.int32))
            hidden_branch = jnp.sum(jnp.asarray(hidden_widths)
                                    < hidden.sum().astype(jnp.int32))
            attn = lax.switch(jnp.minimum(head_branch, len(head_widths) - 1),
                              [_branch_remat(partial(attention, n=n)) for n in head_widths],
                              p, h_attn, heads)
            out = lax.switch(jnp.minimum(hidden_branch, len(hidden_widths) - 1),
                             [_branch_remat(partial(mlp, n=n)) for n in hidden_widths],
                             p, h_mlp, hidden)
        else:
            attn = attention(p, h_attn, heads, heads_max)
            out = mlp(p, h_mlp, hidden, hidden_max)
        return x + (attn + out) * dim_mask.astype(dtype)

    def block(x: jax.Array, layer: tuple[Any, ...]) -> tuple[jax.Array, None]:
        p, heads, hidden, active = layer
        if conditional:
            return lax.cond(active, lambda x: update(x, p, heads, hidden), lambda x: x, x), None
        return jnp.where(active, update(x, p, heads, hidden), x), None

    x, _ = lax.scan(block, x, (params["blocks"], head_mask, hidden_mask, layer_active))
    return norm(x, params["ln_f_scale"], params["ln_f_bias"], dim_mask, dim)


def masked_forward(params: Params, tokens: jax.Array, arch: Arch, space: SearchSpace,
                   compute_dtype: Any = None, conditional: bool = False) -> jax.Array:
    """Supernet logits (B, T, V_pad) float32 of one arch (batch shape ()); jit-able.

    `arch` is traced data; `space`, `compute_dtype` and `conditional` (see `masked_hidden`)
    are static. No input checks here (use `forward` at a boundary). `compute_dtype` (e.g.
    bfloat16) casts parameters at use; LayerNorm and softmax run in float32.
    """
    x = masked_hidden(params, tokens, arch, space, compute_dtype, conditional)
    embedding = params["token_embedding"].astype(compute_dtype or params["token_embedding"].dtype)
    return (x @ embedding.T).astype(jnp.float32)


def masked_forward_batched(params: Params, tokens: jax.Array, archs: Arch, space: SearchSpace,
                           compute_dtype: Any = None) -> jax.Array:
    """Logits (N, B, T, V_pad) of N archs (batch shape (N,)) on the same tokens; jit-able."""
    return jax.vmap(masked_forward, in_axes=(None, None, 0, None, None))(
        params, tokens, archs, space, compute_dtype)


_masked_forward_jit = jax.jit(masked_forward, static_argnames=("space", "compute_dtype"))
_masked_forward_batched_jit = jax.jit(masked_forward_batched,
                                      static_argnames=("space", "compute_dtype"))


# ---------------------------------------------------------------------------- validation
def check_tokens(tokens: Any, space: SearchSpace) -> None:
    """Raise ValueError unless tokens are integer ids of shape (B, T), T <= block size."""
    shape, dtype = np.shape(tokens), getattr(tokens, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"tokens have dtype {dtype}, expected an integer array of ids")
    if len(shape) != 2 or 0 in shape:
        raise ValueError(f"tokens have shape {shape}, expected non-empty (batch, seq)")
    if shape[1] > space.block_size:
        raise ValueError(f"sequence length {shape[1]} exceeds the {space.scale} block size "
                         f"{space.block_size}")
    host = np.asarray(tokens)
    low, high = int(host.min()), int(host.max())
    if low < 0 or high >= space.vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"token id {bad} is outside [0, {space.vocab_size})")


def _check_params(params: Params, space: SearchSpace) -> None:
    expected = (space.padded_vocab_size, max(space.embed_dims))
    got = np.shape(params.get("token_embedding")) if isinstance(params, dict) else None
    layers = np.shape(params["blocks"]["qkv_kernel"])[0] if got == expected else None
    if got != expected or layers != space.max_layers:
        raise ValueError(f"params do not fit the {space.scale} space: token_embedding shape "
                         f"{got}, {layers} layers; expected {expected}, {space.max_layers}")


def forward(params: Params, tokens: Any, arch: Arch, space: SearchSpace,
            compute_dtype: Any = None) -> jax.Array:
    """Validated supernet logits (B, T, V_pad) of one arch; one compiled function per space."""
    arch = space.validate(arch)
    if arch.batch_shape:
        raise ValueError(f"forward takes one arch (batch shape ()), got batch shape "
                         f"{arch.batch_shape}; use forward_batched")
    check_tokens(tokens, space)
    _check_params(params, space)
    return _masked_forward_jit(params, jnp.asarray(tokens), arch, space, compute_dtype)


def forward_batched(params: Params, tokens: Any, archs: Arch, space: SearchSpace,
                    compute_dtype: Any = None) -> jax.Array:
    """Validated logits (N, B, T, V_pad) of a batch of N archs on the same tokens."""
    archs = space.validate(archs)
    if len(archs.batch_shape) != 1:
        raise ValueError(f"forward_batched takes archs of batch shape (N,), got "
                         f"{archs.batch_shape}")
    check_tokens(tokens, space)
    _check_params(params, space)
    return _masked_forward_batched_jit(params, jnp.asarray(tokens), archs, space,
                                       compute_dtype)


# ---------------------------------------------------------------------------- dense model
def extract(params: Params, arch: Arch, space: SearchSpace) -> Params:
    """Slice supernet parameters to one arch's real shapes (a standalone dense GPT).

    NumPy parameters are sliced on the host (fast, no compile); JAX arrays by one jitted
    slicing program per arch on their device.

    Returns the supernet layout without the layer axis: `blocks` is a list of n_layer dicts
    whose heads and hidden sizes may differ per layer; bias leaves are absent when the arch
    has no biases (LayerNorm biases are always kept).
    """
    arch = space.validate(arch)
    if arch.batch_shape:
        raise ValueError(f"extract takes one arch (batch shape ()), got {arch.batch_shape}")
    _check_params(params, space)
    depth = int(arch.n_layer)
    signature = (int(arch.embed_dim), bool(arch.bias), tuple(arch.n_head[:depth].tolist()),
                 tuple(arch.mlp_ratio[:depth].tolist()))
    if all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(params)):
        host = _slice_params(params, signature)  # NumPy in, NumPy out: no compile
        return jax.tree.map(np.ascontiguousarray, host)
    return _slice_params_jit(params, signature)


def _slice_params(params: Params, signature: tuple[Any, ...]) -> Params:
    dim, use_bias, n_head, mlp_ratio = signature
    stacked = params["blocks"]
    blocks = []
    for layer, (heads, ratio) in enumerate(zip(n_head, mlp_ratio, strict=True)):
        hidden = ratio * dim
        block = {
            "ln1_scale": stacked["ln1_scale"][layer, :dim],
            "ln1_bias": stacked["ln1_bias"][layer, :dim],
            "ln2_scale": stacked["ln2_scale"][layer, :dim],
            "ln2_bias": stacked["ln2_bias"][layer, :dim],
            "qkv_kernel": stacked["qkv_kernel"][layer, :dim, :, :heads],
            "attn_out_kernel": stacked["attn_out_kernel"][layer, :heads, :, :dim],
            "fc_kernel": stacked["fc_kernel"][layer, :dim, :hidden],
            "proj_kernel": stacked["proj_kernel"][layer, :hidden, :dim],
        }
        if use_bias:
            block |= {
                "qkv_bias": stacked["qkv_bias"][layer, :, :heads],
                "attn_out_bias": stacked["attn_out_bias"][layer, :dim],
                "fc_bias": stacked["fc_bias"][layer, :hidden],
                "proj_bias": stacked["proj_bias"][layer, :dim],
            }
        blocks.append(block)
    return {
        "token_embedding": params["token_embedding"][:, :dim],
        "blocks": blocks,
        "ln_f_scale": params["ln_f_scale"][:dim],
        "ln_f_bias": params["ln_f_bias"][:dim],
    }


# One small slicing program per arch, run where the parameters live (no host round trip).
_slice_params_jit = jax.jit(_slice_params, static_argnums=1)


def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    return ((x32 - mean) * lax.rsqrt(var + LAYER_NORM_EPS) * scale + bias).astype(x.dtype)


def _dense_block(x: jax.Array, p: Params, cos: jax.Array, sin: jax.Array) -> jax.Array:
    zero = jnp.zeros((), x.dtype)
    h = _layer_norm(x, p["ln1_scale"], p["ln1_bias"])
    qkv = jnp.einsum("btd,dkhs->btkhs", h, p["qkv_kernel"]) + p.get("qkv_bias", zero)
    attn = jnp.einsum("bthc,hcd->btd", _causal_attention(qkv, cos, sin), p["attn_out_kernel"])
    attn = attn + p.get("attn_out_bias", zero)
    h = _layer_norm(x, p["ln2_scale"], p["ln2_bias"])
    h = _gelu(h @ p["fc_kernel"] + p.get("fc_bias", zero))
    return x + attn + h @ p["proj_kernel"] + p.get("proj_bias", zero)


def dense_forward(dense_params: Params, tokens: jax.Array, compute_dtype: Any = None
                  ) -> jax.Array:
    """Logits (B, T, V_pad) float32 of a dense GPT from `extract`; jit-able (one compile per
    shape). Shapes come from the parameters: head size is qkv_kernel.shape[-1]."""
    dtype = compute_dtype or dense_params["token_embedding"].dtype
    dense_params = _cast(dense_params, dtype)
    head_size = dense_params["blocks"][0]["qkv_kernel"].shape[-1] if dense_params[
        "blocks"] else 2
    cos, sin = _rope_tables(tokens.shape[1], head_size)
    x = dense_params["token_embedding"][tokens]  # (B, T, d)
    for block in dense_params["blocks"]:
        x = _dense_block(x, block, cos, sin)
    x = _layer_norm(x, dense_params["ln_f_scale"], dense_params["ln_f_bias"])
    return (x @ dense_params["token_embedding"].T).astype(jnp.float32)
