"""Validate the surrogates on the published HW-GPT-Bench measurements (held-out archs).

For each metric/device of the archive: fit a surrogate on a random (1 - test_fraction) of the
archs (which `fit_surrogate` splits again into train / validation / calibration), then on the
held-out archs report Kendall tau and Spearman rho of the predicted median against the
per-arch median of the observations, the MAPE of the predicted median, and the empirical
per-observation coverage of the conformal 50/80/90 % intervals. Two baselines are fitted on the
same archs (ours keeps 10 % of them for early stopping, and with `calibration = "split"` 40 %
more for calibration; with the default cross-conformal calibration it trains on the other
90 %) and scored the same way: `linear` (least squares of the log target, identity for
non-positive metrics, on the nine `cost_summary` features: embed one-hot, depth, summed heads,
summed MLP ratios, bias, log params, log FLOPs of the published model) and `params` (the
published parameter count alone: a least-squares line of the log target on log params, so its
tau is that of the count itself, oriented by the slope's sign, e.g. positive for perplexity).
Perplexity also gets a bootstrap 95 % interval of its tau (`kendall_tau_ci95`, 1,000
resamples of the test archs).

Prints one JSON line per surrogate, then a table and a summary per seed. Targets (issue 17):
no key where the linear baseline's tau beats ours by more than 0.005; mean hardware tau >=
baseline + 0.01; perplexity tau >= 0.9; latency median MAPE <= 5 % on every GPU; coverage
within 3 points of nominal on every key.

Each coverage comes with its sampling noise, so that a miss can be told from a bias:
`coverage_<L>_se` is the standard error of the test-split estimate, clustered by arch (repeats
of an arch are correlated), and `coverage_<L>_sd` adds the noise of the calibration split
(same per-arch variance, n_calib instead of n_test archs): the spread that the realised
coverage has around nominal over random splits when the calibration is exact. The table shows
the largest |coverage - nominal| / sd of the three levels.

Usage:
    .venv/bin/python benchmarks/validate_surrogates.py \
        --data ../shared/reference/hwgpt-bench/hwgpt_s_full.npz --seed 0 1 2
    # the issue's 27 keys are the default metrics (perplexity, latency, energy)
    # some keys only: --metrics latency:a100 energy:cpu_amd_7513
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import jax
import numpy as np
from scipy.stats import kendalltau, spearmanr

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.encoding import COST_FEATURES, cost_features, encode
from hwgpt_jax.surrogates import fit_surrogate, load_presets, predict
from hwgpt_jax.surrogates.fit import QUALITY_METRICS, default_config
from hwgpt_jax.surrogates.published import GPUS, load_published
from hwgpt_jax.surrogates.validation import validation_report

LEVELS = (0.5, 0.8, 0.9)


def evaluate(surrogate, test) -> dict:
    """The library's validation report (tau, MAPE, coverage) plus Spearman, the perplexity
    tau's bootstrap CI and the coverages' arch-clustered standard errors."""
    space = get_space(test.scale)
    features = encode(test.archs, space, surrogate.spec.encoding)
    median = np.asarray(predict(surrogate.spec, surrogate.state, features, "median"))
    obs = test.observations
    intervals = {level: np.asarray(predict(surrogate.spec, surrogate.state, features,
                                           "interval", level=level)) for level in LEVELS}
    row = validation_report(median, obs, intervals)
    observed = np.nanmedian(obs, axis=1)
    row["spearman"] = float(spearmanr(median, observed)[0])
    if surrogate.spec.metric == "perplexity":
        row["kendall_tau_ci95"] = bootstrap_tau(median, observed, surrogate.spec.seed)
    valid = ~np.isnan(obs)
    n_calib = surrogate.spec.fit_report["n_calib"]
    for level, interval in intervals.items():
        inside = (obs >= interval[:, :1]) & (obs <= interval[:, 1:])
        name = f"coverage_{round(level * 100)}"
        se = clustered_mean(inside, valid)[1]
        row[f"{name}_se"] = se
        row[f"{name}_sd"] = se * float(np.sqrt(1.0 + len(test) / n_calib))
    return row


def baselines(train, test) -> dict:
    """Tau and MAPE of the linear cost-feature model and of the parameter count alone."""
    space = get_space(test.scale)
    positive = bool(np.nanmin(train.observations) > 0)
    forward = np.log if positive else (lambda v: v)
    inverse = np.exp if positive else (lambda v: v)
    y_train = forward(np.nanmedian(train.observations, axis=1))
    observed = np.nanmedian(test.observations, axis=1)
    log_params = COST_FEATURES.index("log_params")
    row = {}
    for name, encode_fn in (
            ("linear", lambda a: np.asarray(encode(a, space, "cost_summary"), np.float64)),
            ("params", lambda a: np.asarray(cost_features(a, space))[:, [log_params]])):
        x_train, x_test = encode_fn(train.archs), encode_fn(test.archs)
        design = lambda x: np.hstack([x, np.ones((len(x), 1))])  # noqa: E731
        coef = np.linalg.lstsq(design(x_train), y_train, rcond=None)[0]
        median = inverse(design(x_test) @ coef)
        # for params the line's ranking is the count's, oriented by the fitted slope's sign
        row[f"{name}_kendall_tau"] = float(kendalltau(median, observed)[0])
        row[f"{name}_mape"] = float(np.mean(np.abs(median - observed) / np.abs(observed)))
    return row


def bootstrap_tau(prediction: np.ndarray, observed: np.ndarray, seed: int,
                  resamples: int = 1000) -> list[float]:
    """2.5 and 97.5 percentiles of Kendall tau over resampled (with replacement) test archs."""
    rng = np.random.default_rng(seed)
    taus = [kendalltau(prediction[i], observed[i])[0] for i in
            (rng.integers(0, len(observed), len(observed)) for _ in range(resamples))]
    return [float(v) for v in np.nanpercentile(taus, [2.5, 97.5])]


def clustered_mean(inside: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Per-observation coverage (N, R) -> (mean, standard error clustered by arch row)."""
    hits = np.sum(inside & valid, axis=1).astype(np.float64)
    counts = np.sum(valid, axis=1).astype(np.float64)
    hits, counts = hits[counts > 0], counts[counts > 0]
    mean = hits.sum() / counts.sum()
    n = len(counts)
    variance = np.sum((hits - mean * counts) ** 2) / counts.sum() ** 2 * n / max(n - 1, 1)
    return float(mean), float(np.sqrt(variance))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="published hwgpt_<scale>_full.npz")
    parser.add_argument("--metrics", nargs="+", default=["perplexity", "latency", "energy"],
                        help="metric names (every device) or keys like latency:a100")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="one or more seeds (test split and fit)")
    parser.add_argument("--config", default=None,
                        help="TOML presets (e.g. surrogates/default.toml); default: "
                             "SurrogateConfig defaults")
    args = parser.parse_args()
    presets = load_presets(args.config) if args.config else {}

    data = load_published(args.data, args.metrics)
    for seed in args.seed:
        rows = []
        for item in data:
            row = validate(item.dropna(), presets, seed, args.test_fraction)
            row.update(presets=args.config, data=args.data)
            rows.append(row)
            print(json.dumps(row), flush=True)
        print_table(rows)


def validate(item, presets: dict, seed: int, test_fraction: float) -> dict:
    """Fit on a seeded (1 - test_fraction) of the archs, evaluate on the rest."""
    order = np.random.default_rng(seed).permutation(len(item))
    n_test = int(round(len(item) * test_fraction))
    test, train = item.subset(order[:n_test]), item.subset(order[n_test:])
    group = "quality" if item.metric in QUALITY_METRICS else "hardware"
    preset = next((presets[k] for k in (item.key, item.metric, group) if k in presets),
                  default_config(item.metric))
    config = dataclasses.replace(preset, seed=seed)
    start = time.perf_counter()
    surrogate = fit_surrogate(train, config)
    fit_seconds = time.perf_counter() - start
    report = surrogate.spec.fit_report
    return {"figure": "surrogate_validation", "scale": item.scale, "key": item.key,
            "unit": item.unit, "kind": config.kind, "n_fit_archs": len(train),
            "n_calib_archs": report["n_calib"], "n_test_archs": len(test),
            "repeats": int(item.observations.shape[1]),
            "fit_seconds": round(fit_seconds, 2), "best_step": report["best_step"],
            "calibration": report.get("calibration", "split"),
            "chosen": report["selection"]["chosen"], "transform": surrogate.spec.transform,
            "cv": report["selection"].get("candidates", {}),
            **evaluate(surrogate, test), **baselines(train, test),
            "config": report["config"], "seed": seed, "jax_device": str(jax.devices()[0]),
            "host": platform.processor() or platform.machine()}


def print_table(rows: list[dict]) -> None:
    seed = rows[0]["seed"] if rows else None
    print(f"seed {seed}")
    print(f"{'key':<24} {'model':<8} {'tau':>6} {'linear':>6} {'params':>6} {'MAPE%':>6} "
          f"{'lin%':>6} {'par%':>6} {'cov50':>6} {'cov80':>6} {'cov90':>6} {'fit_s':>6}  targets")
    for r in rows:
        checks = [all(abs(r[f"coverage_{int(c * 100)}"] - c) <= 0.03 for c in LEVELS),
                  r["kendall_tau"] >= r["linear_kendall_tau"] - 0.005]
        if r["key"] == "perplexity":
            checks.append(r["kendall_tau"] >= 0.9)
        if r["key"].startswith("latency:") and r["key"].split(":")[1] in GPUS:
            checks.append(r["mape"] <= 0.05)
        print(f"{r['key']:<24} {r['chosen']:<8} {r['kendall_tau']:6.3f} "
              f"{r['linear_kendall_tau']:6.3f} {r['params_kendall_tau']:6.3f} "
              f"{100 * r['mape']:6.2f} {100 * r['linear_mape']:6.2f} {100 * r['params_mape']:6.2f} "
              f"{r['coverage_50']:6.3f} {r['coverage_80']:6.3f} {r['coverage_90']:6.3f} "
              f"{r['fit_seconds']:6.1f}  {'ok' if all(checks) else 'MISSED'}")
    hardware = [r for r in rows if r["key"].partition(":")[0] not in QUALITY_METRICS]
    if hardware:
        ours = float(np.mean([r["kendall_tau"] for r in hardware]))
        linear = float(np.mean([r["linear_kendall_tau"] for r in hardware]))
        beaten = [r["key"] for r in rows if r["linear_kendall_tau"] > r["kendall_tau"] + 0.005]
        print(json.dumps({"figure": "surrogate_validation_summary", "scale": rows[0]["scale"],
                          "seed": seed, "hardware_mean_tau": ours,
                          "linear_hardware_mean_tau": linear,
                          "margin_goal_met": ours >= linear + 0.01,
                          "keys_beaten_by_linear": beaten,
                          "fit_seconds_total": round(sum(r["fit_seconds"] for r in rows), 1)}))


if __name__ == "__main__":
    reexec_with_tuned_allocator()  # before any work: the process is replaced
    main()
