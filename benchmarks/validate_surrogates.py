"""Validate the surrogates on the published HW-GPT-Bench measurements (held-out archs).

For each metric/device of the archive: fit a surrogate on a random (1 - test_fraction) of the
archs (which `fit_surrogate` splits again into train / validation / calibration), then on the
held-out archs report Kendall tau and Spearman rho of the predicted median against the
per-arch median of the observations, the MAPE of the predicted median, and the empirical
per-observation coverage of the conformal 50/80/90 % intervals. Prints one JSON line per
surrogate, then a table. Targets (issue 6): perplexity Kendall tau >= 0.9; latency median MAPE
<= 5 % on every GPU; coverage within 3 points of nominal on every device.

Usage:
    .venv/bin/python benchmarks/validate_surrogates.py \
        --data ../shared/reference/hwgpt-bench/hwgpt_s_full.npz
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

from hwgpt_jax.encoding import encode
from hwgpt_jax.published import GPUS, load_published
from hwgpt_jax.space import get_space
from hwgpt_jax.surrogates import fit_surrogate, load_presets, predict
from hwgpt_jax.surrogates.fit import QUALITY_METRICS, default_config

LEVELS = (0.5, 0.8, 0.9)


def evaluate(surrogate, test) -> dict:
    space = get_space(test.scale)
    features = encode(test.archs, space, surrogate.spec.encoding)
    median = np.asarray(predict(surrogate.spec, surrogate.state, features, "median"))
    obs = test.observations
    observed = np.nanmedian(obs, axis=1)
    row = {"kendall_tau": float(kendalltau(median, observed)[0]),
           "spearman": float(spearmanr(median, observed)[0]),
           "mape": float(np.mean(np.abs(median - observed) / np.abs(observed)))}
    valid = ~np.isnan(obs)
    for level in LEVELS:
        interval = np.asarray(predict(surrogate.spec, surrogate.state, features, "interval",
                                      level=level))
        inside = (obs >= interval[:, :1]) & (obs <= interval[:, 1:])
        row[f"coverage_{int(level * 100)}"] = float(inside[valid].mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="published hwgpt_<scale>_full.npz")
    parser.add_argument("--metrics", nargs="+", default=["perplexity", "latency", "energy"])
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None,
                        help="TOML presets (e.g. surrogates/default.toml); default: "
                             "SurrogateConfig defaults")
    args = parser.parse_args()
    presets = load_presets(args.config) if args.config else {}

    data = load_published(args.data, args.metrics)
    rows = []
    for item in data:
        item = item.dropna()
        order = np.random.default_rng(args.seed).permutation(len(item))
        n_test = int(round(len(item) * args.test_fraction))
        test, train = item.subset(order[:n_test]), item.subset(order[n_test:])
        group = "quality" if item.metric in QUALITY_METRICS else "hardware"
        preset = next((presets[k] for k in (item.key, item.metric, group) if k in presets),
                      default_config(item.metric))
        config = dataclasses.replace(preset, seed=args.seed)
        start = time.perf_counter()
        surrogate = fit_surrogate(train, config)
        row = {"figure": "surrogate_validation", "scale": item.scale, "key": item.key,
               "unit": item.unit, "kind": config.kind, "n_fit_archs": len(train),
               "n_test_archs": len(test), "repeats": int(item.observations.shape[1]),
               "fit_seconds": round(time.perf_counter() - start, 2),
               "best_step": surrogate.spec.fit_report["best_step"], **evaluate(surrogate, test),
               "config": surrogate.spec.fit_report["config"], "presets": args.config,
               "data": args.data,
               "seed": args.seed, "jax_device": str(jax.devices()[0]),
               "host": platform.processor() or platform.machine()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    header = (f"{'key':<24} {'tau':>6} {'rho':>6} {'MAPE%':>6} {'cov50':>6} {'cov80':>6} "
              f"{'cov90':>6}  targets")
    print(header)
    for r in rows:
        checks = [all(abs(r[f"coverage_{int(c * 100)}"] - c) <= 0.03 for c in LEVELS)]
        if r["key"] == "perplexity":
            checks.append(r["kendall_tau"] >= 0.9)
        if r["key"].startswith("latency:") and r["key"].split(":")[1] in GPUS:
            checks.append(r["mape"] <= 0.05)
        print(f"{r['key']:<24} {r['kendall_tau']:6.3f} {r['spearman']:6.3f} "
              f"{100 * r['mape']:6.2f} {r['coverage_50']:6.3f} {r['coverage_80']:6.3f} "
              f"{r['coverage_90']:6.3f}  {'ok' if all(checks) else 'MISSED'}")


if __name__ == "__main__":
    main()
