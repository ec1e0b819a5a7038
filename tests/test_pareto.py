"""Tests for hwgpt_jax.pareto against NumPy references, brute force and pymoo."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymoo.indicators.hv import HV

from hwgpt_jax import pareto

# ---------------------------------------------------------------------------------------------
# NumPy references


def reference_ranks(points: np.ndarray) -> np.ndarray:
    n = len(points)
    dominates = np.array(
        [[np.all(points[i] <= points[j]) and np.any(points[i] < points[j]) for j in range(n)]
         for i in range(n)]
    ).reshape(n, n)
    ranks, remaining, front = np.full(n, -1), np.ones(n, bool), 0
    while remaining.any():
        in_front = remaining & ~np.any(dominates[remaining], axis=0)
        ranks[in_front], remaining, front = front, remaining & ~in_front, front + 1
    return ranks


def reference_crowding(points: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    distance = np.zeros(len(points))
    for front in np.unique(ranks):
        members = np.flatnonzero(ranks == front)
        for m in range(points.shape[1]):
            order = members[np.lexsort((members, points[members, m]))]
            values = points[order, m]
            spread = values[-1] - values[0]
            distance[order[0]] = distance[order[-1]] = np.inf
            for k in range(1, len(order) - 1):
                if spread > 0:
                    distance[order[k]] += (values[k + 1] - values[k - 1]) / spread
    return distance


def inclusion_exclusion_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), size):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (size + 1) * np.prod(np.clip(ref - corner, 0, None))
    return total


def grid_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Sum of the grid cells (from all coordinates) whose lower corner some point dominates."""
    axes = [np.unique(np.append(points[:, m], ref[m])) for m in range(points.shape[1])]
    axes = [a[a <= ref[m]] for m, a in enumerate(axes)]
    lower = np.stack(np.meshgrid(*[a[:-1] for a in axes], indexing="ij"), -1).reshape(
        -1, len(axes))
    sizes = np.stack(np.meshgrid(*[np.diff(a) for a in axes], indexing="ij"), -1).reshape(
        -1, len(axes))
    covered = np.any(np.all(lower[:, None, :] >= points[None, :, :], axis=-1), axis=1)
    return float(np.sum(np.prod(sizes, axis=1) * covered))


def random_front(rng, n: int, n_objectives: int) -> np.ndarray:
    """Points on the positive unit sphere (all mutually non-dominated), plus dominated ones."""
    on_front = np.abs(rng.normal(size=(n, n_objectives)))
    on_front /= np.linalg.norm(on_front, axis=1, keepdims=True)
    return np.concatenate([1 - on_front, rng.random((n // 2, n_objectives))])


# ---------------------------------------------------------------------------------------------
# Ranks, crowding, selection


@pytest.mark.parametrize("n_objectives", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_equal_numpy_reference(n_objectives, seed):
    rng = np.random.default_rng(seed)
    # Integer grids force ties and duplicate points, the hard cases of a sort-based method.
    points = rng.integers(0, 5, (80, n_objectives)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(pareto.pareto_ranks(points)), reference_ranks(points))
    continuous = rng.random((80, n_objectives)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(pareto.pareto_ranks(continuous)), reference_ranks(continuous))


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_ranks_stop_once_n_keep_points_are_ranked(n_objectives):
    points = np.random.default_rng(3).random((200, n_objectives)).astype(np.float32)
    full = reference_ranks(points)
    partial = np.asarray(pareto.pareto_ranks(points, n_keep=50))
    cut = full[np.argsort(full, kind="stable")[49]]  # the front holding the 50th point
    np.testing.assert_array_equal(partial[full <= cut], full[full <= cut])
    assert np.all(partial[full > cut] == np.iinfo(np.int32).max)


def test_constrained_ranks_put_feasible_first_then_by_violation():
    rng = np.random.default_rng(4)
    points = rng.random((60, 2)).astype(np.float32)
    violation = np.where(rng.random(60) < 0.5, 0.0, rng.integers(1, 4, 60)).astype(np.float32)
    ranks = np.asarray(pareto.pareto_ranks(points, violation=violation))
    feasible = violation == 0
    np.testing.assert_array_equal(ranks[feasible], reference_ranks(points[feasible]))
    n_fronts = reference_ranks(points[feasible]).max() + 1
    expected = n_fronts + np.searchsorted(np.unique(violation[~feasible]), violation[~feasible])
    np.testing.assert_array_equal(ranks[~feasible], expected)


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_crowding_distance_equals_numpy_reference(n_objectives):
    points = np.random.default_rng(5).random((120, n_objectives))
    ranks = reference_ranks(points)
    got = np.asarray(pareto.crowding_distance(jnp.asarray(points, jnp.float32), ranks))
    want = reference_crowding(points.astype(np.float32).astype(np.float64), ranks)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-5)


def test_nsga2_select_takes_best_fronts_then_least_crowded():
    points = np.random.default_rng(6).random((300, 2)).astype(np.float32)
    chosen = np.asarray(pareto.nsga2_select(points, 100))
    ranks = reference_ranks(points)
    crowd = reference_crowding(points.astype(np.float64), ranks)
    want = np.lexsort((np.arange(300), -crowd, ranks))[:100]
    assert len(set(chosen.tolist())) == 100
    # Same chosen set (ties in crowding within the cut front could be broken differently).
    cut = ranks[want].max()
    assert set(chosen[ranks[chosen] < cut]) == set(want[ranks[want] < cut])
    np.testing.assert_allclose(np.sort(crowd[chosen[ranks[chosen] == cut]]),
                               np.sort(crowd[want[ranks[want] == cut]]), rtol=1e-5)


def test_ranks_and_selection_are_jittable():
    points = jax.random.uniform(jax.random.key(0), (64, 2))
    ranks = jax.jit(pareto.pareto_ranks, static_argnames="n_keep")(points, n_keep=32)
    np.testing.assert_array_equal(np.asarray(ranks), np.asarray(pareto.pareto_ranks(points, 32)))
    chosen = jax.jit(pareto.nsga2_select, static_argnums=1)(points, 32)
    assert chosen.shape == (32,)


# ---------------------------------------------------------------------------------------------
# Hypervolume


@pytest.mark.parametrize("n_objectives", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_hypervolume_equals_brute_force_and_pymoo(n_objectives, seed):
    rng = np.random.default_rng(seed)
    ref = np.full(n_objectives, 1.1)
    small = random_front(rng, 8, n_objectives)
    assert pareto.hypervolume(small, ref) == pytest.approx(
        inclusion_exclusion_hypervolume(small, ref), rel=1e-9)
    medium = random_front(rng, 40, n_objectives)
    want = grid_hypervolume(medium, ref)
    assert pareto.hypervolume(medium, ref) == pytest.approx(want, rel=1e-9)
    large = random_front(rng, 2000, n_objectives)
    assert pareto.hypervolume(large, ref) == pytest.approx(HV(ref_point=ref)(large), rel=1e-9)


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_hypervolume_with_ties_and_duplicates_equals_grid(n_objectives):
    # Integer coordinates: many equal x, y and z values and duplicate points.
    points = np.random.default_rng(7).integers(0, 6, (60, n_objectives)).astype(np.float64)
    ref = np.full(n_objectives, 5.5)
    assert pareto.hypervolume(points, ref) == pytest.approx(
        grid_hypervolume(points[np.all(points < ref, 1)], ref), rel=1e-12)


def test_hypervolume_handles_ties_duplicates_and_points_beyond_reference():
    points = np.array([[0.2, 0.5], [0.2, 0.5], [0.2, 0.7], [0.5, 0.2], [1.5, 0.0], [0.5, 1.0]])
    ref = np.array([1.0, 1.0])
    assert pareto.hypervolume(points, ref) == pytest.approx(0.8 * 0.5 + 0.5 * 0.3, rel=1e-12)
    assert pareto.hypervolume(jnp.asarray(points), ref) == pytest.approx(0.55, rel=1e-6)
    assert pareto.hypervolume(np.array([[2.0, 2.0]]), ref) == 0.0
    assert pareto.hypervolume(np.zeros((0, 3)), np.ones(3)) == 0.0


def test_monte_carlo_hypervolume_is_within_its_standard_error():
    points = random_front(np.random.default_rng(8), 30, 3)
    ref = np.full(3, 1.1)
    value, error = pareto.hypervolume_monte_carlo(points, ref, n_samples=200_000, seed=1)
    exact = pareto.hypervolume(points, ref)
    assert 0 < error < 0.01 * exact
    assert abs(value - exact) < 4 * error
    four = random_front(np.random.default_rng(9), 10, 4)
    assert pareto.hypervolume(four, np.full(4, 1.1), n_samples=100_000) == pytest.approx(
        inclusion_exclusion_hypervolume(four, np.full(4, 1.1)), rel=0.02)


def test_hypervolume_rejects_bad_shapes():
    with pytest.raises(ValueError, match="ref_point must have shape"):
        pareto.hypervolume(np.zeros((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="points must have shape"):
        pareto.hypervolume(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        pareto.hypervolume(np.full((2, 2), np.nan), np.ones(2))


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_hypervolume_improvement_equals_difference_of_exact_volumes(n_objectives):
    rng = np.random.default_rng(10)
    ref = np.full(n_objectives, 1.1)
    front = random_front(rng, 25, n_objectives)
    candidates = rng.random((30, n_objectives)) * 1.2
    got = np.asarray(pareto.hypervolume_improvement(
        jnp.asarray(front), jnp.asarray(candidates), jnp.asarray(ref)))
    base = pareto.hypervolume(front, ref)
    want = [pareto.hypervolume(np.vstack([front, c]), ref) - base for c in candidates]
    np.testing.assert_allclose(got, want, atol=1e-5)
    padded = np.vstack([front, np.full((5, n_objectives), np.inf)])
    np.testing.assert_allclose(
        np.asarray(pareto.hypervolume_improvement(padded, candidates, ref)), want, atol=1e-5)


def test_normalize_objectives_maps_bounds_to_unit_interval():
    lower, upper = np.array([1.0, 10.0]), np.array([3.0, 30.0])
    values = np.array([[1.0, 10.0], [3.0, 30.0], [2.0, 20.0]])
    np.testing.assert_allclose(pareto.normalize_objectives(values, lower, upper),
                               [[0, 0], [1, 1], [0.5, 0.5]])
    assert isinstance(pareto.normalize_objectives(jnp.asarray(values), lower, upper), jax.Array)
    with pytest.raises(ValueError, match="upper > lower"):
        pareto.normalize_objectives(values, upper, lower)
