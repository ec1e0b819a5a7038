"""Feature encodings of architectures for surrogate models.

`onehot` is the HW-GPT-Bench layout (its `convert_config_to_one_hot`): embed one-hot (3), depth
one-hot (3), per-layer MLP-ratio one-hots (Lmax x 3, row-major), per-layer head one-hots
(Lmax x 3), bias one-hot (2, order [True, False]); zeros past `n_layer`. Length 80/152/224 for
s/m/l. `continuous` is a compact alternative: each value divided by its largest choice.

Both are jit-able and work on any batch shape; padding (0) never matches a choice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hwgpt_jax.space import Arch, SearchSpace

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


ENCODINGS = {"onehot": (onehot, onehot_size), "continuous": (continuous, continuous_size)}


def encode(arch: Arch, space: SearchSpace, name: str = "onehot") -> jax.Array:
    """Encode with the named encoding ('onehot' or 'continuous')."""
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; expected one of {list(ENCODINGS)}")
    return ENCODINGS[name][0](arch, space)
