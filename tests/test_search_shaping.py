"""Multi-objective fitness shaping against brute-force NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracles import reference_crowding, reference_ranks

from hwgpt_jax.search import shaping
from hwgpt_jax.search.hypervolume import hypervolume


def _order_matches(shaped: np.ndarray, *keys: np.ndarray) -> None:
    """shaped is the centered rank of the lexicographic keys (ties by index)."""
    expected = np.lexsort(tuple(reversed(keys)) if keys else ())
    np.testing.assert_array_equal(np.argsort(shaped, kind="stable"), expected)
    np.testing.assert_allclose(np.sort(shaped), np.linspace(-0.5, 0.5, len(shaped)), atol=1e-6)


def _random_problem(seed: int, n: int = 24, m: int = 2, constrained: bool = False):
    rng = np.random.default_rng(seed)
    objectives = rng.integers(0, 6, (n, m)).astype(np.float32)  # ties and copies on purpose
    violation = np.zeros(n, np.float32)
    if constrained:
        violation = np.where(rng.random(n) < 0.3, rng.integers(1, 4, n), 0).astype(np.float32)
    return objectives, violation


@pytest.mark.parametrize("seed, m, constrained", [(0, 2, False), (1, 3, False), (2, 2, True),
                                                  (3, 3, True)])
def test_nsga2_shaping_orders_by_rank_then_crowding(seed, m, constrained):
    objectives, violation = _random_problem(seed, m=m, constrained=constrained)
    ranks = reference_ranks(objectives, violation)
    rank_jax, crowd_jax = shaping.nsga2_ranks_crowding(jnp.asarray(objectives),
                                                       jnp.asarray(violation))
    # Constrained ranks are renumbered densely in JAX; compare the order they induce.
    np.testing.assert_array_equal(np.unique(ranks, return_inverse=True)[1],
                                  np.unique(np.asarray(rank_jax), return_inverse=True)[1])
    feasible = violation <= 0
    crowding = reference_crowding(objectives, ranks)
    np.testing.assert_allclose(np.asarray(crowd_jax)[feasible], crowding[feasible], rtol=1e-5)
    shaped = np.asarray(shaping.nsga2_shaping(jax.random.key(0), jnp.asarray(objectives),
                                              jnp.asarray(violation)))
    _order_matches(shaped, ranks, -np.asarray(crowd_jax))


def _contributions(points: np.ndarray, ranks: np.ndarray, reference: float) -> np.ndarray:
    """Leave-one-out exclusive hypervolume within each front, by the exact NumPy HV."""
    ref = np.full(points.shape[1], reference)
    out = np.zeros(len(points))
    for i in range(len(points)):
        front = points[ranks == ranks[i]]
        others = points[(ranks == ranks[i]) & (np.arange(len(points)) != i)]
        out[i] = hypervolume(front, ref) - (hypervolume(others, ref) if len(others) else 0.0)
    return out


@pytest.mark.parametrize("seed, m, n", [(4, 2, 20), (5, 3, 20), (6, 3, 40)])
def test_hv_shaping_orders_by_rank_then_contribution(seed, m, n):
    rng = np.random.default_rng(seed)
    objectives = rng.random((n, m)).astype(np.float32)
    objectives[3] = objectives[7]  # a copy: neither adds exclusive volume
    violation = np.zeros(n, np.float32)
    ranks = reference_ranks(objectives, violation)
    low, high = objectives.min(0), objectives.max(0)
    normalized = (objectives - low) / (high - low)
    expected = _contributions(normalized.astype(np.float64), ranks, shaping.HV_REFERENCE)
    contribute = shaping._contributions_2d if m == 2 else shaping._contributions_3d
    got = contribute(jnp.asarray(normalized), jnp.asarray(ranks), shaping.HV_REFERENCE)
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
    assert expected[3] == expected[7] == 0.0 or ranks[3] != 0
    shaped = np.asarray(shaping.hv_shaping(jax.random.key(0), jnp.asarray(objectives),
                                           jnp.asarray(violation)))
    assert np.all(np.diff(ranks[np.argsort(shaped)]) >= 0)  # fronts in order
    front = np.flatnonzero(ranks == 0)
    by_shaping = front[np.argsort(shaped[front])]  # the first front by decreasing contribution
    assert np.all(np.diff(expected[by_shaping]) <= 1e-5)


def _grid_contributions(points: np.ndarray, reference: float) -> np.ndarray:
    """Exact exclusive hypervolume of points on a grid: sum over the grid cells (between
    consecutive coordinates and the reference) dominated by exactly one point."""
    edges = [np.unique(np.append(points[:, d], reference)) for d in range(points.shape[1])]
    contribution = np.zeros(len(points))
    for cell in np.ndindex(*[len(e) - 1 for e in edges]):
        low = np.array([e[i] for e, i in zip(edges, cell)])
        volume = np.prod([e[i + 1] - e[i] for e, i in zip(edges, cell)])
        owners = np.flatnonzero(np.all(points <= low, axis=1))
        if len(owners) == 1:
            contribution[owners[0]] += volume
    return contribution


def test_hv_shaping_estimates_four_objective_contributions_by_monte_carlo():
    rng = np.random.default_rng(0)
    points = rng.integers(0, 4, (12, 4)).astype(np.float32) / 3  # already in [0, 1]
    ranks = np.asarray(shaping.pareto_ranks(jnp.asarray(points)))
    exact = np.zeros(len(points))
    for rank in np.unique(ranks):
        front = ranks == rank
        exact[front] = _grid_contributions(points[front], shaping.HV_REFERENCE)
    estimate = np.asarray(shaping._contributions_monte_carlo(
        jax.random.key(1), jnp.asarray(points), jnp.asarray(ranks), shaping.HV_REFERENCE,
        int(ranks.max()) + 1, n_samples=2**17))
    np.testing.assert_allclose(estimate, exact, atol=0.02)  # box volume 1.46, std ~0.005
    shaped = np.asarray(shaping.hv_shaping(jax.random.key(2), jnp.asarray(points),
                                           jnp.zeros(12)))
    assert np.all(np.diff(ranks[np.argsort(shaped)]) >= 0)  # fronts in order
    assert not shaping.hv_is_exact(4) and shaping.hv_is_exact(3)


def test_chebyshev_shaping_matches_reference_and_draws_fresh_weights():
    objectives, violation = _random_problem(6, m=3, constrained=True)
    key = jax.random.key(3)
    weights = np.asarray(shaping.chebyshev_weights(key, 3))
    assert np.all(weights > 0) and np.isclose(weights.sum(), 1.0)
    feasible = violation <= 0
    low, high = objectives[feasible].min(0), objectives[feasible].max(0)
    values = np.max(weights * (objectives - low) / np.where(high > low, high - low, 1), axis=1)
    got = np.asarray(shaping.chebyshev_values(jnp.asarray(objectives), jnp.asarray(violation),
                                              jnp.asarray(weights)))
    np.testing.assert_allclose(got, values, rtol=1e-5, atol=1e-6)
    shaped = np.asarray(shaping.chebyshev_shaping(key, jnp.asarray(objectives),
                                                  jnp.asarray(violation)))
    _order_matches(shaped, (~feasible).astype(int), np.where(feasible, 0, violation), got)
    other = np.asarray(shaping.chebyshev_weights(jax.random.key(4), 3))
    assert not np.allclose(weights, other)


def test_unknown_shaping_lists_choices():
    with pytest.raises(ValueError, match=r"unknown shaping 'pareto'.*chebyshev.*hv.*nsga2"):
        shaping.get_shaping("pareto")
