"""Per-key model selection by k-fold cross-validation on the training split.

Candidates (see `model.py` for the families): "linear" (ridge on the features, closed form),
"mlp" (the ridge model plus one MLP trained on its residual), "ensemble" (the ridge model
plus the mean of several residual MLPs from different seeds: a deep ensemble, Lakshminarayanan
et al. 2017) and, for keys with at most `gp_max_archs` training archs, "gp" (the ridge model
plus a Gaussian process on its residual, `gp_residual.py`). The target transform (log or
identity, for strictly positive metrics) and the ridge penalty are chosen first, by the ridge
model's cross-validated score, together with the ridge model's features (all of them, or a
named subset such as the linear baseline's nine cost features: on noisy keys fewer features
rank better), with or without the pair products of the cost features
(`linear.pair_products`: a quadratic cost model); the networks and the GP, which see every
feature (the GP: the cost features),
are then cross-validated on the residual of that ridge model. The score is Kendall's tau of
the per-arch median on each fold's held-out archs, averaged over folds; candidates within
`TAU_TIE` of the best tau are ranked by their RMSE (standardized target units), and the
simpler one wins an exact tie.

Cross-validation trains short point (squared-error) runs only: every fold and seed of the
networks is one vmapped, jit-compiled `lax.scan`, so selection costs a few seconds per key.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hwgpt_jax.surrogates.gp_residual import fit_residual_gp, gp_mean
from hwgpt_jax.surrogates.linear import kendall_tau, kfold_indices, ridge_design, ridge_fit
from hwgpt_jax.surrogates.mlp import apply_mlp, init_mlp

TAU_TIE = 1e-3
MIN_ARCHS_PER_FOLD = 10
FAMILIES = ("linear", "mlp", "ensemble", "gp")


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """The knobs of `select_model` (fields of `SurrogateConfig` of the same name)."""

    folds: int
    cv_steps: int
    ensemble_size: int
    penalties: tuple[float, ...]
    hidden: tuple[int, ...]
    activation: str
    learning_rate: float
    weight_decay: float
    batch_size: int
    seed: int
    gp_max_archs: int = 1000  # the "gp" candidate only up to this many training archs


@dataclasses.dataclass(frozen=True)
class Selection:
    """The chosen candidate and the report of every candidate's scores."""

    transform: str
    family: str  # one of FAMILIES
    penalty: float
    columns: np.ndarray  # float mask of the ridge model's inputs (F, or F + products)
    report: dict[str, Any]
    quadratic: tuple[int, ...] = ()  # feature columns whose products the ridge model uses
    gp_columns: tuple[int, ...] = ()  # the "gp" family's input columns (set by the caller)


def select_model(features: np.ndarray, targets: dict[str, np.ndarray],
                 config: SelectionConfig, families: tuple[str, ...] = FAMILIES,
                 column_sets: dict[str, np.ndarray] | None = None,
                 quadratic: tuple[int, ...] = (), gp_columns: tuple[int, ...] = ()
                 ) -> Selection:
    """Choose transform, ridge penalty and family for one key.

    Args:
        features: (n, F) encodings of the training archs.
        targets: transform name -> (n,) standardized per-arch median target, in order of
            preference (the first wins ties).
        config: folds, steps, penalties, network shape and optimizer.
        families: the candidates; with one, only the transform and penalty are chosen.
        column_sets: name -> bool mask of ridge features to try (default: all), over the
            columns of `ridge_design(features, quadratic)`: F features, then the products.
        quadratic: the feature columns whose pair products the ridge model may use.
        gp_columns: the GP's input columns (default: all features); the "gp" candidate is
            scored only with at most `config.gp_max_archs` archs.
    """
    design = np.asarray(ridge_design(jnp.asarray(features, jnp.float32), quadratic))
    if column_sets is None:
        column_sets = {"all": np.ones(design.shape[1], bool)}
    masks = {name: np.asarray(mask, np.float32) for name, mask in column_sets.items()}
    n = features.shape[0]
    first = next(iter(targets))
    if n < config.folds * MIN_ARCHS_PER_FOLD:
        penalty = max(config.penalties)
        note = (f"{n} training archs are too few to cross-validate with {config.folds} folds "
                f"(need {config.folds * MIN_ARCHS_PER_FOLD}); using the smallest model "
                f"(linear, transform {first}, penalty {penalty:g})")
        name = next(iter(masks))
        return _trimmed(Selection(first, "linear", penalty, masks[name],
                                  {"note": note, "chosen": "linear", "columns": name}),
                        features.shape[1], quadratic)
    train, val = kfold_indices(n, config.folds, config.seed)
    x, xr = jnp.asarray(features, jnp.float32), jnp.asarray(design)
    linear_scores = {}
    for name, y in targets.items():
        for columns, mask in masks.items():
            taus, errors = _ridge_cv(xr * mask, jnp.asarray(y, jnp.float32), jnp.asarray(train),
                                     jnp.asarray(val), jnp.asarray(config.penalties, jnp.float32))
            for i, penalty in enumerate(config.penalties):
                linear_scores[(name, columns, penalty)] = (float(taus[i]), float(errors[i]))
    transform, columns, penalty = _best(linear_scores)
    y = jnp.asarray(targets[transform], jnp.float32)
    scores = {"linear": linear_scores[(transform, columns, penalty)]}
    networks = [f for f in families if f in ("mlp", "ensemble")]
    if networks and len(families) > 1:
        scores.update(_network_cv(x, xr, masks[columns], y, train, val, penalty, config))
    gp_note = None
    if "gp" in families and len(families) > 1:
        if n <= config.gp_max_archs:
            gp_x = x[:, np.asarray(gp_columns or range(x.shape[1]), np.int32)]
            scores["gp"] = tuple(float(v) for v in _gp_cv(
                gp_x, xr * masks[columns], y, jnp.asarray(train), jnp.asarray(val),
                jnp.float32(penalty)))
        else:
            gp_note = f"gp not tried: {n} training archs > gp_max_archs {config.gp_max_archs}"
    families = tuple(f for f in families if f in scores) or families
    chosen = _best({f: scores[f] for f in families}) if len(families) > 1 else families[0]
    report = {
        "folds": config.folds, "cv_steps": config.cv_steps, "chosen": chosen,
        "transform": transform, "penalty": penalty, "columns": columns,
        "linear_candidates": [{"transform": t, "columns": c, "penalty": p, "kendall_tau": s[0],
                               "rmse": s[1]} for (t, c, p), s in linear_scores.items()],
        "candidates": {f: {"kendall_tau": s[0], "rmse": s[1]} for f, s in scores.items()},
    }
    if gp_note:
        report["gp"] = gp_note
    return _trimmed(Selection(transform, chosen, penalty, masks[columns], report),
                    features.shape[1], quadratic)


def _trimmed(selection: Selection, n_features: int, quadratic: tuple[int, ...]) -> Selection:
    """Drop the product columns (and `quadratic`) when the chosen ridge uses none of them."""
    if selection.columns[n_features:].any():
        return dataclasses.replace(selection, quadratic=tuple(quadratic))
    return dataclasses.replace(selection, columns=selection.columns[:n_features], quadratic=())


def _best(scores: dict[Any, tuple[float, float]]) -> Any:
    """The key with the best tau; within TAU_TIE of it the lowest error; first on exact ties."""
    top = max(tau for tau, _ in scores.values())
    close = [k for k, (tau, _) in scores.items() if tau >= top - TAU_TIE]
    return min(close, key=lambda k: scores[k][1])


@jax.jit
def _ridge_cv(x, y, train, val, penalties):
    """(P,) mean tau and RMSE over folds of ridge at each penalty."""

    def fold(tr, va, penalty):
        w, b = ridge_fit(x[tr], y[tr], penalty)
        pred = x[va] @ w + b
        return kendall_tau(pred, y[va]), jnp.sqrt(jnp.mean((pred - y[va]) ** 2))

    per_penalty = jax.vmap(lambda p: jax.vmap(lambda t, v: fold(t, v, p))(train, val))
    taus, errors = per_penalty(penalties)
    return taus.mean(-1), errors.mean(-1)


@jax.jit
def _gp_cv(x, xr, y, train, val, penalty):
    """Mean tau and RMSE over folds of ridge (on xr) plus a GP on its residual (inputs x)."""

    def fold(tr, va):
        w, b = ridge_fit(xr[tr], y[tr], penalty)
        gp = fit_residual_gp(x[tr], y[tr] - (xr[tr] @ w + b))
        pred = xr[va] @ w + b + gp_mean(gp, x[va])
        return kendall_tau(pred, y[va]), jnp.sqrt(jnp.mean((pred - y[va]) ** 2))

    taus, errors = jax.vmap(fold)(train, val)
    return taus.mean(), errors.mean()


def _network_cv(x: jax.Array, xr: jax.Array, mask: np.ndarray, y: jax.Array, train: np.ndarray,
                val: np.ndarray, penalty: float, config: SelectionConfig
                ) -> dict[str, tuple[float, float]]:
    """Scores of the residual networks: member 0 alone ('mlp') and the members' mean."""
    members = max(config.ensemble_size, 1)
    batch = min(config.batch_size, train.shape[1])
    run = _network_runner(tuple(config.hidden), config.activation, config.cv_steps, batch,
                          members, config.learning_rate, config.weight_decay)
    taus, errors = run(jax.random.key(config.seed + 7), x, xr, jnp.asarray(mask), y,
                       jnp.asarray(train), jnp.asarray(val), jnp.float32(penalty))
    out = {"mlp": (float(taus[0]), float(errors[0]))}
    if members > 1:
        out["ensemble"] = (float(taus[1]), float(errors[1]))
    return out


@functools.lru_cache(maxsize=8)
def _network_runner(hidden: tuple[int, ...], activation: str, steps: int, batch: int,
                    members: int, learning_rate: float, weight_decay: float):
    """A jitted fn(key, x, xr, mask, y, train, val, penalty) -> (taus, errors) of ('mlp',
    'ensemble'), the ridge model on the masked design xr, the networks on the features x;
    each the mean over folds; all folds x members train in one vmapped scan."""
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05)
    optimizer = optax.adamw(schedule, weight_decay=weight_decay)

    def train_member(key, x_train, residual):
        init_key, data_key = jax.random.split(key)
        params = init_mlp(init_key, (x_train.shape[1], *hidden, 1), last_scale=0.01)

        def step(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(k, (batch,), 0, x_train.shape[0])
            grads = jax.grad(lambda p: jnp.mean(
                (apply_mlp(p, x_train[idx], activation)[:, 0] - residual[idx]) ** 2))(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        carry = (params, optimizer.init(params))
        (params, _), _ = jax.lax.scan(step, carry, jax.random.split(data_key, steps))
        return params

    def fold(key, tr, va, x, xr, mask, y, penalty):
        w, b = ridge_fit(xr[tr] * mask, y[tr], penalty)  # masked columns get weight 0
        base_train, base_val = xr[tr] @ w + b, xr[va] @ w + b
        keys = jax.random.split(key, members)
        params = jax.vmap(lambda k: train_member(k, x[tr], y[tr] - base_train))(keys)
        outputs = jax.vmap(lambda p: apply_mlp(p, x[va], activation)[:, 0])(params)
        single, mean = base_val + outputs[0], base_val + outputs.mean(0)
        score = lambda pred: (kendall_tau(pred, y[va]),  # noqa: E731
                              jnp.sqrt(jnp.mean((pred - y[va]) ** 2)))
        return jnp.stack([jnp.stack(score(single)), jnp.stack(score(mean))])  # (2, 2)

    @jax.jit
    def run(key, x, xr, mask, y, train, val, penalty):
        keys = jax.random.split(key, train.shape[0])
        scores = jax.vmap(lambda k, t, v: fold(k, t, v, x, xr, mask, y, penalty))(
            keys, train, val)
        mean = scores.mean(0)  # (candidate, [tau, rmse])
        return mean[:, 0], mean[:, 1]

    return run
