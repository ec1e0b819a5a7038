"""Tests for the GP and the GP-based searches (RSBO, LSBO, EHVI)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from hwgpt_jax.search import gp as gaussian_process
from hwgpt_jax.search import pareto
from hwgpt_jax.search.base import Problem
from hwgpt_jax.search.objectives import random_mlp_objective
from hwgpt_jax.search.registry import make_algorithm
from hwgpt_jax.search.rsbo import chebyshev
from hwgpt_jax.search.runner import hypervolume_curve, run_compiled
from hwgpt_jax.space.arch import get_space

BUDGET = 64
OPTIONS = {"batch_size": 8, "max_evaluations": BUDGET, "n_initial": 16, "n_candidates": 256}


def numpy_matern52(a, b, lengthscale, signal):
    r = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)) / lengthscale
    return signal * (1 + np.sqrt(5) * r + 5 / 3 * r**2) * np.exp(-np.sqrt(5) * r)


def test_gp_posterior_equals_numpy_exact_gp_and_ignores_invalid_rows():
    rng = np.random.default_rng(0)
    x = rng.random((30, 5)).astype(np.float32)
    y = np.stack([np.sin(3 * x[:, 0]) + x[:, 1], x[:, 2] ** 2], 1).astype(np.float32)
    valid = np.arange(30) < 20
    x_garbage = np.where(valid[:, None], x, rng.random((30, 5)).astype(np.float32))
    model = gaussian_process.fit_gp(jnp.asarray(x_garbage), jnp.asarray(valid),
                                    jnp.asarray(np.where(valid[:, None], y, 99.0)), n_steps=30)
    test = rng.random((7, 5)).astype(np.float32)
    mean, variance = gaussian_process.posterior(model, jnp.asarray(test))
    lengthscale, signal, noise = np.exp(np.asarray(model.log_hypers, np.float64))
    y_mean, y_std = y[valid].mean(0), y[valid].std(0)
    k = numpy_matern52(x[valid], x[valid], lengthscale, signal) + (noise + 1e-6) * np.eye(20)
    cross = numpy_matern52(x[valid], test, lengthscale, signal)
    want_mean = cross.T @ np.linalg.solve(k, (y[valid] - y_mean) / y_std) * y_std + y_mean
    want_var = signal - np.einsum("ip,ip->p", cross, np.linalg.solve(k, cross))
    np.testing.assert_allclose(np.asarray(mean), want_mean, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.asarray(variance), want_var, rtol=1e-2, atol=1e-4)
    # The fitted GP follows its (noise-free) training data within its noise level.
    train_mean, _ = gaussian_process.posterior(model, jnp.asarray(x[valid]))
    residual = np.abs(np.asarray(train_mean) - y[valid]) / y[valid].std(0)
    assert residual.mean() < 0.1 and residual.max() < 3 * np.sqrt(noise)


def test_hyperparameter_subset_draws_valid_rows_and_is_exact_when_all_fit():
    valid = jnp.asarray(np.arange(200) % 3 == 0)  # 67 valid rows
    rows = np.asarray(gaussian_process.fit_subset(jax.random.key(0), valid, 32))
    assert len(set(rows)) == 32 and np.asarray(valid)[rows].all()
    rows = np.asarray(gaussian_process.fit_subset(jax.random.key(0), valid, 80))
    assert set(np.flatnonzero(np.asarray(valid))) <= set(rows)  # every valid row, then fill
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.random((200, 4)), jnp.float32)
    y = jnp.sin(3 * x[:, :1]) + x[:, 1:2]
    full = gaussian_process.fit_gp(x, valid, y, n_steps=20)
    subset = gaussian_process.fit_gp(x, valid, y, n_steps=20, max_fit_rows=80,
                                     key=jax.random.key(2))
    np.testing.assert_allclose(np.asarray(subset.log_hypers), np.asarray(full.log_hypers),
                               atol=1e-4)
    # The posterior conditions on every row, whatever rows fitted the hyperparameters.
    small = gaussian_process.fit_gp(x, valid, y, n_steps=20, max_fit_rows=16,
                                    key=jax.random.key(2))
    refit = gaussian_process.fit_gp(x, valid, y, n_steps=0, start=small.log_hypers)
    np.testing.assert_allclose(np.asarray(small.alpha), np.asarray(refit.alpha), atol=1e-4)


def test_posterior_mean_of_refitted_targets_shares_the_variance():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.random((40, 3)), jnp.float32)
    valid = jnp.ones(40, bool)
    model = gaussian_process.fit_gp(x, valid, x[:, :2] ** 2, n_steps=5)
    refit = gaussian_process.refit_targets(model, jnp.sin(x))
    test = jnp.asarray(rng.random((9, 3)), jnp.float32)
    mean, variance = gaussian_process.posterior(refit, test)
    np.testing.assert_allclose(np.asarray(gaussian_process.posterior_mean(refit, test)),
                               np.asarray(mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(variance),
                               np.asarray(gaussian_process.posterior(model, test)[1]), rtol=1e-6)


def test_expected_improvement_matches_closed_form():
    mean, std, best = np.array([0.0, 1.0, -1.0]), np.array([1.0, 0.5, 2.0]), 0.2
    z = (best - mean) / std
    want = (best - mean) * norm.cdf(z) + std * norm.pdf(z)
    got = gaussian_process.expected_improvement(jnp.asarray(mean), jnp.asarray(std), best)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_chebyshev_scalarization():
    values = jnp.array([[0.2, 0.8], [0.5, 0.5]])
    weights = jnp.array([[0.5, 0.5], [1.0, 0.0]])
    got = np.asarray(chebyshev(values, weights, 0.0))
    np.testing.assert_allclose(got, [[0.4, 0.2], [0.25, 0.5]])


@pytest.fixture(scope="module")
def tiny():
    space = get_space("tiny")
    problem = Problem(space, random_mlp_objective(space, seed=0), 2)
    # Normalization bounds from a large fixed sample (the same for every algorithm).
    genes = jax.random.randint(jax.random.key(9), (20_000, len(space.gene_cardinality)), 0, 3)
    genes = genes % jnp.asarray(space.gene_cardinality)
    values, _ = jax.jit(problem.evaluate)(genes, jax.random.key(0))
    values = np.asarray(values)
    return {"space": space, "problem": problem, "lower": values.min(0), "upper": values.max(0)}


def relative_curve(tiny, name, **options):
    algorithm = make_algorithm(name, tiny["space"], 2, **options)
    _, result = run_compiled(algorithm, tiny["problem"], BUDGET, jax.random.key(0))
    counts, curve = hypervolume_curve(result, tiny["lower"], tiny["upper"])
    return result, counts, curve


@pytest.fixture(scope="module")
def random_baseline(tiny):
    return relative_curve(tiny, "random_search", batch_size=8)[2][-1]


@pytest.mark.parametrize("name", ["rsbo", "lsbo", "ehvi"])
def test_model_based_search_beats_its_initial_design_and_random_search(tiny, random_baseline,
                                                                       name):
    result, counts, curve = relative_curve(tiny, name, **OPTIONS)
    assert len(result.genes) == BUDGET
    initial = curve[counts == OPTIONS["n_initial"]][0]
    assert curve[-1] > initial
    assert curve[-1] > random_baseline
    # Proposals after the initial design are new architectures (the pool excludes seen ones).
    proposals = result.genes[OPTIONS["n_initial"]:]
    assert len(np.unique(proposals, axis=0)) == len(proposals)


def test_ehvi_needs_two_or_three_objectives(tiny):
    with pytest.raises(ValueError, match="EHVI supports 2 or 3 objectives; got 4"):
        make_algorithm("ehvi", tiny["space"], 4)


def test_hypervolume_improvement_of_a_front_member_is_zero():
    front = jnp.array([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]])
    got = pareto.hypervolume_improvement(front, front, jnp.ones(2))
    np.testing.assert_allclose(np.asarray(got), 0.0, atol=1e-7)
