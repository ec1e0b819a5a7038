"""The surrogate network: an MLP on the architecture encoding with a non-crossing quantile head.

The head predicts the median and positive (softplus) gaps to the neighbouring levels, so the
quantiles are sorted by construction: q_mid = f_0(x), q_{mid+k} = q_mid + sum_{j<=k} softplus,
q_{mid-k} = q_mid - sum_{j<=k} softplus (the "monotone composite" construction of non-crossing
quantile networks, e.g. Cannon 2018). With a single level the head is a plain regressor.

Parameters are a plain pytree (a list of {"w", "b"} dicts), so they vmap, jit and checkpoint
without wrappers.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu,
               "tanh": jnp.tanh}

Params = list[dict[str, jax.Array]]


def init_mlp(key: jax.Array, sizes: Sequence[int], last_scale: float = 1.0) -> Params:
    """He-normal weights and zero biases for layer widths `sizes` (input first, output last);
    `last_scale` shrinks the output layer (a residual MLP then starts near zero)."""
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        scale = jnp.sqrt(2.0 / fan_in)
        if len(layers) == len(sizes) - 2:  # the output layer
            scale = scale * last_scale
        layers.append({"w": scale * jax.random.normal(k, (fan_in, fan_out), jnp.float32),
                       "b": jnp.zeros((fan_out,), jnp.float32)})
    return layers


def apply_mlp(params: Params, x: jax.Array, activation: str = "relu") -> jax.Array:
    """Forward pass: (..., in) -> (..., out); no activation after the last layer."""
    act = ACTIVATIONS[activation]
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def monotone_quantiles(raw: jax.Array, median_index: int) -> jax.Array:
    """Map raw outputs (..., Q) to sorted quantiles (..., Q).

    raw[..., median_index] is the median; the other entries become softplus gaps accumulated
    outward from it, so q_0 < q_1 < ... < q_{Q-1} for every input.
    """
    median = raw[..., median_index : median_index + 1]
    gaps = jax.nn.softplus(raw)
    above = median + jnp.cumsum(gaps[..., median_index + 1 :], axis=-1)
    below = median - jnp.cumsum(gaps[..., :median_index][..., ::-1], axis=-1)[..., ::-1]
    return jnp.concatenate([below, median, above], axis=-1)
