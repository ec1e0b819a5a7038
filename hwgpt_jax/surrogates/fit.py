"""Fitting a surrogate: splits, target standardization, optax training with early stopping,
and conformal calibration (Romano et al. 2019; the rule is in hwgpt_jax/surrogates/conformal.py).

The archs of a `MetricData` are split (by an explicit seed, every repeat of an arch with its
arch) into train and validation parts (90 / 10 %). With `calibration = "cv"` (the default) the
conformal scores are cross-conformal: K-fold refits of the selected model on the training part
score every training arch, so the final model trains on all of it. With `"split"` a
calibration part is held out (40 %, large because split-conformal coverage fluctuates by about
sqrt(c (1 - c) / n_calib)) and the model trains on the remaining 50 %. Measurements behind
these choices: docs/performance.md, "Surrogates".

The model is chosen per key on the training split only (hwgpt_jax/surrogates/select.py): target
transform, ridge penalty, ridge inputs (optionally with pair products of the cost features) and
family (linear, ridge + residual MLP, deep ensemble, and for small keys ridge + a residual GP
that is conditioned, not trained) by k-fold cross-validated Kendall tau. The linear part is
solved in closed form (its quantile outputs start as constant gaps from the training residuals'
quantiles); the residual MLPs are then trained by minibatch Adam(W) on whole archs (all their
repeats, pinball loss for quantile models), `eval_every` steps per jit-compiled `lax.scan`,
keeping the parameters with the best validation loss (the linear model alone counts as step 0)
and stopping after `patience` evaluations without improvement. The fit report records every
candidate's scores, the choice and where the cost features came from.

Defaults (`default_config`, = the `default` surrogates preset): SiLU MLPs at learning rate 1e-2
(they ranked far better than ReLU at 3e-3 on held-out published archs), the `costs` encoding
(the `continuous` one plus cost features), two hidden layers of 64 (the residual of a linear
model needs less than the former 3 x 128 plain MLP, and an ensemble of them fits in the time
budget of `hwgpt fit`); `encoding = "onehot"` (HW-GPT-Bench's) and `"continuous"` remain
available.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hwgpt_jax.base.config import read_toml
from hwgpt_jax.space.arch import SearchSpace, get_space
from hwgpt_jax.space.encoding import (
    ENCODING_VERSION,
    ENCODINGS,
    cost_source,
    cost_summary_columns,
    encode,
)
from hwgpt_jax.surrogates.conformal import CENTRAL_LEVELS, calibrate, cross_calibrate
from hwgpt_jax.surrogates.data import MetricData
from hwgpt_jax.surrogates.gp_residual import fit_residual_gp
from hwgpt_jax.surrogates.linear import n_products, ridge_design, ridge_fit
from hwgpt_jax.surrogates.losses import pinball_loss, squared_error
from hwgpt_jax.surrogates.mlp import ACTIVATIONS, init_mlp, monotone_quantiles
from hwgpt_jax.surrogates.model import Surrogate, SurrogateSpec, base_quantiles, raw_outputs
from hwgpt_jax.surrogates.select import FAMILIES, Selection, SelectionConfig, select_model

DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
QUALITY_METRICS = ("perplexity", "accuracy")


@dataclasses.dataclass(frozen=True)
class SurrogateConfig:
    """How to fit one surrogate (presets: surrogates/*.toml)."""

    kind: str = "quantile"  # "quantile" (pinball loss) or "mlp" (squared error, point)
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "silu"
    levels: tuple[float, ...] = DEFAULT_LEVELS
    central_levels: tuple[float, ...] = CENTRAL_LEVELS
    transform: str = "auto"  # "auto" (log or identity by cross-validation), "log", "identity"
    encoding: str = "costs"  # a key of hwgpt_jax.space.encoding.ENCODINGS
    family: str = "auto"  # "auto" (cross-validated choice) or one of select.FAMILIES
    ensemble_size: int = 4  # MLPs of the "ensemble" candidate
    folds: int = 3  # cross-validation folds of the training split
    cv_steps: int = 300  # training steps of each network in cross-validation
    penalties: tuple[float, ...] = (1e-4, 1e-2, 1e-1, 1.0)  # ridge penalties tried
    learning_rate: float = 1e-2
    weight_decay: float = 1e-3
    batch_size: int = 256  # archs per step (with all their repeats)
    max_steps: int = 1000
    eval_every: int = 100
    patience: int = 6
    val_fraction: float = 0.1
    calib_fraction: float = 0.4  # of "split" calibration (module docstring)
    calibration: str = "cv"  # "cv" (cross-conformal, K folds) or "split" (module docstring)
    calib_folds: int = 10  # folds of "cv" calibration
    seed: int = 0
    gp_max_archs: int = 1000  # the "gp" candidate is tried up to this many training archs

    def __post_init__(self) -> None:
        checks = {"kind": (self.kind, ("quantile", "mlp")),
                  "activation": (self.activation, tuple(ACTIVATIONS)),
                  "transform": (self.transform, ("auto", "log", "identity")),
                  "family": (self.family, ("auto", *FAMILIES)),
                  "encoding": (self.encoding, tuple(ENCODINGS)),
                  "calibration": (self.calibration, ("split", "cv"))}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not valid; expected one of {list(allowed)}")
        levels = tuple(float(v) for v in (self.levels if self.kind == "quantile" else (0.5,)))
        if 0.5 not in levels or list(levels) != sorted(set(levels)) or not (
                levels[0] > 0 and levels[-1] < 1):
            raise ValueError(f"levels={list(levels)} must be sorted, distinct, in (0, 1) and "
                             f"contain 0.5")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "penalties", tuple(float(p) for p in self.penalties))
        if self.calib_folds < 2:
            raise ValueError(f"calib_folds={self.calib_folds}: expected at least 2")
        if (self.folds < 2 or self.ensemble_size < 2 or self.cv_steps < 1 or not self.penalties
                or min(self.penalties) <= 0):
            raise ValueError(f"folds={self.folds}, ensemble_size={self.ensemble_size}, "
                             f"cv_steps={self.cv_steps}, penalties={list(self.penalties)}: "
                             f"expected folds >= 2, ensemble_size >= 2, cv_steps >= 1 and at "
                             f"least one penalty, all > 0")
        object.__setattr__(self, "central_levels", tuple(float(c) for c in self.central_levels))
        fractions_ok = self.val_fraction > 0 and self.calib_fraction > 0 and (
            self.val_fraction + self.calib_fraction < 0.9)
        if not fractions_ok:
            raise ValueError(f"val_fraction={self.val_fraction}, calib_fraction="
                             f"{self.calib_fraction}: both must be > 0 with sum < 0.9")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SurrogateConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown surrogate config key(s) {unknown}; expected some of "
                             f"{sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def default_config(metric: str) -> SurrogateConfig:
    """The default for a metric: a point MLP for quality (perplexity, accuracy), which needs
    more steps to rank well, and a quantile MLP for hardware metrics."""
    if metric in QUALITY_METRICS:
        return SurrogateConfig(kind="mlp", max_steps=2000, patience=10)
    return SurrogateConfig(kind="quantile")


def load_presets(path: str | Path) -> dict[str, SurrogateConfig]:
    """Read a TOML preset file: one table per metric name (or 'quality' / 'hardware')."""
    tables = read_toml(path, "surrogate preset")
    return {name: SurrogateConfig.from_mapping(values) for name, values in tables.items()}


def split_archs(n: int, config: SurrogateConfig) -> dict[str, np.ndarray]:
    """A seeded permutation cut into 'train', 'val' and 'calib' index arrays ('calib' is empty
    for cross-conformal calibration, whose folds are cut from 'train')."""
    order = np.random.default_rng(config.seed).permutation(n)
    n_val = max(int(round(n * config.val_fraction)), 1)
    n_calib = max(int(round(n * config.calib_fraction)), 1) if config.calibration == "split" else 0
    if n - n_val - n_calib < 2:
        raise ValueError(f"{n} archs are too few to split into train/val/calib")
    return {"val": order[:n_val], "calib": order[n_val : n_val + n_calib],
            "train": order[n_val + n_calib :]}


def fit_surrogate(data: MetricData, config: SurrogateConfig = SurrogateConfig()) -> Surrogate:
    """Select (by cross-validation on the training split), fit, early-stop and conformalize one
    surrogate on `data` (archs without data dropped)."""
    data = data.dropna()
    space = get_space(data.scale)
    features = np.asarray(encode(data.archs, space, config.encoding))
    parts = split_archs(len(data), config)
    train = parts["train"]
    scaled = {t: _standardize(data.observations, t, train) for t in _transforms(data, config)}
    families = FAMILIES if config.family == "auto" else (config.family,)
    quadratic, column_sets = _column_sets(space, config.encoding)
    selection = select_model(features[train], {t: _arch_median(z)[train] for t, (z, _, _) in
                                               scaled.items()}, _selection_config(config),
                             families, column_sets, quadratic, quadratic)
    if selection.family == "gp":
        selection = dataclasses.replace(
            selection, gp_columns=quadratic or tuple(range(features.shape[1])))
    z, mean, std = scaled[selection.transform]
    fit = functools.partial(_fit_model, selection, config, features, z)
    head, state, report = fit(train, parts["val"])
    if selection.family == "gp":  # the GP is conditioned on the training archs, not trained
        report["note"] = "best_val_loss is the linear part's; the GP has no training steps"
    if config.calibration == "split":
        calib = parts["calib"]
        base = np.asarray(_base_quantiles(head, state, jnp.asarray(features[calib])))
        corrections = calibrate(base, config.levels, z[calib], config.central_levels)
        calib_report = {"calibration": "split", "n_calib": len(calib)}
    else:
        def fold_base(rows: np.ndarray, held: np.ndarray) -> np.ndarray:
            fold_head, fold_state, _ = fit(train[rows], parts["val"], report["best_step"])
            return np.asarray(_base_quantiles(fold_head, fold_state,
                                              jnp.asarray(features[train[held]])))

        folds = min(config.calib_folds, len(train) // 2)  # at least 2 archs per fold
        if folds < 2:
            raise ValueError(f"{len(data)} archs are too few to calibrate (cross-conformal "
                             f"calibration needs 4 training archs, got {len(train)})")
        corrections = cross_calibrate(fold_base, z[train], folds, config.levels,
                                      config.central_levels, config.seed)
        calib = train
        calib_report = {"calibration": "cv", "calib_folds": folds,
                        "n_calib": len(train) - len(train) % folds}
        if folds < config.calib_folds:
            calib_report["calib_note"] = (f"{len(train)} training archs: {folds} calibration "
                                          f"folds instead of {config.calib_folds}")
    calib_report["n_calib_observations"] = int(np.sum(~np.isnan(z[calib])))
    members = {"linear": 0, "mlp": 1, "ensemble": config.ensemble_size, "gp": 0}[
        selection.family]
    spec = SurrogateSpec(
        scale=data.scale, metric=data.metric, device=data.device, unit=data.unit,
        kind=config.kind, levels=config.levels, central_levels=config.central_levels,
        transform=selection.transform, encoding=config.encoding,
        encoding_version=ENCODING_VERSION, hidden=config.hidden, activation=config.activation,
        data_hash=data.data_hash(), n_archs=len(data),
        n_observations=int(np.sum(~np.isnan(data.observations))), seed=config.seed,
        fit_report={**report, **calib_report, "selection": selection.report,
                    "cost_features": cost_source(space), "config": _config_json(config)},
        family=head.family, members=members, quadratic=selection.quadratic,
        gp_columns=head.gp_columns, gp_points=len(train) if "gp" in state else 0)
    state.update(target_mean=jnp.float32(mean), target_std=jnp.float32(std),
                 corrections=jnp.asarray(corrections))
    return Surrogate(spec, state)


def _fit_model(selection: Selection, config: SurrogateConfig, features: np.ndarray,
               z: np.ndarray, train: np.ndarray, val: np.ndarray, steps: int | None = None
               ) -> tuple[_HeadSpec, dict[str, Any], dict[str, Any]]:
    """The selected model fitted on the `train` archs (the networks early-stopped on `val`,
    or run for exactly `steps` when given): its head spec, state (without the target scale
    and corrections) and fit report."""
    members = {"linear": 0, "mlp": 1, "ensemble": config.ensemble_size, "gp": 0}[
        selection.family]
    design = np.asarray(ridge_design(jnp.asarray(features[train]), selection.quadratic))
    linear = _linear_head(design * selection.columns, z[train], selection.penalty, config)
    family = {"linear": "linear", "gp": "linear+gp"}.get(selection.family, "linear+mlp")
    head = _HeadSpec(family, config.activation, config.levels, selection.quadratic,
                     selection.gp_columns)
    params, report = _train(dataclasses.replace(head, family="linear" if members == 0 else
                                                 "linear+mlp", gp_columns=()),
                            linear, _init_members(config, features.shape[1], members),
                            features, z, {"train": train, "val": val}, config, steps)
    state: dict[str, Any] = {"linear": linear}
    if members:
        state["params"] = params
    if selection.family == "gp":
        mid = config.levels.index(0.5)
        residual = _arch_median(z[train]) - (design @ np.asarray(linear["w"])[:, mid]
                                             + float(linear["b"][mid]))
        state["gp"] = fit_residual_gp(
            jnp.asarray(features[train][:, list(selection.gp_columns)]), jnp.asarray(residual))
    return head, state, report


def _transforms(data: MetricData, config: SurrogateConfig) -> list[str]:
    """Candidate target transforms, preferred first ('auto': both for positive metrics)."""
    positive = bool(np.nanmin(data.observations) > 0)
    if config.transform == "log" and not positive:
        raise ValueError(f"transform='log' needs strictly positive {data.key} observations; "
                         f"the smallest is {np.nanmin(data.observations)}")
    if config.transform == "auto":
        return ["log", "identity"] if positive else ["identity"]
    return [config.transform]


def _standardize(observations: np.ndarray, transform: str, train: np.ndarray
                 ) -> tuple[np.ndarray, float, float]:
    target = np.log(observations) if transform == "log" else observations
    mean = float(np.nanmean(target[train]))
    std = float(np.nanstd(target[train])) or 1.0
    return ((target - mean) / std).astype(np.float32), mean, std


def _column_sets(space: SearchSpace, encoding: str
                 ) -> tuple[tuple[int, ...], dict[str, np.ndarray]]:
    """The columns whose pair products the ridge model may see, and the ridge input sets to
    cross-validate (masks over features + products): all features, and for `costs` also the
    nine features of the linear baseline (`cost_summary`), each with and without the pair
    products of those nine (the products bend the cost model per width and depth; on the
    published s archs they raised the cross-validated hardware tau by 0.007 on average)."""
    size = ENCODINGS[encoding][1](space)
    if encoding != "costs":
        return (), {"all": np.ones(size, bool)}
    quadratic = tuple(cost_summary_columns(space))
    products = np.ones(n_products(quadratic), bool)
    summary = np.isin(np.arange(size), quadratic)
    plain = {"all": np.ones(size, bool), "cost_summary": summary}
    sets = {name: np.concatenate([mask, ~products]) for name, mask in plain.items()}
    sets.update({f"{name}+products": np.concatenate([mask, products])
                 for name, mask in plain.items()})
    return quadratic, sets


# `base_quantiles` of a head spec (hashable), compiled once per spec and shape.
_base_quantiles = jax.jit(base_quantiles, static_argnums=0)


def _arch_median(z: np.ndarray) -> np.ndarray:
    return np.nanmedian(z, axis=1).astype(np.float32)


def _selection_config(config: SurrogateConfig) -> SelectionConfig:
    return SelectionConfig(
        folds=config.folds, cv_steps=config.cv_steps, ensemble_size=config.ensemble_size,
        penalties=config.penalties, hidden=config.hidden, activation=config.activation,
        learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        batch_size=config.batch_size, seed=config.seed, gp_max_archs=config.gp_max_archs)


def _linear_head(x: np.ndarray, z: np.ndarray, penalty: float, config: SurrogateConfig
                 ) -> dict[str, jax.Array]:
    """The linear part of the raw outputs: ridge for the median; for quantile models constant
    gaps to the other levels from the training residuals' quantiles (softplus-inverted)."""
    w, b = ridge_fit(jnp.asarray(x), jnp.asarray(_arch_median(z)), penalty)
    levels = config.levels
    mid = levels.index(0.5)
    weights = np.zeros((x.shape[1], len(levels)), np.float32)
    weights[:, mid] = np.asarray(w)
    bias = np.zeros((len(levels),), np.float32)
    bias[mid] = float(b)
    if len(levels) > 1:
        residual = z - np.asarray(x @ np.asarray(w) + float(b))[:, None]
        q = np.nanquantile(residual, levels)
        bias[mid] += q[mid]
        for j in range(len(levels)):
            if j != mid:
                gap = max(float(q[j + 1] - q[j] if j < mid else q[j] - q[j - 1]), 1e-3)
                bias[j] = gap + np.log(-np.expm1(-gap))  # softplus^-1
    return {"w": jnp.asarray(weights), "b": jnp.asarray(bias)}


def _init_members(config: SurrogateConfig, n_features: int, members: int) -> list | None:
    """`members` residual MLPs stacked on a leading axis (None for the linear model)."""
    if members == 0:
        return None
    sizes = (n_features, *config.hidden, len(config.levels))
    keys = jax.random.split(jax.random.key(config.seed), members)
    return jax.vmap(lambda k: init_mlp(k, sizes, last_scale=0.01))(keys)


def _config_json(config: SurrogateConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in
            dataclasses.asdict(config).items()}


def _train(head: _HeadSpec, linear: dict, params: list | None, features: np.ndarray,
           z: np.ndarray, parts: dict[str, np.ndarray], config: SurrogateConfig,
           steps_fixed: int | None = None) -> tuple[list | None, dict[str, Any]]:
    """Adam(W) with cosine decay of the residual MLPs (the linear part stays fixed); returns
    the best-validation params (the start, i.e. the linear model alone, included) and a fit
    report; with `steps_fixed`, the params after that many steps (the same schedule).
    Without members only the validation loss is computed."""
    n_train = len(parts["train"])
    batch = min(config.batch_size, n_train)
    optimizer, run_chunk, val_loss = _chunk_runner(dataclasses.replace(config, seed=0), batch,
                                                   head)
    data = (jnp.asarray(features[parts["train"]]), jnp.asarray(z[parts["train"]]),
            jnp.asarray(features[parts["val"]]), jnp.asarray(z[parts["val"]]))
    best = (float(val_loss(params, linear, *data[2:])), params, 0)
    history, stale, steps = [], 0, 0
    if params is not None:
        opt_state = optimizer.init(params)
        key = jax.random.key(config.seed + 1)
        limit = config.max_steps if steps_fixed is None else steps_fixed
        while steps < limit and (stale < config.patience or steps_fixed is not None):
            params, opt_state, key, train_loss, loss = run_chunk(params, opt_state, key,
                                                                 linear, *data)
            steps += config.eval_every
            history.append((steps, float(train_loss), float(loss)))
            if float(loss) < best[0] or steps_fixed is not None:
                best, stale = (float(loss), params, steps), 0
            else:
                stale += 1
    report = {"best_val_loss": best[0], "best_step": best[2], "steps": steps,
              "loss": "mse" if config.kind == "mlp" else "pinball",
              "history": [list(h) for h in history],
              "n_train": n_train, "n_val": len(parts["val"])}
    return best[1], report


@functools.lru_cache(maxsize=16)
def _chunk_runner(config: SurrogateConfig, batch: int, head: _HeadSpec
                  ) -> tuple[Any, Callable, Callable]:
    """The optimizer, a jitted `eval_every`-step training chunk and the jitted validation loss,
    cached per config so that fits of equal shapes (one metric on many devices) compile once.
    Each member of an ensemble is trained on its own loss (a deep ensemble); the validation
    loss is that of the members' mean, the model that is used."""
    levels = jnp.asarray(config.levels, jnp.float32)
    mid = config.levels.index(0.5)
    single = dataclasses.replace(head, family="linear+mlp")

    def loss_of(q, y):
        return squared_error(q, y) if config.kind == "mlp" else pinball_loss(q, y, levels)

    def member_loss(params, linear, x, y):
        def one(p):
            raw = raw_outputs(single, {"linear": linear, "params": jax.tree.map(
                lambda a: a[None], p)}, x)
            return loss_of(monotone_quantiles(raw, mid), y)

        return jax.vmap(one)(params).mean()

    @jax.jit
    def val_loss(params, linear, x, y):
        return loss_of(base_quantiles(head, {"linear": linear, "params": params}, x), y)

    schedule = optax.cosine_decay_schedule(config.learning_rate, config.max_steps, alpha=0.05)
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)

    @jax.jit
    def run_chunk(params, opt_state, key, linear, x_train, z_train, x_val, z_val):
        def step(carry, _):
            params, opt_state, key = carry
            key, sub = jax.random.split(key)
            idx = jax.random.randint(sub, (batch,), 0, x_train.shape[0])
            loss, grads = jax.value_and_grad(member_loss)(params, linear, x_train[idx],
                                                          z_train[idx])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, key), loss

        (params, opt_state, key), losses = jax.lax.scan(
            step, (params, opt_state, key), None, length=config.eval_every)
        return params, opt_state, key, losses.mean(), val_loss(params, linear, x_val, z_val)

    return optimizer, run_chunk, val_loss


@dataclasses.dataclass(frozen=True)
class _HeadSpec:
    """The spec fields `base_quantiles` reads, available before the full spec exists."""

    family: str
    activation: str
    levels: tuple[float, ...]
    quadratic: tuple[int, ...] = ()
    gp_columns: tuple[int, ...] = ()
