"""Conformalized quantile regression (CQR; Romano, Patterson & Candes 2019, NeurIPS).

A quantile model gives a base interval [q_lo(x), q_hi(x)] for a central level c. On a held-out
calibration split the conformity score of an observation y of arch x is
E = max(q_lo(x) - y, y - q_hi(x)); the calibrated interval is [q_lo - E_c, q_hi + E_c].
A point regressor is the special case q_lo = q_hi: E = |y - q|, i.e. split conformal.

Calibration rule. The exchangeable unit is the architecture: archs are split at random and all
repeated measurements of an arch stay in one split. Coverage is meant (and validated) per
observation, so every repeat of every calibration arch contributes its own score, and E_c is
the smallest score t whose pooled empirical CDF reaches c (n + 1) / n:

    #{(j, r) : E_jr <= t} / #{(j, r)} >= c (n + 1) / n,    E_c = inf if c (n + 1) / n > 1,

with n the number of calibration *archs*, not observations. With one observation per arch this
is the ceil((n + 1) c) / n empirical quantile, which covers a fresh arch with probability >= c
when archs are exchangeable; with R repeats for every arch it is the pooled-CDF rule of Dunn,
Wasserman & Ramdas (2022, "Distribution-free prediction sets for two-layer hierarchical
models", JASA); with ragged repeats every observation weighs the same, as in the per-observation
coverage. The (n + 1) / n inflation counts archs because the repeats of one arch share the
model's error at x: counting observations under-covers when a few archs carry many correlated
repeats (15 archs x 10 near-identical repeats: 87.5 % instead of >= 90 %).

The rule cannot remove sampling noise: given the calibration split, coverage is Beta
distributed with a spread of about sqrt(c (1 - c) / n_eff), n_eff between n (near-identical
repeats, e.g. GPU latency) and n R (independent repeats, e.g. GPU energy). Hence the large
calibration share of `SurrogateConfig` (see hwgpt_jax/surrogates/fit.py).

Cross-conformal calibration (`cross_calibrate`, `SurrogateConfig.calibration = "cv"`): the
archs are cut into K folds; fold k's scores come from the selected model refitted on the other
folds, so every arch is scored by a model that never saw it and the final model trains on all
of them. The rule above is applied to the pooled out-of-fold scores and the corrections shift
the final model. This is the K-fold "CV" interval of Barber, Candes, Ramdas & Tibshirani
(2021, "Predictive inference with the jackknife+", Ann. Stat.) with CQR scores, not CV+: CV+
evaluates all K fold models at query time (K times the cost) and only that is guaranteed
distribution-free (at 1 - 2 alpha); the CV interval keeps one model and today's query cost and
covers when the fit is stable. Fold models see (K - 1) / K of the data, so if anything their
scores overstate the final model's errors (over-coverage); coverage is validated on held-out
archs (benchmarks/validate_surrogates.py).

Base quantiles at levels the model does not predict are linearly interpolated between its
levels and clamped to its outermost ones (CQR stays valid for any base pair; only the width
suffers). Corrections are computed for a grid of central levels and stored with the model; a
calibrated quantile of level tau < 0.5 is the lower end of the level-(1 - 2 tau) interval, and
symmetrically above the median. The sampler inverts this piecewise-linear calibrated quantile
function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hwgpt_jax.surrogates.linear import kfold_indices

CENTRAL_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
_TOL = 1e-6


def interpolation_matrix(levels: Sequence[float], taus: Sequence[float]) -> np.ndarray:
    """(Q, T) weights W with base_quantiles @ W = quantiles at `taus` (linear, clamped)."""
    levels = np.asarray(levels, np.float64)
    weights = np.zeros((len(levels), len(taus)), np.float32)
    for t, tau in enumerate(np.clip(taus, levels[0], levels[-1])):
        upper = int(np.clip(np.searchsorted(levels, tau), 0, len(levels) - 1))
        lower = max(upper - 1, 0)
        if upper == lower or levels[upper] == levels[lower]:
            weights[upper, t] = 1.0
            continue
        frac = (tau - levels[lower]) / (levels[upper] - levels[lower])
        weights[lower, t], weights[upper, t] = 1.0 - frac, frac
    return weights


def cqr_scores(lower: np.ndarray, upper: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """Conformity scores max(lo - y, y - hi), (N, R); NaN where the observation is missing."""
    return np.maximum(lower[:, None] - observations, observations - upper[:, None])


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """E_c of the module docstring: the smallest score whose pooled empirical CDF reaches
    level (n + 1) / n, n the number of archs with a valid score (inf if that exceeds 1).

    Args:
        scores: (N,) one score per arch, or (N, R) the scores of R repeats per arch, NaN where
            an observation is missing.
        level: the central level c in (0, 1).
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2:
        raise ValueError(f"scores have shape {scores.shape}; expected (archs,) or "
                         f"(archs, repeats)")
    valid = ~np.isnan(scores)
    n_archs = int(valid.any(axis=1).sum())
    if n_archs == 0:
        raise ValueError("no calibration observations: cannot conformalize")
    pooled = np.sort(scores[valid])
    # Observations needed at or below t; rounded so that 0.9 * 11 / 10 * 100 stays 99.
    rank = int(np.ceil(round(level * (n_archs + 1) / n_archs * pooled.size, 6)))
    return float("inf") if rank > pooled.size else float(pooled[max(rank, 1) - 1])


def calibrate(base_quantiles: np.ndarray, levels: Sequence[float], observations: np.ndarray,
              central_levels: Sequence[float] = CENTRAL_LEVELS) -> np.ndarray:
    """CQR corrections E_c, (C,), one per central level, from a calibration split.

    Args:
        base_quantiles: (N, Q) model quantiles of the calibration archs.
        levels: (Q,) the model's quantile levels.
        observations: (N, R) observations on the same (transformed) scale, NaN where missing;
            rows are archs (the exchangeable unit), columns their repeats.
        central_levels: interval levels c in (0, 1) to calibrate.
    """
    base_quantiles = np.asarray(base_quantiles, np.float64)
    observations = np.asarray(observations, np.float64)
    taus = [t for c in central_levels for t in ((1 - c) / 2, (1 + c) / 2)]
    ends = base_quantiles @ interpolation_matrix(levels, taus).astype(np.float64)
    corrections = [
        conformal_quantile(cqr_scores(ends[:, 2 * i], ends[:, 2 * i + 1], observations), c)
        for i, c in enumerate(central_levels)
    ]
    return np.asarray(corrections, np.float32)


def cross_calibrate(fold_base: Callable[[np.ndarray, np.ndarray], np.ndarray],
                    observations: np.ndarray, folds: int, levels: Sequence[float],
                    central_levels: Sequence[float] = CENTRAL_LEVELS, seed: int = 0
                    ) -> np.ndarray:
    """Cross-conformal CQR corrections E_c, (C,) (module docstring).

    Args:
        fold_base: fold_base(train_rows, held_rows) -> (len(held_rows), Q) base quantiles of
            the held rows from the model refitted on the train rows (indices into
            `observations`).
        observations: (N, R) observations of all N archs (transformed scale), NaN if missing.
        folds: K; the N mod K archs left over by `kfold_indices` train in every fold and are
            not scored.
        levels, central_levels: as in `calibrate`.
        seed: the fold assignment's seed.
    """
    train, held = kfold_indices(len(observations), folds, seed)
    base = np.concatenate([fold_base(train[k], held[k]) for k in range(folds)])
    return calibrate(base, levels, np.asarray(observations)[held.ravel()], central_levels)


def _correction_index(taus: Sequence[float], central_levels: Sequence[float]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per tau: the sign (-1 below, +1 above, 0 at the median) and the index of its level."""
    signs, index = [], []
    for tau in taus:
        if abs(tau - 0.5) < _TOL:
            signs.append(0.0)
            index.append(0)
            continue
        central = abs(2 * tau - 1)
        match = [i for i, c in enumerate(central_levels) if abs(c - central) < _TOL]
        if not match:
            raise ValueError(f"quantile level {tau:g} needs the interval level {central:g}, "
                             f"which is not calibrated; calibrated levels: {list(central_levels)}")
        signs.append(1.0 if tau > 0.5 else -1.0)
        index.append(match[0])
    return np.asarray(signs, np.float32), np.asarray(index, np.int32)


def calibrated_quantiles(base_quantiles: jax.Array, levels: Sequence[float],
                         corrections: jax.Array, central_levels: Sequence[float],
                         taus: Sequence[float]) -> jax.Array:
    """Conformalized quantiles (N, T) at sorted `taus` (jit-able; `taus` static).

    A running maximum keeps them sorted even where a negative correction (an over-wide base
    interval) would pull an end past its neighbour.
    """
    weights = jnp.asarray(interpolation_matrix(levels, taus))
    signs, index = _correction_index(taus, central_levels)
    shifted = base_quantiles @ weights + jnp.asarray(signs) * corrections[jnp.asarray(index)]
    return jax.lax.cummax(shifted, axis=shifted.ndim - 1)


def sample_levels(central_levels: Sequence[float]) -> tuple[float, ...]:
    """The sorted grid of quantile levels used by the sampler: (1 -/+ c) / 2 and the median."""
    taus = {0.5} | {round((1 - c) / 2, 9) for c in central_levels} | {
        round((1 + c) / 2, 9) for c in central_levels}
    return tuple(sorted(taus))


def sample_from_quantiles(key: jax.Array, quantiles: jax.Array, taus: Sequence[float]
                          ) -> jax.Array:
    """One draw per row from the piecewise-linear quantile function (N, T) -> (N,).

    Uniform levels beyond the outermost taus are clipped to them (the tails are truncated).
    """
    taus_arr = jnp.asarray(taus, jnp.float32)
    u = jax.random.uniform(key, quantiles.shape[:-1], minval=taus_arr[0], maxval=taus_arr[-1])
    upper = jnp.clip(jnp.searchsorted(taus_arr, u), 1, len(taus) - 1)
    lower = upper - 1
    frac = (u - taus_arr[lower]) / (taus_arr[upper] - taus_arr[lower])
    q_lo = jnp.take_along_axis(quantiles, lower[..., None], axis=-1)[..., 0]
    q_hi = jnp.take_along_axis(quantiles, upper[..., None], axis=-1)[..., 0]
    return q_lo + frac * (q_hi - q_lo)
