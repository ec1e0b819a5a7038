"""The GPT supernet of HW-GPT-Bench as Flax NNX modules: masked weight entanglement, and dense
extraction.

HW-GPT-Bench (Sukthanker et al., arXiv 2405.10299) trains one weight-sharing GPT-2 supernet
(Radford et al. 2019) whose sub-networks are the architectures of a search space. Weight
entanglement (Chen et al., AutoFormer, arXiv 2107.00651) lets every sub-network use the
*leading slice* of each weight: the first d embedding dims, the first h heads, the first r*d
MLP hidden units and the first n_layer blocks.

- `Supernet(space, rngs=...)`, called as `model(tokens, arch)`: `arch` is data (an `Arch` of
  arrays), so the masks are computed inside jit and ONE compiled function serves every
  architecture of a space. Inactive embedding dims stay exactly zero, LayerNorm statistics
  cover the active dims only, inactive heads and hidden units are masked out, and inactive
  blocks are the identity. Its blocks are one `Block` whose parameters are stacked along a
  leading Lmax axis and run by `lax.scan`, so compile time does not grow with depth.
- `Supernet.extract(arch)`: a `DenseGPT` of the sub-network's real shapes; what profiling
  times and counts, and what export writes.

Model (DESIGN.md): GPT-2 base, vocabulary padded to 50304, LM head tied to the token
embedding, no learned position embedding, parallel residual `x + attn(ln1(x)) + mlp(ln2(x))`,
final LayerNorm (biases always on, eps 1e-5), causal attention of width n_head * head_size
with scale 1/sqrt(head_size) (`hwgpt_jax.model.attention`: XLA / cuDNN on accelerators), RoPE
(GPT-NeoX rotate-half, base 10000) on the first half of each head's dims, MLP fc(d -> r*d),
exact (erf) GELU as in PyTorch/LitGPT, proj(r*d -> d). The bias flag switches every
linear-layer bias. Logits cover the padded vocabulary.

At jit boundaries the modules travel as `nnx.split` / `nnx.merge`: the parameters are the
module's state as a plain dict (`hwgpt_jax.model.params`), the pytree that jit, vmap over archs,
grad, pmap and optax see, and the functional forms (`masked_hidden(params, ...)`,
`dense_forward`) merge it back into the modules inside the traced function (no run-time cost).
"""

from __future__ import annotations

import math
from functools import cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from hwgpt_jax.model.attention import causal_attention
from hwgpt_jax.model.params import (
    Params,
    check_params,
    extract,
    init_params,
    param_count,
    slice_embed_dim,
    weight_decay_mask,
)
from hwgpt_jax.space.arch import Arch, SearchSpace

__all__ = ["Block", "DenseBlock", "DenseGPT", "Params", "Supernet", "apply_rope", "check_params",
           "check_tokens", "dense_forward", "extract", "forward", "forward_batched", "gelu",
           "init_params", "masked_forward", "masked_forward_batched",
           "masked_forward_batched_jit", "masked_forward_jit", "masked_hidden", "param_count",
           "rope_tables", "slice_embed_dim", "vocab_chunks", "weight_decay_mask"]

LAYER_NORM_EPS = 1e-5
ROPE_BASE = 10000.0
ROPE_FRACTION = 0.5
VOCAB_CHUNK = 384  # tokens of the vocabulary per chunk of the chunked LM heads (50304 = 131 x 384)


# ---------------------------------------------------------------------------- shared helpers
def vocab_chunks(embedding: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The tied embedding (V, D) as (V / V_c, V_c, D) chunks (a free reshape) and each
    chunk's first token id: the scan operands of the heads that never hold (N, V) logits.
    V_c is the largest divisor of V up to `VOCAB_CHUNK`."""
    vocab = embedding.shape[0]
    size = next(c for c in range(min(VOCAB_CHUNK, vocab), 0, -1) if vocab % c == 0)
    return (embedding.reshape(vocab // size, size, embedding.shape[1]),
            jnp.arange(0, vocab, size, dtype=jnp.int32))


def rope_tables(seq: int, head_size: int) -> tuple[jax.Array, jax.Array]:
    """cos, sin of shape (T, R) for the first R = head_size/2 dims (NeoX: frequencies
    repeated for the two halves)."""
    rope_dims = int(head_size * ROPE_FRACTION)
    inv_freq = 1.0 / ROPE_BASE ** (jnp.arange(0, rope_dims, 2, dtype=jnp.float32) / rope_dims)
    angles = jnp.arange(seq, dtype=jnp.float32)[:, None] * inv_freq[None, :]  # (T, R/2)
    angles = jnp.concatenate([angles, angles], axis=-1)  # (T, R)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half RoPE on the first R dims of x (B, T, H, S); the rest passes through."""
    rope_dims = cos.shape[-1]
    rotated, passed = x[..., :rope_dims], x[..., rope_dims:]
    first, second = jnp.split(rotated, 2, axis=-1)
    cos, sin = cos[:, None, :].astype(x.dtype), sin[:, None, :].astype(x.dtype)  # (T, 1, R)
    rotated = rotated * cos + jnp.concatenate([-second, first], axis=-1) * sin
    return jnp.concatenate([rotated, passed], axis=-1)


def _causal_attention(qkv: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """qkv (B, T, 3, H, S) -> causal attention output (B, T, H, S) with RoPE on q and k; the
    kernel is the platform's (`attention.attention_path`)."""
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, H, S)
    return causal_attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)


@jax.custom_jvp
def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU. Its derivative Phi(x) + x phi(x) is formed once, in the forward pass,
    so the backward pass reads one saved array instead of re-deriving erfc's pieces (autodiff
    of `jax.nn.gelu` saved four (tokens, hidden) arrays per layer)."""
    return jax.nn.gelu(x, approximate=False)


@gelu.defjvp
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


class _Context(NamedTuple):
    """What every layer of one supernet forward shares: masks of the arch, RoPE tables and
    the branch widths of the conditional forward."""

    dim_mask: jax.Array  # (D,) float32
    dim: jax.Array  # () float32, the active embed dim
    use_bias: jax.Array  # () compute dtype, 1 or 0
    cos: jax.Array  # (T, R)
    sin: jax.Array
    head_widths: tuple[int, ...]  # static
    hidden_widths: tuple[int, ...]  # static
    conditional: bool  # static


class Block(nnx.Module):
    """A supernet transformer block at the largest shapes (parallel residual, masked heads and
    hidden units). The supernet holds one `Block` whose leaves carry a leading Lmax axis and
    scans over it; inside the scan each layer is a `Block` of per-layer leaves.

    Leaves (D = max embed dim, H = max heads, S = head size, F = max ratio * D):
    ln{1,2}_{scale,bias} (D,), qkv_kernel (D, 3, H, S), qkv_bias (3, H, S),
    attn_out_kernel (H, S, D), attn_out_bias (D,), fc_kernel (D, F), fc_bias (F,),
    proj_kernel (F, D), proj_bias (D,).
    """

    def __init__(self, arrays: Params) -> None:
        for name, value in arrays.items():
            setattr(self, name, nnx.Param(value))

    def attention(self, h: jax.Array, heads: jax.Array, n: int, ctx: _Context) -> jax.Array:
        """Attention of h (B, T, D) over the first n heads (static), masked to `heads` (H,)."""
        heads_max = self.qkv_kernel.shape[-2]
        qkv = (jnp.einsum("btd,dkhs->btkhs", h, self.qkv_kernel[..., :n, :])
               + ctx.use_bias * self.qkv_bias[:, :n])  # (B, T, 3, n, S)
        qkv = _saved_padded(qkv, heads_max, 3, "qkv")
        out_kernel = self.attn_out_kernel[:n] * heads[:n, None, None]
        att = _saved_padded(_causal_attention(qkv, ctx.cos, ctx.sin), heads_max, 2, "attention")
        return (jnp.einsum("bthc,hcd->btd", att, out_kernel)
                + ctx.use_bias * self.attn_out_bias[...])

    def mlp(self, h: jax.Array, hidden: jax.Array, n: int, ctx: _Context) -> jax.Array:
        """MLP of h (B, T, D) over the first n hidden units (static), masked to `hidden` (F,)."""
        hidden_max = self.fc_kernel.shape[-1]
        pre = _saved_padded(h @ self.fc_kernel[:, :n] + ctx.use_bias * self.fc_bias[:n],
                            hidden_max, 2, "mlp_pre")
        h = gelu(pre) * hidden[:n]
        return h @ self.proj_kernel[:n] + ctx.use_bias * self.proj_bias[...]

    def __call__(self, x: jax.Array, heads: jax.Array, hidden: jax.Array,
                 ctx: _Context) -> jax.Array:
        """x (B, T, D) + attn(ln1(x)) + mlp(ln2(x)) of one layer with head mask `heads` (H,)
        and hidden-unit mask `hidden` (F,).

        With `ctx.conditional`, attention and MLP run, through `lax.switch`, the branch whose
        weights are statically sliced to the smallest head count / hidden width of the space
        that covers the layer's choice (masks still apply inside a branch, so the result is
        the same). Each branch is rematerialized except for its products' outputs, saved
        zero-padded to the widest branch (`_saved_padded`): a differentiated `lax.switch`
        stores the union of its branches' residuals, merged only where shapes agree, and the
        layer scan stacks them all, which costs more than recomputing RoPE, softmax and GELU.
        """
        norm = partial(_masked_layer_norm, dim_mask=ctx.dim_mask, dim=ctx.dim)
        h_attn = norm(x, self.ln1_scale[...], self.ln1_bias[...])
        h_mlp = norm(x, self.ln2_scale[...], self.ln2_bias[...])
        if ctx.conditional:
            graph, state = nnx.split(self)  # the branches take the layer's state as operand

            def branch(method: str, n: int) -> Any:
                return _branch_remat(lambda s, h, m: getattr(nnx.merge(graph, s), method)(
                    h, m, n, ctx))

            # Branch index: the first width that covers the active heads / hidden units.
            head_branch = jnp.sum(jnp.asarray(ctx.head_widths) < heads.sum().astype(jnp.int32))
            hidden_branch = jnp.sum(jnp.asarray(ctx.hidden_widths)
                                    < hidden.sum().astype(jnp.int32))
            attn = lax.switch(jnp.minimum(head_branch, len(ctx.head_widths) - 1),
                              [branch("attention", n) for n in ctx.head_widths],
                              state, h_attn, heads)
            out = lax.switch(jnp.minimum(hidden_branch, len(ctx.hidden_widths) - 1),
                             [branch("mlp", n) for n in ctx.hidden_widths], state, h_mlp, hidden)
        else:
            attn = self.attention(h_attn, heads, self.qkv_kernel.shape[-2], ctx)
            out = self.mlp(h_mlp, hidden, self.fc_kernel.shape[-1], ctx)
        return x + (attn + out) * ctx.dim_mask.astype(x.dtype)


class Supernet(nnx.Module):
    """The GPT supernet of a search space: `model(tokens, arch)` gives the logits of any arch.

    `Supernet(space, rngs=nnx.Rngs(0))` draws GPT-2 style parameters (`params.init_params`);
    `Supernet.from_params(params, space)` wraps a parameter dict (e.g. a checkpoint's, or one
    sliced to an embed dim: shapes are read from the leaves, so a width bucket's slice is a
    narrower supernet of the same space).
    """

    def __init__(self, space: SearchSpace, *, rngs: nnx.Rngs, dtype: Any = jnp.float32) -> None:
        self.space = space
        self._assign(init_params(rngs.params(), space, dtype))

    def _assign(self, params: Params) -> None:
        self.token_embedding = nnx.Param(params["token_embedding"])  # (V_pad, D), tied head
        self.blocks = Block(params["blocks"])  # leaves (Lmax, ...)
        self.ln_f_scale = nnx.Param(params["ln_f_scale"])
        self.ln_f_bias = nnx.Param(params["ln_f_bias"])

    @classmethod
    def from_params(cls, params: Params, space: SearchSpace) -> Supernet:
        """The supernet of `space` holding `params` (arrays or tracers; nothing is copied)."""
        return nnx.merge(_graphdef(space), params)

    def params(self) -> Params:
        """The parameters as a plain dict (`hwgpt_jax.model.params` layout)."""
        return nnx.to_pure_dict(nnx.state(self))

    def hidden(self, tokens: jax.Array, arch: Arch, compute_dtype: Any = None,
               conditional: bool = False) -> jax.Array:
        """Final hidden states (B, T, D) (after the last LayerNorm, before the tied head).

        `arch` is traced data (batch shape ()); masks are built once, outside the layer scan.
        With `conditional`, work that masks would discard is skipped: an inactive block by
        `lax.cond`, unused heads and hidden units by `Block`'s branches. A sub-network then
        costs about what its dense model costs (on params sliced to its embed dim,
        `params.slice_embed_dim`). Use it only where the arch is not vmapped: under vmap a
        conditional becomes a select that computes every branch.
        """
        space = self.space
        embedding = self.token_embedding[...]
        dim_max = embedding.shape[1]
        heads_max, hidden_max = self.blocks.qkv_kernel.shape[-2], self.blocks.fc_kernel.shape[-1]
        dtype = compute_dtype or embedding.dtype
        dim_mask = (jnp.arange(dim_max) < arch.embed_dim).astype(jnp.float32)
        head_mask = (jnp.arange(heads_max)[None, :] < arch.n_head[:, None]).astype(dtype)
        hidden_units = arch.mlp_ratio * arch.embed_dim
        hidden_mask = (jnp.arange(hidden_max)[None, :] < hidden_units[:, None]).astype(dtype)
        layer_active = jnp.arange(space.max_layers) < arch.n_layer
        cos, sin = rope_tables(tokens.shape[1], space.head_size)
        ctx = _Context(dim_mask, arch.embed_dim.astype(jnp.float32), arch.bias.astype(dtype),
                       cos, sin, tuple(n for n in space.n_heads if n <= heads_max),
                       tuple(hidden_max * r // max(space.mlp_ratios) for r in space.mlp_ratios),
                       conditional)
        graph, state = nnx.split(self.blocks)
        x = embedding.astype(dtype)[tokens] * dim_mask.astype(dtype)  # (B, T, D)

        def layer(x: jax.Array, inputs: tuple[Any, ...]) -> tuple[jax.Array, None]:
            layer_state, heads, hidden, active = inputs
            block = nnx.merge(graph, _cast(layer_state, compute_dtype))
            if conditional:
                return lax.cond(active, lambda x: block(x, heads, hidden, ctx), lambda x: x,
                                x), None
            return jnp.where(active, block(x, heads, hidden, ctx), x), None

        x, _ = lax.scan(layer, x, (state, head_mask, hidden_mask, layer_active))
        return _masked_layer_norm(x, self.ln_f_scale[...], self.ln_f_bias[...], dim_mask,
                                  ctx.dim)

    def __call__(self, tokens: jax.Array, arch: Arch, compute_dtype: Any = None,
                 conditional: bool = False) -> jax.Array:
        """Logits (B, T, V_pad) float32 of one arch (batch shape ()) on tokens (B, T); no input
        checks (`forward` checks). `compute_dtype` (e.g. bfloat16) casts parameters at use;
        LayerNorm and softmax run in float32."""
        x = self.hidden(tokens, arch, compute_dtype, conditional)
        embedding = self.token_embedding[...].astype(compute_dtype or
                                                     self.token_embedding[...].dtype)
        return (x @ embedding.T).astype(jnp.float32)

    def extract(self, arch: Arch) -> DenseGPT:
        """The dense sub-network of one arch (batch shape ()) with its real shapes."""
        return DenseGPT(extract(self.params(), arch, self.space))


@cache
def _graphdef(space: SearchSpace) -> Any:
    """The supernet's graph structure for a space (no parameters are materialized)."""
    return nnx.split(nnx.eval_shape(lambda: Supernet(space, rngs=nnx.Rngs(0))))[0]


def masked_hidden(params: Params, tokens: jax.Array, arch: Arch, space: SearchSpace,
                  compute_dtype: Any = None, conditional: bool = False) -> jax.Array:
    """`Supernet.hidden` of a parameter dict (inside jit: the module is merged at trace time).

    `arch` is traced data; `space`, `compute_dtype` and `conditional` are static."""
    return Supernet.from_params(params, space).hidden(tokens, arch, compute_dtype, conditional)


def masked_forward(params: Params, tokens: jax.Array, arch: Arch, space: SearchSpace,
                   compute_dtype: Any = None, conditional: bool = False) -> jax.Array:
    """Supernet logits (B, T, V_pad) float32 of one arch of a parameter dict; jit-able."""
    return Supernet.from_params(params, space)(tokens, arch, compute_dtype, conditional)


def masked_forward_batched(params: Params, tokens: jax.Array, archs: Arch, space: SearchSpace,
                           compute_dtype: Any = None) -> jax.Array:
    """Logits (N, B, T, V_pad) of N archs (batch shape (N,)) on the same tokens; jit-able."""
    return jax.vmap(masked_forward, in_axes=(None, None, 0, None, None))(
        params, tokens, archs, space, compute_dtype)


# The compiled entry points behind `forward` / `forward_batched` (one program per space).
masked_forward_jit = jax.jit(masked_forward, static_argnames=("space", "compute_dtype"))
masked_forward_batched_jit = jax.jit(masked_forward_batched,
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




def forward(params: Params, tokens: Any, arch: Arch, space: SearchSpace,
            compute_dtype: Any = None) -> jax.Array:
    """Validated supernet logits (B, T, V_pad) of one arch; one compiled function per space."""
    arch = space.validate(arch)
    if arch.batch_shape:
        raise ValueError(f"forward takes one arch (batch shape ()), got batch shape "
                         f"{arch.batch_shape}; use forward_batched")
    check_tokens(tokens, space)
    check_params(params, space)
    return masked_forward_jit(params, jnp.asarray(tokens), arch, space, compute_dtype)


def forward_batched(params: Params, tokens: Any, archs: Arch, space: SearchSpace,
                    compute_dtype: Any = None) -> jax.Array:
    """Validated logits (N, B, T, V_pad) of a batch of N archs on the same tokens."""
    archs = space.validate(archs)
    if len(archs.batch_shape) != 1:
        raise ValueError(f"forward_batched takes archs of batch shape (N,), got "
                         f"{archs.batch_shape}")
    check_tokens(tokens, space)
    check_params(params, space)
    return masked_forward_batched_jit(params, jnp.asarray(tokens), archs, space,
                                       compute_dtype)


# ---------------------------------------------------------------------------- dense model
def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    return ((x32 - mean) * lax.rsqrt(var + LAYER_NORM_EPS) * scale + bias).astype(x.dtype)


class DenseBlock(nnx.Module):
    """One block of a dense sub-network with its real shapes (d, h heads, r*d hidden units);
    the bias leaves exist only when the arch has biases."""

    def __init__(self, arrays: Params) -> None:
        for name, value in arrays.items():
            setattr(self, name, nnx.Param(value))

    def _bias(self, name: str, dtype: Any) -> jax.Array:
        bias = getattr(self, name, None)
        return jnp.zeros((), dtype) if bias is None else bias[...].astype(dtype)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        dtype = x.dtype
        h = _layer_norm(x, self.ln1_scale[...].astype(dtype), self.ln1_bias[...].astype(dtype))
        qkv = (jnp.einsum("btd,dkhs->btkhs", h, self.qkv_kernel[...].astype(dtype))
               + self._bias("qkv_bias", dtype))
        attn = jnp.einsum("bthc,hcd->btd", _causal_attention(qkv, cos, sin),
                          self.attn_out_kernel[...].astype(dtype))
        attn = attn + self._bias("attn_out_bias", dtype)
        h = _layer_norm(x, self.ln2_scale[...].astype(dtype), self.ln2_bias[...].astype(dtype))
        h = gelu(h @ self.fc_kernel[...].astype(dtype) + self._bias("fc_bias", dtype))
        return (x + attn + h @ self.proj_kernel[...].astype(dtype)
                + self._bias("proj_bias", dtype))


class DenseGPT(nnx.Module):
    """A dense GPT of one arch's real shapes (`Supernet.extract`), built from the parameter
    dict of `params.extract` (the layout export writes); `model(tokens)` gives its logits."""

    def __init__(self, arrays: Params) -> None:
        self.token_embedding = nnx.Param(arrays["token_embedding"])  # (V_pad, d), tied head
        self.blocks = nnx.List([DenseBlock(block) for block in arrays["blocks"]])
        self.ln_f_scale = nnx.Param(arrays["ln_f_scale"])
        self.ln_f_bias = nnx.Param(arrays["ln_f_bias"])

    def __call__(self, tokens: jax.Array, compute_dtype: Any = None) -> jax.Array:
        """Logits (B, T, V_pad) float32 of tokens (B, T); jit-able (one compile per shape).
        The head size is read from the parameters."""
        embedding = self.token_embedding[...]
        dtype = compute_dtype or embedding.dtype
        embedding = embedding.astype(dtype)
        head_size = self.blocks[0].qkv_kernel.shape[-1] if len(self.blocks) else 2
        cos, sin = rope_tables(tokens.shape[1], head_size)
        x = embedding[tokens]  # (B, T, d)
        for block in self.blocks:
            x = block(x, cos, sin)
        x = _layer_norm(x, self.ln_f_scale[...].astype(dtype), self.ln_f_bias[...].astype(dtype))
        return (x @ embedding.T).astype(jnp.float32)


def dense_forward(dense_params: Params, tokens: jax.Array, compute_dtype: Any = None
                  ) -> jax.Array:
    """`DenseGPT(dense_params)(tokens)`: logits (B, T, V_pad) float32 of a parameter dict from
    `extract`; jit-able (one compile per shape)."""
    return DenseGPT(dense_params)(tokens, compute_dtype)
