"""Noise ceiling of the held-out Kendall tau of each hardware key of a published archive.

`validate_surrogates.py` scores a surrogate by Kendall tau-b against each held-out arch's
median observation. Repeat noise in that target caps the tau of every predictor, even of a
noiseless one (one that returns each arch's true, noise-free value). This script estimates
the cap per key from the repeated observations:

1. split-half agreement (measured): the repeats of each arch are shuffled independently and
   cut into two disjoint halves of h = R // 2; `split_half_tau` is the tau-b between the
   per-arch medians of the halves, averaged over `--splits` random shuffles. It is the
   agreement of two independent measurements, each the median of h repeats.
2. ceiling (a model on top of 1): assume a Gaussian copula (after one monotone transform per
   key, true value and measurement noise are jointly Gaussian and additive) and exchangeable
   repeats. Then Greiner's relation rho = sin(pi tau / 2) turns the split-half tau into the
   reliability of a median of h repeats; Spearman-Brown steps it up to R repeats,
   rel_R = k rel_h / (1 + (k - 1) rel_h) with k = R / h (it assumes the noise variance of the
   aggregate scales as 1 / repeats: exact for means, close for medians of 5 -> 10 and
   25 -> 50 Gaussian repeats); the correlation of the true value with the median of all R is
   sqrt(rel_R), and `ceiling_tau` = (2 / pi) arcsin(sqrt(rel_R)).

The repeats only see noise that varies between repeats of one arch. Noise shared by all
repeats of an arch (a measurement session, a thermal state, a daemon running at the time)
is invisible to both estimates, so the ceiling is an upper bound of the attainable tau.

Drift (measured): the archs of an archive are drawn independently of their position in it,
so the residuals of an arch-only model should not correlate between neighbours in archive
order. Per positive key the script fits the linear baseline of validate_surrogates.py (log
target on the `cost_summary` features) and reports the residuals' lag-1 autocorrelation,
the drift variance (mean autocovariance at lags 1-5) as a share of the log target's
variance, and, on the held-out split of validate_surrogates.py (same seed), the tau of the
baseline alone and with each test arch's prediction shifted by the mean residual of its 10
nearest training archs in archive order. That correction knows the archive position,
which a new arch does not have: it is no surrogate, it only shows how much of the missing
rank agreement is shared by neighbours in measurement order, i.e. out of reach for any
predictor of the arch alone.

CPU energy is published as mean and std over 10 runs only: `model_ceiling_tau` is a model,
not a measurement: on the log scale the mean's error variance is (std / mean)^2 / 10 (delta
method, std read as the sample std of the runs), rel = 1 - mean(error variance) /
var(log mean) over archs, and the same arcsin step. Keys with a single observation and no
std (latency:cpu_amd_7513 and energy:cpu_amd_7513 of s, whose std is 0 everywhere) get none.

With `--validation FILE...` (JSON lines of validate_surrogates.py) it also prints per key the
mean over seeds of our tau and the linear baseline's, and per scale the mean over hardware
keys of each, our margin over the baseline on the keys with low (lag-1 autocorrelation
< 0.3) and high drift, the mean headroom (ceiling - baseline) over the keys that have a
ceiling, the margin over all validated keys that closing that headroom would give (keys without a
ceiling counted as 0), and the share of it that the +0.01 goal takes.

Usage:
    .venv/bin/python benchmarks/noise_ceiling.py \
        --data ../shared/reference/hwgpt-bench/hwgpt_s_full.npz --splits 5 \
        --validation runs/validate_s0.jsonl runs/validate_s1.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.encoding import encode
from hwgpt_jax.surrogates.data import MetricData
from hwgpt_jax.surrogates.published import CPUS, load_published

GOAL_MARGIN = 0.01
DRIFT_SPLIT = 0.3  # lag-1 autocorrelation of the residuals that separates low- and high-drift keys


def split_half_tau(observations: np.ndarray, splits: int, seed: int) -> float:
    """Mean over `splits` shuffles of the tau-b between the per-arch medians of two disjoint
    random halves (R // 2 repeats each) of the repeats (N, R) of every arch."""
    observations = np.asarray(observations, np.float64)
    n, repeats = observations.shape
    if repeats < 2:
        raise ValueError(f"split-half needs at least 2 repeats per arch, got {repeats}")
    half = repeats // 2
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(splits):
        order = rng.permuted(np.tile(np.arange(repeats), (n, 1)), axis=1)
        shuffled = np.take_along_axis(observations, order, axis=1)
        first = np.nanmedian(shuffled[:, :half], axis=1)
        second = np.nanmedian(shuffled[:, half:2 * half], axis=1)
        taus.append(kendalltau(first, second)[0])
    return float(np.mean(taus))


def tau_from_reliability(reliability: float) -> float:
    """Kendall tau of a true value with a measurement of this reliability (Gaussian copula)."""
    return float(2.0 / np.pi * np.arcsin(np.sqrt(np.clip(reliability, 0.0, 1.0))))


def ceiling_tau(split_tau: float, repeats: int) -> float:
    """Tau of a noiseless predictor against the median of `repeats` repeats, from the
    split-half tau of medians of repeats // 2 (Greiner, then Spearman-Brown)."""
    reliability_half = np.sin(np.pi * split_tau / 2.0)
    factor = repeats / (repeats // 2)
    reliability = factor * reliability_half / (1.0 + (factor - 1.0) * reliability_half)
    return tau_from_reliability(reliability)


def model_ceiling_tau(mean: np.ndarray, std: np.ndarray, runs: int) -> float:
    """Model ceiling for a target published as the mean (and std) of `runs` runs: reliability
    of log(mean) with error variance (std / mean)^2 / runs, then the Gaussian-copula tau."""
    log_mean = np.log(np.asarray(mean, np.float64))
    error_variance = (np.asarray(std, np.float64) / np.asarray(mean, np.float64)) ** 2 / runs
    return tau_from_reliability(1.0 - float(np.mean(error_variance)) / float(np.var(log_mean)))


def tied_pair_fraction(values: np.ndarray) -> float:
    """Share of arch pairs whose targets tie (tau-b of a tie-free predictor is capped by it)."""
    counts = np.unique(values, return_counts=True)[1].astype(np.float64)
    n = float(len(values))
    return float(np.sum(counts * (counts - 1)) / (n * (n - 1)))


def drift_variance(residual: np.ndarray, lags: int = 5) -> float:
    """Variance of a slow drift along the archive order: the mean autocovariance of
    `residual` (in archive order) at lags 1..`lags`. Arch-dependent misfit and repeat noise
    do not correlate between neighbours when the archs are drawn independently of their
    position, so what neighbours share is the drift."""
    centred = np.asarray(residual, np.float64) - np.mean(residual)
    return float(np.mean([np.mean(centred[:-k] * centred[k:]) for k in range(1, lags + 1)]))


def linear_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of y on [x, 1]."""
    return np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)[0]


def linear_predict(x: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Predictions of the `linear_fit` coefficients on x."""
    return np.hstack([x, np.ones((len(x), 1))]) @ coef


def drift_rows(item: MetricData, features: np.ndarray, seed: int,
               test_fraction: float = 0.2) -> dict:
    """The drift of one key along the archive order (log target, linear baseline residuals):
    the residuals' lag-1 autocorrelation, the drift's share of the target's variance, and a
    measured held-out tau of the linear baseline with and without a drift correction (the
    mean residual of the 10 nearest training archs in archive order; it uses the archive
    position, which a new arch does not have, so it shows where the error is, nothing more)."""
    log_obs = np.log(item.observations)
    y = np.nanmedian(log_obs, axis=1)
    residual = y - linear_predict(features, linear_fit(features, y))
    drift = drift_variance(residual)
    row = {"drift_lag1_autocorr": float(np.corrcoef(residual[:-1], residual[1:])[0, 1]),
           "drift_variance_share": drift / float(np.var(y))}
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    coef = linear_fit(features[train], y[train])
    train_residual = y[train] - linear_predict(features[train], coef)
    position = np.searchsorted(train, test)
    window = np.clip(position[:, None] + np.arange(-5, 5)[None, :], 0, len(train) - 1)
    corrected = linear_predict(features[test], coef) + train_residual[window].mean(axis=1)
    row["linear_heldout_tau"] = float(kendalltau(linear_predict(features[test], coef),
                                                 y[test])[0])
    row["linear_plus_drift_heldout_tau"] = float(kendalltau(corrected, y[test])[0])
    return row


def key_rows(path: str, splits: int, seed: int) -> list[dict]:
    """One row per hardware key of the archive: repeats, split-half tau and the ceilings."""
    rows = []
    with np.load(path, allow_pickle=False) as archive:
        for item in load_published(path, ["latency", "energy"]):
            item = item.dropna()
            space = get_space(item.scale)
            obs = item.observations
            row = {"figure": "noise_ceiling", "scale": item.scale, "key": item.key,
                   "archs": len(item), "repeats": int(obs.shape[1]),
                   "tied_target_pairs": tied_pair_fraction(np.nanmedian(obs, axis=1))}
            if obs.shape[1] >= 2:
                row["split_half_tau"] = split_half_tau(obs, splits, seed)
                row["ceiling_tau"] = ceiling_tau(row["split_half_tau"], obs.shape[1])
            elif item.device in CPUS and item.metric == "energy":
                std = np.asarray(archive[f"energy_Wh_std__{item.device}"], np.float64)
                if np.any(std > 0):
                    row["model_ceiling_tau"] = model_ceiling_tau(obs[:, 0], std, runs=10)
            if np.nanmin(obs) > 0:
                features = np.asarray(encode(item.archs, space, "cost_summary"), np.float64)
                row.update(drift_rows(item, features, seed))
            rows.append(row)
    return rows


def read_validation(paths: list[str]) -> dict[tuple[str, str], dict]:
    """(scale, key) -> mean over seeds of our and the linear baseline's tau (and the seeds)."""
    found = defaultdict(list)
    for path in paths:
        with open(path) as handle:
            for line in handle:
                if line.startswith('{"figure": "surrogate_validation",'):
                    r = json.loads(line)
                    found[r["scale"], r["key"]].append(r)
    return {k: {"ours_tau": float(np.mean([r["kendall_tau"] for r in v])),
                "linear_tau": float(np.mean([r["linear_kendall_tau"] for r in v])),
                "seeds": sorted(r["seed"] for r in v)} for k, v in found.items()}


def summary(rows: list[dict]) -> dict:
    """Per-scale means over hardware keys and the share of the headroom the goal needs."""
    scored = [r for r in rows if "linear_tau" in r]
    out = {"figure": "noise_ceiling_summary", "scale": rows[0]["scale"],
           "keys": len(rows), "keys_validated": len(scored)}
    if scored:
        out["ours_mean_tau"] = float(np.mean([r["ours_tau"] for r in scored]))
        out["linear_mean_tau"] = float(np.mean([r["linear_tau"] for r in scored]))
        out["margin"] = out["ours_mean_tau"] - out["linear_mean_tau"]
        for name, high in (("low", False), ("high", True)):
            part = [r for r in scored
                    if (r.get("drift_lag1_autocorr", 0.0) >= DRIFT_SPLIT) == high]
            out[f"{name}_drift_keys"] = len(part)
            if part:
                out[f"{name}_drift_margin"] = float(np.mean([r["ours_tau"] - r["linear_tau"]
                                                             for r in part]))
    for name in ("linear_heldout_tau", "linear_plus_drift_heldout_tau"):
        out[f"{name}_mean"] = float(np.mean([r[name] for r in rows]))
    for name in ("ceiling_tau", "model_ceiling_tau"):
        both = [r for r in scored if name in r]
        if both:
            headroom = [r[name] - r["linear_tau"] for r in both]
            # the goal is on the mean over all validated keys: keys without a ceiling add 0
            reachable = float(np.sum(headroom)) / len(scored)
            out[f"{name}_keys"] = len(both)
            out[f"{name}_mean"] = float(np.mean([r[name] for r in both]))
            out[f"{name}_linear_mean"] = float(np.mean([r["linear_tau"] for r in both]))
            out[f"{name}_mean_headroom"] = float(np.mean(headroom))
            out[f"{name}_reachable_margin"] = reachable
            out[f"{name}_goal_share_of_headroom"] = GOAL_MARGIN / reachable
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="published hwgpt_<scale>_full.npz")
    parser.add_argument("--splits", type=int, default=5, help="random split-half shuffles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation", nargs="*", default=[],
                        help="JSON-lines output(s) of validate_surrogates.py for this scale")
    args = parser.parse_args()
    if args.splits < 1:
        parser.error(f"--splits {args.splits}; expected a positive number of shuffles")
    for path in [args.data, *args.validation]:
        if not Path(path).is_file():
            parser.error(f"{path!r} does not exist; expected a file")
    rows = key_rows(args.data, args.splits, args.seed)
    validation = read_validation(args.validation)
    for row in rows:
        row.update(validation.get((row["scale"], row["key"]), {}))
        print(json.dumps(row), flush=True)
    print(json.dumps(summary(rows)), flush=True)


if __name__ == "__main__":
    main()
