"""Held-out quality of a fitted surrogate: the one validation report of the package.

On a held-out `MetricData` (archs the surrogate never saw): Kendall tau and MAPE of the
predicted median against each arch's median observation, and, for quantile surrogates, the
empirical coverage of the conformal central intervals counted per observation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from hwgpt_jax.surrogates.benchmark import Benchmark
from hwgpt_jax.surrogates.data import MetricData
from hwgpt_jax.surrogates.linear import kendall_tau

COVERAGE_LEVELS = (0.5, 0.8, 0.9)


def validation_report(median: np.ndarray, observations: np.ndarray,
                      intervals: Mapping[float, np.ndarray] | None = None) -> dict[str, float]:
    """Scores of predictions on held-out archs: `median` (N,) against the per-arch median of
    `observations` (N, R; NaN = missing), and the per-observation coverage of each central
    interval (level -> (N, 2) lower/upper)."""
    median = np.asarray(median, np.float64)
    observations = np.asarray(observations, np.float64)
    truth = np.nanmedian(observations, axis=1)
    result = {"archs": int(len(median)),
              "kendall_tau": float(kendall_tau(jnp.asarray(median), jnp.asarray(truth))),
              "mape": float(np.mean(np.abs(median - truth) / np.abs(truth)))}
    valid = np.isfinite(observations)
    for level, interval in (intervals or {}).items():
        lo, hi = np.asarray(interval, np.float64).T
        inside = (observations >= lo[:, None]) & (observations <= hi[:, None]) & valid
        result[f"coverage_{round(level * 100)}"] = float(inside.sum() / valid.sum())
    return result


def validate_surrogate(bench: Benchmark, test: MetricData,
                       levels: Sequence[float] = COVERAGE_LEVELS) -> dict[str, float]:
    """`validation_report` of the benchmark's surrogate of `test.key` (coverage for quantile
    surrogates only)."""
    median = bench.query(test.archs, [test.key], mode="median")[test.key]
    intervals = {}
    if bench.spec(test.key).kind == "quantile":
        intervals = {level: bench.query(test.archs, [test.key], mode="interval",
                                        level=level)[test.key] for level in levels}
    return validation_report(np.asarray(median), test.observations, intervals)


def split_held_out(data: Sequence[MetricData], fraction: float, seed: int = 0
                   ) -> tuple[list[MetricData], list[MetricData]]:
    """(train, test) of every key: a random `fraction` of its archs (at least 2) held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"test fraction {fraction!r}; expected a number in (0, 1)")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for item in data:
        order = rng.permutation(len(item))
        n_test = max(2, int(round(fraction * len(item))))
        if n_test >= len(item):
            raise ValueError(f"{item.key}: {len(item)} archs cannot hold out {n_test} and "
                             f"still fit; expected more archs")
        test.append(item.subset(np.sort(order[:n_test])))
        train.append(item.subset(np.sort(order[n_test:])))
    return train, test


__all__ = ["COVERAGE_LEVELS", "split_held_out", "validate_surrogate", "validation_report"]
