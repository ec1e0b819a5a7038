"""Tests for hwgpt_jax.search.pareto against NumPy references and brute force (hypervolume: see
test_hypervolume.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracles import reference_crowding, reference_ranks

from hwgpt_jax.base.batching import padded_rows
from hwgpt_jax.search import pareto

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
def test_non_dominated_mask_equals_brute_force_at_padded_sizes(n_objectives):
    """The mask pads to `padded_rows` rows; the padding changes no point's membership, and
    sizes in one bucket share one compiled program."""
    rng = np.random.default_rng(6)
    for n in (1, 5, 64, 65, 100, 600):
        points = rng.integers(0, 6, (n, n_objectives)).astype(np.float32)  # ties, copies
        points[rng.random(n) < 0.05] = np.inf  # failed measurements count as worst
        violation = np.where(rng.random(n) < 0.7, 0.0, rng.random(n)).astype(np.float32)
        for given in (None, violation):
            feasible = np.ones(n, bool) if given is None else given <= 0
            p = points[feasible]
            dominated = np.any(np.all(p[:, None] <= p[None], -1) & np.any(p[:, None] < p[None], -1),
                               axis=0)
            want = np.zeros(n, bool)
            want[np.flatnonzero(feasible)[~dominated]] = True
            got = np.asarray(pareto.non_dominated_mask(points, given))
            np.testing.assert_array_equal(got, want, err_msg=f"n={n} violation={given is not None}")
        assert n <= padded_rows(n) <= max(64, 2 * n) and padded_rows(n) <= 1.125 * n + 64
    compiled = pareto.pareto_ranks._cache_size()
    pareto.non_dominated_mask(rng.random((70, n_objectives)))
    pareto.non_dominated_mask(rng.random((120, n_objectives)))  # same 128-row bucket as 65, 100
    assert pareto.pareto_ranks._cache_size() == compiled


@pytest.mark.parametrize("n_objectives", [2, 3])
def test_crowding_distance_equals_numpy_reference(n_objectives):
    points = np.random.default_rng(5).random((120, n_objectives))
    ranks = reference_ranks(points)
    got = np.asarray(pareto.crowding_distance(jnp.asarray(points, jnp.float32), ranks))
    want = reference_crowding(points.astype(np.float32).astype(np.float64), ranks)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-5)


def test_nsga2_survival_takes_best_fronts_then_least_crowded():
    points = np.random.default_rng(6).random((300, 2)).astype(np.float32)
    chosen = np.asarray(pareto.nsga2_survival(points, 100)[0])
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
    chosen, _, _ = jax.jit(pareto.nsga2_survival, static_argnums=1)(points, 32)
    assert chosen.shape == (32,)


# ---------------------------------------------------------------------------------------------
# Normalization


def test_normalize_objectives_maps_bounds_to_unit_interval():
    lower, upper = np.array([1.0, 10.0]), np.array([3.0, 30.0])
    values = np.array([[1.0, 10.0], [3.0, 30.0], [2.0, 20.0]])
    np.testing.assert_allclose(pareto.normalize_objectives(values, lower, upper),
                               [[0, 0], [1, 1], [0.5, 0.5]])
    assert isinstance(pareto.normalize_objectives(jnp.asarray(values), lower, upper), jax.Array)
    with pytest.raises(ValueError, match="upper > lower"):
        pareto.normalize_objectives(values, upper, lower)
