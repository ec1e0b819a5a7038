"""Supernet parameter trees: initialization, slicing to sub-networks, and their bookkeeping.

The parameters of `model.Supernet` are its `nnx.state` as a plain dict (`to_pure_dict()`),
the layout that jit, grad, pmap, optax and orbax see: `token_embedding` (V_pad, D), `blocks`
(every block leaf stacked along a leading Lmax axis), `ln_f_scale`, `ln_f_bias` (D,).
Weight entanglement (Chen et al., AutoFormer, arXiv 2107.00651) makes a sub-network the
leading slice of every dimension: `slice_embed_dim` cuts the embedding axes to one embed dim
(what training and evaluation compile per width bucket) and `extract` cuts everything to one
arch's real shapes (a dense GPT, `model.DenseGPT`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hwgpt_jax.space.arch import Arch, SearchSpace

Params = dict[str, Any]

INIT_STD = 0.02


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


def slice_embed_dim(params: Params, dim: int, max_ratio: int) -> Params:
    """Leading slice of every embedding-dim axis (and MLP hidden axis) of supernet params:
    the parameters of the width bucket `dim`, with heads, ratios and depth still at their
    largest (they stay traced data)."""
    hidden = max_ratio * dim
    b = params["blocks"]
    return {
        "token_embedding": params["token_embedding"][:, :dim],
        "blocks": b | {
            "ln1_scale": b["ln1_scale"][:, :dim], "ln1_bias": b["ln1_bias"][:, :dim],
            "ln2_scale": b["ln2_scale"][:, :dim], "ln2_bias": b["ln2_bias"][:, :dim],
            "qkv_kernel": b["qkv_kernel"][:, :dim],
            "attn_out_kernel": b["attn_out_kernel"][..., :dim],
            "attn_out_bias": b["attn_out_bias"][:, :dim],
            "fc_kernel": b["fc_kernel"][:, :dim, :hidden], "fc_bias": b["fc_bias"][:, :hidden],
            "proj_kernel": b["proj_kernel"][:, :hidden, :dim],
            "proj_bias": b["proj_bias"][:, :dim],
        },
        "ln_f_scale": params["ln_f_scale"][:dim], "ln_f_bias": params["ln_f_bias"][:dim],
    }


def check_params(params: Params, space: SearchSpace) -> None:
    """Raise ValueError unless `params` are supernet parameters of `space` (largest shapes)."""
    expected = (space.padded_vocab_size, max(space.embed_dims))
    try:
        got = tuple(np.shape(params["token_embedding"]))
        layers = int(np.shape(params["blocks"]["qkv_kernel"])[0])
    except (KeyError, TypeError, IndexError) as err:
        raise ValueError(f"params are not supernet parameters (missing {err})") from None
    if got != expected or layers != space.max_layers:
        raise ValueError(f"params do not fit the {space.scale} space: token_embedding shape "
                         f"{got}, {layers} layers; expected {expected}, {space.max_layers} "
                         f"(was the checkpoint trained on another scale?)")


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
    check_params(params, space)
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
