"""Tests for hwgpt_jax.search.hypervolume against brute force (inclusion-exclusion, the coordinate
grid) and pymoo/moocore."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from pymoo.indicators.hv import HV

from hwgpt_jax.search import hypervolume as hv
from hwgpt_jax.search import pareto

# Oracles


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
# Exact values and errors


@pytest.mark.parametrize("n_objectives", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_hypervolume_equals_brute_force_and_pymoo(n_objectives, seed):
    rng = np.random.default_rng(seed)
    ref = np.full(n_objectives, 1.1)
    small = random_front(rng, 8, n_objectives)
    assert hv.hypervolume(small, ref) == pytest.approx(
        inclusion_exclusion_hypervolume(small, ref), rel=1e-9)
    medium = random_front(rng, 40, n_objectives)
    want = grid_hypervolume(medium, ref)
    assert hv.hypervolume(medium, ref) == pytest.approx(want, rel=1e-9)
    large = random_front(rng, 2000, n_objectives)
    assert hv.hypervolume(large, ref) == pytest.approx(HV(ref_point=ref)(large), rel=1e-9)


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_hypervolume_with_ties_and_duplicates_equals_grid(n_objectives):
    # Integer coordinates: many equal x, y and z values and duplicate points.
    points = np.random.default_rng(7).integers(0, 6, (60, n_objectives)).astype(np.float64)
    ref = np.full(n_objectives, 5.5)
    assert hv.hypervolume(points, ref) == pytest.approx(
        grid_hypervolume(points[np.all(points < ref, 1)], ref), rel=1e-12)


def test_hypervolume_handles_ties_duplicates_and_points_beyond_reference():
    points = np.array([[0.2, 0.5], [0.2, 0.5], [0.2, 0.7], [0.5, 0.2], [1.5, 0.0], [0.5, 1.0]])
    ref = np.array([1.0, 1.0])
    assert hv.hypervolume(points, ref) == pytest.approx(0.8 * 0.5 + 0.5 * 0.3, rel=1e-12)
    assert hv.hypervolume(jnp.asarray(points), ref) == pytest.approx(0.55, rel=1e-6)
    assert hv.hypervolume(np.array([[2.0, 2.0]]), ref) == 0.0
    assert hv.hypervolume(np.zeros((0, 3)), np.ones(3)) == 0.0


def test_monte_carlo_hypervolume_is_within_its_standard_error():
    points = random_front(np.random.default_rng(8), 30, 3)
    ref = np.full(3, 1.1)
    value, error = hv.hypervolume_monte_carlo(points, ref, n_samples=200_000, seed=1)
    exact = hv.hypervolume(points, ref)
    assert 0 < error < 0.01 * exact
    assert abs(value - exact) < 4 * error
    four = random_front(np.random.default_rng(9), 10, 4)
    assert hv.hypervolume(four, np.full(4, 1.1), n_samples=100_000) == pytest.approx(
        inclusion_exclusion_hypervolume(four, np.full(4, 1.1)), rel=0.02)


def test_hypervolume_rejects_bad_shapes_nan_and_infinite_reference():
    with pytest.raises(ValueError, match="ref_point must have shape"):
        hv.hypervolume(np.zeros((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="points must have shape"):
        hv.hypervolume(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        hv.hypervolume(np.full((2, 2), np.nan), np.ones(2))
    one_nan = np.random.default_rng(13).random((100, 3))
    one_nan[57, 1] = np.nan
    for n_objectives in (2, 3):
        with pytest.raises(ValueError, match="NaN"):
            hv.hypervolume(one_nan[:, :n_objectives], np.ones(n_objectives))
    with pytest.raises(ValueError, match="ref_point must be finite"):
        hv.hypervolume(np.zeros((2, 3)), [1.0, np.inf, 1.0])


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_hypervolume_improvement_equals_difference_of_exact_volumes(n_objectives):
    rng = np.random.default_rng(10)
    ref = np.full(n_objectives, 1.1)
    front = random_front(rng, 25, n_objectives)
    candidates = rng.random((30, n_objectives)) * 1.2
    got = np.asarray(hv.hypervolume_improvement(
        jnp.asarray(front), jnp.asarray(candidates), jnp.asarray(ref)))
    base = hv.hypervolume(front, ref)
    want = [hv.hypervolume(np.vstack([front, c]), ref) - base for c in candidates]
    np.testing.assert_allclose(got, want, atol=1e-5)
    padded = np.vstack([front, np.full((5, n_objectives), np.inf)])
    np.testing.assert_allclose(
        np.asarray(hv.hypervolume_improvement(padded, candidates, ref)), want, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Edge cases and the pre-filter


@pytest.mark.parametrize("n_objectives", [2, 3, 4])
def test_empty_front_and_points_outside_the_reference_box_give_zero(n_objectives):
    ref = np.ones(n_objectives)
    assert hv.hypervolume(np.zeros((0, n_objectives)), ref) == 0.0
    outside = np.full((5, n_objectives), 0.5)
    outside[np.arange(5), np.arange(5) % n_objectives] = [1.0, 1.5, 3.0, 1.0, 2.0]
    assert hv.hypervolume(outside, ref) == 0.0  # on or beyond the reference in one objective
    assert hv.hypervolume_monte_carlo(outside, ref) == (0.0, 0.0)


@pytest.mark.parametrize("n_objectives", [1, 2, 3])
def test_one_point_and_its_copies_give_its_box(n_objectives):
    point = np.array([0.25, 0.5, 0.125][:n_objectives])
    ref = np.ones(n_objectives)
    box = float(np.prod(ref - point))
    assert hv.hypervolume(point[None], ref) == pytest.approx(box, rel=1e-15)
    assert hv.hypervolume(np.repeat(point[None], 100, axis=0), ref) == pytest.approx(box,
                                                                                     rel=1e-15)
    # Points outside the box do not change it.
    beyond = np.vstack([np.repeat(point[None], 3, axis=0), ref + 1, ref])
    assert hv.hypervolume(beyond, ref) == pytest.approx(box, rel=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_3d_with_many_ties_copies_and_dominated_points_equals_grid(seed):
    # Enough points for the pivot pre-filter; a small integer grid makes equal x, y and z
    # values, copies of pivots and points dominated only through ties the common case.
    rng = np.random.default_rng(100 + seed)
    points = rng.integers(0, 4, (int(rng.integers(40, 120)), 3)).astype(np.float64)
    points = np.vstack([points, points[: len(points) // 3]])  # more exact copies
    ref = np.full(3, 3.5)
    assert hv.hypervolume(points, ref) == pytest.approx(grid_hypervolume(points, ref),
                                                        rel=1e-12)


def test_3d_cloud_with_mostly_dominated_points_equals_pymoo():
    rng = np.random.default_rng(11)
    cloud = np.vstack([rng.random((3000, 3)), random_front(rng, 200, 3)])
    ref = np.full(3, 1.1)
    assert len(hv._drop_dominated_by_pivots(cloud)) < len(cloud) // 2  # the filter works
    assert hv.hypervolume(cloud, ref) == pytest.approx(HV(ref_point=ref)(cloud), rel=1e-9)
    shuffled = cloud[rng.permutation(len(cloud))]
    assert hv.hypervolume(shuffled, ref) == pytest.approx(hv.hypervolume(cloud, ref), rel=1e-12)


def test_pivot_filter_keeps_every_non_dominated_point():
    rng = np.random.default_rng(12)
    points = np.vstack([rng.integers(0, 5, (200, 3)), rng.integers(0, 5, (10, 3))]).astype(float)
    kept = hv._drop_dominated_by_pivots(points)
    # Brute force: the points no other (different) point weakly dominates must all survive.
    weakly = np.all(points[:, None] <= points[None], axis=2) & np.any(
        points[:, None] < points[None], axis=2)
    front = {tuple(p) for p in points[~weakly.any(axis=0)]}
    assert front <= {tuple(p) for p in kept}


def test_pareto_re_exports_the_hypervolume_functions():
    assert pareto.hypervolume is hv.hypervolume
    assert pareto.hypervolume_monte_carlo is hv.hypervolume_monte_carlo
    assert pareto.hypervolume_improvement is hv.hypervolume_improvement
