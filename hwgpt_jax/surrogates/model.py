"""A fitted surrogate: static metadata (`SurrogateSpec`) plus an array pytree (`state`).

Predictions are pure functions of (spec, state, features), so any number of surrogates can be
traced into one jit-compiled query. Targets are modelled on a standardized scale,
z = (t(y) - mean) / std with t = log for strictly positive metrics (multiplicative noise and
heavy right tails become additive and symmetric) and t = identity otherwise; since t is
monotone, quantiles and conformal intervals map back exactly.

Model families (`SurrogateSpec.family`): "linear" (a linear map of the features to the raw
quantile outputs: the ridge median plus constant gaps), "linear+mlp" (that linear map plus the
mean of `members` MLPs, each trained on the residual: one member is the "mlp" candidate of the
model selection, several a deep ensemble) and "mlp" (an MLP alone; files written before
model selection existed). The linear part may also see pair products of a few feature columns
(`SurrogateSpec.quadratic`, chosen by cross-validation like the rest; empty in older files).
"linear+gp" adds a Gaussian process on the residual to the median (`gp_residual.py`; for
keys with few archs).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hwgpt_jax.surrogates.conformal import (
    calibrated_quantiles,
    sample_from_quantiles,
    sample_levels,
)
from hwgpt_jax.surrogates.data import metric_key
from hwgpt_jax.surrogates.gp_residual import ResidualGP, gp_shapes
from hwgpt_jax.surrogates.linear import n_products, ridge_design
from hwgpt_jax.surrogates.mlp import MLP, Dense, apply_mlp, monotone_quantiles

MODES = ("median", "quantiles", "interval", "sample")


@dataclasses.dataclass(frozen=True)
class SurrogateSpec:
    """Everything about a surrogate that is not an array (JSON-serialisable)."""

    scale: str
    metric: str
    device: str
    unit: str
    kind: str  # "mlp" (point regressor, squared error) or "quantile" (pinball loss)
    levels: tuple[float, ...]
    central_levels: tuple[float, ...]
    transform: str  # "log" or "identity"
    encoding: str
    encoding_version: int
    hidden: tuple[int, ...]
    activation: str
    data_hash: str
    n_archs: int
    n_observations: int
    seed: int
    fit_report: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    family: str = "mlp"  # "mlp", "linear", "linear+mlp" or "linear+gp" (module docstring)
    members: int = 1  # MLPs of "linear+mlp" (stacked on a leading axis); 0 for "linear"
    quadratic: tuple[int, ...] = ()  # feature columns whose pair products the linear part sees
    gp_columns: tuple[int, ...] = ()  # "linear+gp": the GP's input feature columns
    gp_points: int = 0  # "linear+gp": the GP's training archs

    @property
    def key(self) -> str:
        return metric_key(self.metric, self.device)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SurrogateSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        missing = sorted(fields - set(data) - {"fit_report", "family", "members", "quadratic",
                                                "gp_columns", "gp_points"})
        if unknown or missing:
            raise ValueError(f"surrogate spec has unknown fields {unknown} / lacks {missing}")
        data = dict(data)
        for name in ("levels", "central_levels"):
            data[name] = tuple(float(v) for v in data[name])
        data["hidden"] = tuple(int(v) for v in data["hidden"])
        data["quadratic"] = tuple(int(v) for v in data.get("quadratic", ()))
        data["gp_columns"] = tuple(int(v) for v in data.get("gp_columns", ()))
        return cls(**data)

    def state_shapes(self, n_features: int) -> dict[str, Any]:
        """The expected shapes of `state` (used to check a loaded checkpoint)."""
        sizes = (n_features, *self.hidden, len(self.levels))
        stack = (self.members,) if self.family == "linear+mlp" else ()
        shapes: dict[str, Any] = {
            "target_mean": (), "target_std": (), "corrections": (len(self.central_levels),)}
        if self.family in ("mlp", "linear+mlp"):
            shapes["params"] = [{"w": (*stack, a, b), "b": (*stack, b)}
                                for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        if self.family == "linear+gp":
            shapes["gp"] = gp_shapes(self.gp_points, len(self.gp_columns))
        if self.family in ("linear", "linear+mlp", "linear+gp"):
            rows = n_features + n_products(self.quadratic)
            shapes["linear"] = {"w": (rows, len(self.levels)), "b": (len(self.levels),)}
        return shapes


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A fitted surrogate: `spec` (static) and `state` {params, target_mean, target_std,
    corrections} (arrays)."""

    spec: SurrogateSpec
    state: dict[str, Any]

    def module(self) -> SurrogateNet:
        """The uncalibrated network as an NNX module (features -> base quantiles)."""
        return SurrogateNet(self.spec, self.state)


class SurrogateNet(nnx.Module):
    """A surrogate's uncalibrated network as one NNX module: features (N, F) -> base quantiles
    (N, Q) on the standardized scale.

    It holds the linear part (`Dense` over the features and, if `quadratic`, their pair
    products), the residual MLPs (one `MLP` whose parameters carry the members on a leading
    axis; their outputs are averaged) and the non-crossing head of `QuantileMLP`. Built from a
    (spec, state) pair without copying, also on tracers, so a jit-compiled query traces it.
    `spec` needs `family`, `activation`, `levels` and `quadratic` only, so training can build
    it before a full spec exists.
    """

    def __init__(self, spec: Any, state: dict[str, Any]):
        self.family = spec.family
        self.quadratic = tuple(getattr(spec, "quadratic", ()))
        self.median_index = spec.levels.index(0.5)
        linear = spec.family in ("linear", "linear+mlp", "linear+gp")
        self.linear = nnx.data(Dense(state["linear"]["w"], state["linear"]["b"]) if linear
                               else None)
        members = spec.family in ("mlp", "linear+mlp")
        self.members = nnx.data(MLP.from_params(state["params"], spec.activation) if members
                                else None)
        self.gp_columns = tuple(getattr(spec, "gp_columns", ()))
        self.gp = nnx.data(ResidualGP(state["gp"]) if spec.family == "linear+gp" else None)

    def raw(self, features: jax.Array) -> jax.Array:
        """The raw outputs (N, Q) before the non-crossing map (module docstring)."""
        if self.family == "mlp":
            return self.members(features)
        raw = self.linear(ridge_design(features, self.quadratic))
        if self.members is not None:
            activation = self.members.activation
            outputs = jax.vmap(lambda p: apply_mlp(p, features, activation))(
                self.members.to_params())
            raw = raw + outputs.mean(0)
        if self.gp is not None:
            shift = self.gp(features[..., jnp.asarray(self.gp_columns, jnp.int32)])
            raw = raw.at[..., self.median_index].add(shift)
        return raw

    def __call__(self, features: jax.Array) -> jax.Array:
        return monotone_quantiles(self.raw(features), self.median_index)


def base_quantiles(spec: Any, state: dict[str, Any], features: jax.Array) -> jax.Array:
    """Uncalibrated quantiles on the standardized scale, (N, Q): `SurrogateNet`'s output."""
    return SurrogateNet(spec, state)(features)


def raw_outputs(spec: Any, state: dict[str, Any], features: jax.Array) -> jax.Array:
    """The network's raw outputs (N, Q) before the non-crossing map (`SurrogateNet.raw`)."""
    return SurrogateNet(spec, state).raw(features)


def to_original(spec: SurrogateSpec, state: dict[str, Any], z: jax.Array) -> jax.Array:
    """Standardized scale -> the metric's unit."""
    y = z * state["target_std"] + state["target_mean"]
    return jnp.exp(y) if spec.transform == "log" else y


def predict(spec: SurrogateSpec, state: dict[str, Any], features: jax.Array, mode: str,
            key: jax.Array | None = None, level: float = 0.9) -> jax.Array:
    """One surrogate's answer in its unit (jit-able; mode and level static).

    Returns:
        median: (N,); quantiles: (N, Q) calibrated at `spec.levels`; interval: (N, 2) the
        conformal interval of central level `level`; sample: (N,) one draw per arch from the
        calibrated predictive distribution (needs `key`).
    """
    return predict_from_base(spec, state, base_quantiles(spec, state, features), mode, key, level)


def predict_from_base(spec: SurrogateSpec, state: dict[str, Any], base: jax.Array, mode: str,
                      key: jax.Array | None = None, level: float = 0.9) -> jax.Array:
    """`predict` given `base = base_quantiles(spec, state, features)`, (N, Q).

    The split lets a caller run the MLP (nearly all the work) in cache-sized chunks while the
    cheap calibration and sampling see the whole batch, so chunking never changes a draw.
    """
    args = (base, spec.levels, state["corrections"], spec.central_levels)
    if mode == "median":
        z = base @ jnp.asarray(_median_weights(spec.levels))
    elif mode == "quantiles":
        z = calibrated_quantiles(*args, taus=spec.levels)
    elif mode == "interval":
        z = calibrated_quantiles(*args, taus=((1 - level) / 2, 0.5, (1 + level) / 2))[..., ::2]
    elif mode == "sample":
        if key is None:
            raise ValueError("mode='sample' needs a PRNG key (key=jax.random.key(seed))")
        taus = sample_levels(spec.central_levels)
        z = sample_from_quantiles(key, calibrated_quantiles(*args, taus=taus), taus)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    return to_original(spec, state, z)


def _median_weights(levels: tuple[float, ...]) -> np.ndarray:
    weights = np.zeros((len(levels),), np.float32)
    weights[levels.index(0.5)] = 1.0
    return weights
