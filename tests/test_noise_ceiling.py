"""benchmarks/noise_ceiling.py: split-half tau against a brute-force reference, and the
ceiling on synthetic repeats whose noise-free values are known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "noise_ceiling.py"
SPEC = importlib.util.spec_from_file_location("noise_ceiling", PATH)
noise_ceiling = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(noise_ceiling)


def brute_tau_b(a, b):
    """Kendall tau-b over all pairs, O(n^2)."""
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    return np.sum(da * db) / np.sqrt(np.sum(da != 0) * np.sum(db != 0))


def test_split_half_matches_brute_force():
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(60, 1)) + rng.normal(size=(60, 7))
    taus = []
    shuffle = np.random.default_rng(11)
    for _ in range(4):  # the same shuffles as the function's: per-arch permutations
        order = shuffle.permuted(np.tile(np.arange(7), (60, 1)), axis=1)
        s = np.take_along_axis(obs, order, axis=1)
        taus.append(brute_tau_b(np.median(s[:, :3], 1), np.median(s[:, 3:6], 1)))
    assert noise_ceiling.split_half_tau(obs, 4, seed=11) == pytest.approx(np.mean(taus))


def test_noiseless_repeats_give_ceiling_one():
    truth = np.random.default_rng(0).normal(size=50)
    obs = np.repeat(truth[:, None], 10, axis=1)
    tau = noise_ceiling.split_half_tau(obs, 3, seed=0)
    assert tau == pytest.approx(1.0)
    assert noise_ceiling.ceiling_tau(tau, 10) == pytest.approx(1.0)
    assert noise_ceiling.model_ceiling_tau(np.exp(truth), np.zeros(50), 10) == pytest.approx(1.0)


@pytest.mark.parametrize("repeats", [10, 50])
def test_ceiling_matches_noiseless_predictor(repeats):
    """Gaussian truth plus Gaussian repeat noise: the corrected ceiling estimates the tau of
    the truth itself against the median of all repeats, and exceeds the split-half tau."""
    rng = np.random.default_rng(1)
    truth = rng.normal(size=4000)
    obs = truth[:, None] + 1.5 * rng.normal(size=(4000, repeats))
    direct = kendalltau(truth, np.median(obs, axis=1))[0]
    split = noise_ceiling.split_half_tau(obs, 3, seed=2)
    ceiling = noise_ceiling.ceiling_tau(split, repeats)
    assert split < direct
    assert ceiling == pytest.approx(direct, abs=0.015)


def test_model_ceiling_matches_noiseless_predictor():
    """Log-normal truth, 10 runs with multiplicative noise published as mean and std."""
    rng = np.random.default_rng(4)
    truth = rng.normal(size=4000)
    runs = np.exp(truth)[:, None] * (1.0 + 0.3 * rng.normal(size=(4000, 10)))
    mean, std = runs.mean(axis=1), runs.std(axis=1, ddof=1)
    direct = kendalltau(truth, mean)[0]
    assert noise_ceiling.model_ceiling_tau(mean, std, 10) == pytest.approx(direct, abs=0.015)


def test_drift_variance_sees_shared_neighbours():
    """A slow drift along the order is found; independent noise has none."""
    rng = np.random.default_rng(5)
    noise = rng.normal(size=20000)
    drift = np.repeat(rng.normal(size=200), 100)  # variance 1, constant over blocks of 100
    assert noise_ceiling.drift_variance(noise) == pytest.approx(0.0, abs=0.03)
    assert noise_ceiling.drift_variance(noise + drift) == pytest.approx(np.var(drift), rel=0.1)
