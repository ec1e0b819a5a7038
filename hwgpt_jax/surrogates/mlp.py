"""The surrogate networks as Flax NNX modules: a point MLP and a non-crossing quantile MLP.

`MLP` is a stack of `Dense` layers (He-normal weights, zero biases) with an activation between
them. `QuantileMLP` puts the non-crossing head on one: it predicts the median and positive
(softplus) gaps to the neighbouring levels, so the quantiles are sorted by construction:
q_mid = f_0(x), q_{mid+k} = q_mid + sum_{j<=k} softplus, q_{mid-k} = q_mid - sum_{j<=k}
softplus (the "monotone composite" construction of non-crossing quantile networks, e.g.
Cannon 2018). With a single level the head is a plain regressor.

The parameters of each `Dense` are `nnx.Param`s named `w` and `b`, so a module converts
losslessly to and from the plain pytree that the fitting code vmaps over (an ensemble stacks
its members on a leading axis) and that saved surrogate folders hold: a list of {"w", "b"}
dicts (`MLP.to_params`, `MLP.from_params`). `init_mlp` / `apply_mlp` are those conversions
around the module, for code that works on the pytree (vmapped cross-validation, the training
scans, the jit-compiled Benchmark query, which traces the modules and so compiles to the same
program as before).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu,
               "tanh": jnp.tanh}

Params = list[dict[str, jax.Array]]


class Dense(nnx.Module):
    """x @ w + b with the given arrays as parameters."""

    def __init__(self, w: jax.Array, b: jax.Array):
        self.w = nnx.Param(w)
        self.b = nnx.Param(b)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w[...] + self.b[...]


class MLP(nnx.Module):
    """Point MLP: (..., sizes[0]) -> (..., sizes[-1]); no activation after the last layer.

    Args:
        sizes: layer widths, input first, output last.
        activation: a key of `ACTIVATIONS`.
        rngs: `nnx.Rngs` whose `params` stream draws the initial weights.
        last_scale: shrinks the output layer (a residual MLP then starts near zero).
        params: existing weights instead (`from_params`); `sizes` and `rngs` are then unused.
    """

    def __init__(self, sizes: Sequence[int] = (), activation: str = "relu", *,
                 rngs: nnx.Rngs | None = None, last_scale: float = 1.0,
                 params: Params | None = None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not valid; expected one of "
                             f"{list(ACTIVATIONS)}")
        if params is None:
            if rngs is None or len(sizes) < 2:
                raise ValueError(f"an MLP needs rngs and at least two sizes (got {list(sizes)})"
                                 f" or existing params")
            params = init_mlp(rngs.params(), sizes, last_scale)
        self.layers = nnx.List([Dense(layer["w"], layer["b"]) for layer in params])
        self.activation = activation

    @classmethod
    def from_params(cls, params: Params, activation: str = "relu") -> MLP:
        """The module holding these arrays (no copy; works on tracers inside jit/vmap/grad)."""
        return cls(activation=activation, params=params)

    def to_params(self) -> Params:
        """The plain pytree of the parameters: [{"w": (in, out), "b": (out,)}, ...]."""
        return [{"w": layer.w[...], "b": layer.b[...]} for layer in self.layers]

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


class QuantileMLP(nnx.Module):
    """An `MLP` with the non-crossing head: (..., in) -> sorted quantiles (..., Q) at `levels`
    (which must contain 0.5). Arguments as for `MLP`; `sizes[-1]` must equal len(levels)."""

    def __init__(self, sizes: Sequence[int] = (), levels: Sequence[float] = (0.5,),
                 activation: str = "relu", *, rngs: nnx.Rngs | None = None,
                 last_scale: float = 1.0, params: Params | None = None):
        self.net = MLP(sizes, activation, rngs=rngs, last_scale=last_scale, params=params)
        outputs = self.net.layers[-1].b[...].shape[-1]
        if outputs != len(levels) or 0.5 not in levels:
            raise ValueError(f"a quantile MLP needs one output per level and the level 0.5; "
                             f"got {outputs} outputs for levels {list(levels)}")
        self.median_index = list(levels).index(0.5)

    @classmethod
    def from_params(cls, params: Params, levels: Sequence[float],
                    activation: str = "relu") -> QuantileMLP:
        return cls(levels=levels, activation=activation, params=params)

    def __call__(self, x: jax.Array) -> jax.Array:
        return monotone_quantiles(self.net(x), self.median_index)


@functools.partial(jax.jit, static_argnums=(1, 2))
def init_mlp(key: jax.Array, sizes: Sequence[int], last_scale: float = 1.0) -> Params:
    """He-normal weights and zero biases for layer widths `sizes` (input first, output last),
    as the pytree of `MLP.to_params`; `last_scale` shrinks the output layer."""
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
    """`MLP.from_params(params, activation)(x)`: (..., in) -> (..., out)."""
    return MLP.from_params(params, activation)(x)


@functools.partial(jax.jit, static_argnums=1)
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
