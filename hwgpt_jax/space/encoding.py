"""Feature encodings of architectures for surrogate models.

`onehot` is the HW-GPT-Bench layout (its `convert_config_to_one_hot`): embed one-hot (3), depth
one-hot (3), per-layer MLP-ratio one-hots (Lmax x 3, row-major), per-layer head one-hots
(Lmax x 3), bias one-hot (2, order [True, False]); zeros past `n_layer`. Length 80/152/224 for
s/m/l. `continuous` is a compact alternative: each value divided by its largest choice.
`costs` is `continuous` plus `cost_features` (parameters, FLOPs and MACs of the published
profiled models and of our model, as logs and fractions of the largest arch's, and aggregates:
depth, summed heads, summed MLP ratios, bias). `cost_summary` is the ten-feature description a
linear baseline uses (embed one-hot, depth, summed heads, summed ratios, bias, log params and
log FLOPs of the published model). The tiny space has no published model: there the published
cost columns hold our model's counts instead (`cost_source` says which).

All are jit-able and work on any batch shape; padding (0) never matches a choice.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hwgpt_jax.space.arch import Arch, SearchSpace
from hwgpt_jax.space.costs import forward_flops, param_count
from hwgpt_jax.space.published_costs import has_published_costs, published_costs

# The definition of every existing encoding; new encodings get new names (a file naming an
# encoding this version lacks is rejected by name), a changed definition bumps the version.
ENCODING_VERSION = 1


def onehot_size(space: SearchSpace) -> int:
    """Length of the one-hot encoding: 6 + 6*Lmax + 2 for 3-choice spaces."""
    return (len(space.embed_dims) + len(space.n_layers) + len(space.biases)
            + space.max_layers * (len(space.mlp_ratios) + len(space.n_heads)))


def onehot(arch: Arch, space: SearchSpace) -> jax.Array:
    """HW-GPT-Bench one-hot encoding, float32 (..., onehot_size(space))."""
    batch = jnp.shape(arch.embed_dim)

    def hot(values: jax.Array, choices: tuple) -> jax.Array:
        return (jnp.asarray(values)[..., None] == jnp.asarray(choices)).astype(jnp.float32)

    bias_true = jnp.asarray(arch.bias, bool)[..., None]
    return jnp.concatenate(
        [
            hot(arch.embed_dim, space.embed_dims),
            hot(arch.n_layer, space.n_layers),
            hot(arch.mlp_ratio, space.mlp_ratios).reshape(batch + (-1,)),
            hot(arch.n_head, space.n_heads).reshape(batch + (-1,)),
            jnp.concatenate([bias_true, ~bias_true], axis=-1).astype(jnp.float32),
        ],
        axis=-1,
    )


def continuous_size(space: SearchSpace) -> int:
    return 3 + 2 * space.max_layers


def continuous(arch: Arch, space: SearchSpace) -> jax.Array:
    """Normalized features, float32 (..., 3 + 2*Lmax): [embed, depth, bias, heads, ratios].

    Each value is divided by its largest choice, so features lie in (0, 1] and padding is 0.
    """
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return jnp.concatenate(
        [
            (f32(arch.embed_dim) / max(space.embed_dims))[..., None],
            (f32(arch.n_layer) / space.max_layers)[..., None],
            f32(arch.bias)[..., None],
            f32(arch.n_head) / max(space.n_heads),
            f32(arch.mlp_ratio) / max(space.mlp_ratios),
        ],
        axis=-1,
    )


def cost_source(space: SearchSpace) -> str:
    """Where the published-model cost columns of `cost_features` come from for this space."""
    if has_published_costs(space):
        return "published"
    return (f"analytic: scale {space.scale!r} has no published model, so the published-cost "
            f"features repeat our model's counts (params, FLOPs, FLOPs / 2 for MACs)")


def _raw_costs(arch: Arch, space: SearchSpace) -> list:
    """[published params, FLOPs, MACs, our params, our FLOPs] (jnp or exact NumPy)."""
    ours = [param_count(arch, space), forward_flops(arch, space, 1, space.block_size)]
    if has_published_costs(space):
        published = published_costs(arch, space)
        return [published["params"], published["flops"], published["macs"], *ours]
    return [ours[0], ours[1], ours[1] / 2, *ours]


COST_FEATURES = ("log_params", "log_flops", "log_macs", "log_our_params", "log_our_flops",
                 "params", "flops", "macs", "our_params", "our_flops",
                 "depth", "heads_total", "ratio_total", "bias", "embed_0", "embed_1", "embed_2")
# The linear baseline's description (`cost_summary`), as names of `COST_FEATURES`.
SUMMARY_FEATURES = ("embed_0", "embed_1", "embed_2", "depth", "heads_total", "ratio_total",
                    "bias", "log_params", "log_flops")


def cost_features_size(space: SearchSpace) -> int:
    return len(COST_FEATURES)


def cost_features(arch: Arch, space: SearchSpace) -> jax.Array:
    """Cost features, float32 (..., 17), in the order of `COST_FEATURES`.

    Each count c is given as log(c / c_largest) and c / c_largest (the largest arch of the
    space gives 0 and 1); the aggregates are divided by their largest value; `embed_i` is the
    one-hot of the i-th embed-dim choice.
    """
    if len(space.embed_dims) != 3:
        raise ValueError(f"cost features need 3 embed-dim choices; the {space.scale} space has "
                         f"{list(space.embed_dims)}")
    jarch = jax.tree.map(jnp.asarray, arch)
    largest = [float(np.asarray(c)) for c in _raw_costs(space.largest(), space)]
    ratios = [jnp.maximum(c, 1.0) / top for c, top in
              zip(_raw_costs(jarch, space), largest, strict=True)]
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    aggregates = [f32(jarch.n_layer) / space.max_layers,
                  f32(jarch.n_head).sum(-1) / (space.max_layers * max(space.n_heads)),
                  f32(jarch.mlp_ratio).sum(-1) / (space.max_layers * max(space.mlp_ratios)),
                  f32(jarch.bias)]
    embed = [f32(jarch.embed_dim == d) for d in space.embed_dims]
    return jnp.stack([jnp.log(r) for r in ratios] + ratios + aggregates + embed, axis=-1)


def costs_size(space: SearchSpace) -> int:
    return continuous_size(space) + cost_features_size(space)


def costs(arch: Arch, space: SearchSpace) -> jax.Array:
    """`continuous` followed by `cost_features`, float32 (..., 3 + 2*Lmax + 17)."""
    return jnp.concatenate([continuous(arch, space), cost_features(arch, space)], axis=-1)


def cost_summary_size(space: SearchSpace) -> int:
    return len(SUMMARY_FEATURES)


def cost_summary_columns(space: SearchSpace) -> list[int]:
    """Where the `cost_summary` features sit in the `costs` encoding."""
    offset = continuous_size(space)
    return [offset + COST_FEATURES.index(name) for name in SUMMARY_FEATURES]


def cost_summary(arch: Arch, space: SearchSpace) -> jax.Array:
    """The linear baseline's features, float32 (..., 9): embed one-hot (3), depth, summed
    heads, summed ratios, bias, log params and log FLOPs of the published model."""
    pick = [COST_FEATURES.index(name) for name in SUMMARY_FEATURES]
    return cost_features(arch, space)[..., pick]


ENCODINGS = {"onehot": (onehot, onehot_size), "continuous": (continuous, continuous_size),
             "costs": (costs, costs_size), "cost_summary": (cost_summary, cost_summary_size)}


def encode(arch: Arch, space: SearchSpace, name: str = "onehot") -> jax.Array:
    """Encode with the named encoding (a key of `ENCODINGS`)."""
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; expected one of {list(ENCODINGS)}")
    return _encode(arch, space, name)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _encode(arch: Arch, space: SearchSpace, name: str) -> jax.Array:
    # One program per (space, encoding, batch shape) instead of dozens of single-op programs
    # when called outside jit (fitting, validation); inside jit it is inlined.
    return ENCODINGS[name][0](arch, space)
