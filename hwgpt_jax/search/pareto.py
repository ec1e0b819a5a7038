"""Pareto tools: non-dominated sorting, crowding distance, NSGA-II selection, hypervolume.

All objectives are minimized. Sorting and selection are JAX (jit-able, fixed shapes).

- Non-dominated sorting and crowding distance: Deb et al., "A fast and elitist multiobjective
  genetic algorithm: NSGA-II", IEEE TEVC 2002. For two objectives the fronts are peeled with a
  sort and two prefix minima per front (O(N) per front after one O(N log N) sort), in the
  spirit of Jensen, "Reducing the run-time complexity of multiobjective EAs", IEEE TEVC 2003.
  Peeling stops once `n_keep` points are ranked, since NSGA-II never looks further.
- Constrained domination: Deb 2002, section V (feasible before infeasible; infeasible ordered
  by total violation).
- Hypervolume lives in `hwgpt_jax.search.hypervolume` (exact 2-D/3-D, Monte-Carlo beyond, the JAX
  improvement for EHVI); its public functions are re-exported here.
- Normalization as HW-GPT-Bench (Sukthanker et al., arXiv 2405.10299): min-max between the
  objective values of the smallest and the largest architecture.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hwgpt_jax.base.batching import padded_rows

# Re-exported, so `from hwgpt_jax.search.pareto import hypervolume` keeps working.
from hwgpt_jax.search.hypervolume import (  # noqa: F401
    hypervolume,
    hypervolume_improvement,
    hypervolume_monte_carlo,
)

_UNRANKED = np.iinfo(np.int32).max
_MAX_PACKED = 2**15  # up to this many points, (key, index) pairs pack into one int32
_BLOCK_ELEMENTS = 2**22  # elements of one (block, N, M) domination comparison


def _sort_key(values: jax.Array) -> jax.Array:
    """int32 keys with the order of the float32 values (XLA sorts int32 much faster on CPU)."""
    bits = jax.lax.bitcast_convert_type(values.astype(jnp.float32) + 0.0, jnp.int32)  # -0 -> +0
    return jnp.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _argsort(values: jax.Array) -> jax.Array:
    """Stable argsort of a float vector (ties by index), as two single-operand int32 sorts."""
    n = values.shape[0]
    if n > _MAX_PACKED:
        return jnp.argsort(values, stable=True).astype(jnp.int32)
    bits = max(1, (n - 1).bit_length())
    keys = _sort_key(values)
    value_rank = jnp.searchsorted(jax.lax.sort(keys), keys, method="scan_unrolled")
    packed = (value_rank.astype(jnp.int32) << bits) | jnp.arange(n, dtype=jnp.int32)
    return jax.lax.sort(packed) & ((1 << bits) - 1)


def _group_sort(groups: jax.Array, position: jax.Array) -> jax.Array:
    """Permutation ordering points by (group, position); both int32 in [0, n]."""
    n = groups.shape[0]
    bits = max(1, n.bit_length())
    if 2 * bits > 31:
        return jnp.lexsort((position, groups)).astype(jnp.int32)
    order_of_position = jnp.zeros((n,), jnp.int32).at[position].set(jnp.arange(n, dtype=jnp.int32))
    packed = (jnp.minimum(groups, n) << bits) | position
    return order_of_position[jax.lax.sort(packed) & ((1 << bits) - 1)]


def _dominates(block: jax.Array, objectives: jax.Array) -> jax.Array:
    """D[i, j] = block point i dominates point j (minimization), shape (B, N)."""
    less_equal = jnp.all(block[:, None, :] <= objectives[None, :, :], axis=-1)
    less = jnp.any(block[:, None, :] < objectives[None, :, :], axis=-1)
    return less_equal & less


def dominance_chunk(n: int, n_objectives: int) -> int:
    """Rows per block of the chunked domination test: a (block, N, M) comparison stays
    near `_BLOCK_ELEMENTS` elements, so memory is O(N) whatever the population."""
    return int(max(1, min(n, 256, _BLOCK_ELEMENTS // max(1, n * n_objectives))))


def _ranks_2d(objectives: jax.Array, n_keep: int, orders: list[jax.Array]) -> jax.Array:
    """Fronts of 2-D points; `orders` holds a permutation sorting each objective."""
    n = objectives.shape[0]
    # Lexicographic order (f1, f2): f1's tie groups, ordered within by position in f2's order.
    f1_sorted = objectives[orders[0], 0]
    new_group = jnp.concatenate([jnp.array([True]), f1_sorted[1:] != f1_sorted[:-1]])
    f1_group = jnp.zeros((n,), jnp.int32).at[orders[0]].set(jnp.cumsum(new_group) - 1)
    f2_position = jnp.zeros((n,), jnp.int32).at[orders[1]].set(jnp.arange(n, dtype=jnp.int32))
    order = _group_sort(f1_group, f2_position)
    f1, f2 = objectives[order, 0], objectives[order, 1]
    position = jnp.arange(n)
    group_start = jax.lax.cummax(
        jnp.where(jnp.concatenate([jnp.array([True]), f1[1:] != f1[:-1]]), position, 0))
    inf = jnp.array(jnp.inf, f2.dtype)

    def peel(carry):
        ranks, front = carry
        remaining_f2 = jnp.where(ranks == _UNRANKED, f2, inf)
        prefix_min = jax.lax.associative_scan(jnp.minimum, remaining_f2)  # cummin is slower
        before = jnp.concatenate([inf[None], prefix_min[:-1]])
        # Earlier groups have strictly smaller f1: j dominates i iff f2_j <= f2_i. Earlier
        # points of i's own group have equal f1 and f2_j <= f2_i: they dominate iff f2_j < f2_i.
        before_group = jnp.where(group_start > 0, prefix_min[jnp.maximum(group_start - 1, 0)], inf)
        dominated = (before_group <= f2) | (before < f2)
        in_front = (ranks == _UNRANKED) & ~dominated
        return jnp.where(in_front, front, ranks), front + 1

    def keep_going(carry):
        n_ranked = jnp.sum(carry[0] != _UNRANKED)
        return (n_ranked < n_keep) & (n_ranked < n)

    sorted_ranks, _ = jax.lax.while_loop(
        keep_going, peel, (jnp.full((n,), _UNRANKED, jnp.int32), jnp.int32(0))
    )
    return jnp.zeros((n,), jnp.int32).at[order].set(sorted_ranks)


def _ranks_chunked(objectives: jax.Array, n_keep: int) -> jax.Array:
    """Fronts of M-D points by Deb's dominator counting, without the (N, N) matrix.

    One pass over all points (in blocks of `dominance_chunk` rows) counts each point's
    dominators; each peeled front then subtracts what its own members dominate, again in
    blocks. Every point is a dominator exactly once, so the total work is O(N^2 M) as with
    the dense matrix, but memory is O(block * N) (a population of 65,536 would need 17 GB
    for the matrix).
    """
    n, n_objectives = objectives.shape
    chunk = dominance_chunk(n, n_objectives)
    padded = jnp.concatenate([objectives, jnp.full((1, n_objectives), jnp.inf, objectives.dtype)])

    def subtract(counts, members, n_members):  # members: (n + chunk,) indices, n = padding
        def block(b, counts):
            index = jax.lax.dynamic_slice(members, (b * chunk,), (chunk,))
            dominated = _dominates(padded[index], objectives) & (index < n)[:, None]
            return counts - jnp.sum(dominated, axis=0, dtype=jnp.int32)
        return jax.lax.fori_loop(0, (n_members + chunk - 1) // chunk, block, counts)

    everyone = jnp.concatenate([jnp.arange(n, dtype=jnp.int32), jnp.full((chunk,), n, jnp.int32)])
    n_dominators = -subtract(jnp.zeros((n,), jnp.int32), everyone, n)

    def peel(carry):
        ranks, counts, front = carry
        in_front = (counts == 0) & (ranks == _UNRANKED)
        members = jnp.nonzero(in_front, size=n + chunk, fill_value=n)[0].astype(jnp.int32)
        counts = subtract(counts, members, jnp.sum(in_front, dtype=jnp.int32))
        return jnp.where(in_front, front, ranks), counts, front + 1

    def keep_going(carry):
        n_ranked = jnp.sum(carry[0] != _UNRANKED)
        return (n_ranked < n_keep) & (n_ranked < n)

    ranks, _, _ = jax.lax.while_loop(
        keep_going, peel, (jnp.full((n,), _UNRANKED, jnp.int32), n_dominators, jnp.int32(0))
    )
    return ranks


def _prepare_objectives(objectives, violation):
    objectives = jnp.asarray(objectives)
    if objectives.ndim != 2:
        raise ValueError(f"objectives must have shape (N, M); got {objectives.shape}")
    objectives = objectives.astype(jnp.promote_types(objectives.dtype, jnp.float32))
    # +inf marks removed points inside the sort, so real values are kept finite (NaN and
    # +inf count as the worst finite value).
    big = jnp.finfo(objectives.dtype).max
    objectives = jnp.nan_to_num(objectives, nan=big, posinf=big, neginf=-big)
    if violation is not None:
        # Infeasible points go behind every feasible one, then are ranked by violation.
        objectives = jnp.where((jnp.asarray(violation) <= 0)[:, None], objectives, big)
    return objectives


def _pareto_ranks(objectives, n_keep, violation, orders):
    n, n_objectives = objectives.shape
    if n_objectives == 1:
        ranks = jnp.unique(objectives[:, 0], size=n, return_inverse=True)[1].reshape(n)
        ranks = ranks.astype(jnp.int32)
    elif n_objectives == 2:
        if orders is None:
            orders = [_argsort(objectives[:, 0]), _argsort(objectives[:, 1])]
        ranks = _ranks_2d(objectives, n_keep, orders)
    else:
        ranks = _ranks_chunked(objectives, n_keep)
    if violation is None:
        return ranks
    violation = jnp.asarray(violation)
    feasible = violation <= 0
    n_feasible_fronts = jnp.max(jnp.where(feasible & (ranks != _UNRANKED), ranks + 1, 0))
    violation_rank = jnp.unique(violation, size=n, return_inverse=True)[1].reshape(n)
    violation_rank = violation_rank - jnp.min(jnp.where(feasible, n, violation_rank))
    return jnp.where(feasible, ranks, n_feasible_fronts + violation_rank).astype(jnp.int32)


@partial(jax.jit, static_argnames="n_keep")
def pareto_ranks(
    objectives: jax.Array, n_keep: int | None = None, violation: jax.Array | None = None
) -> jax.Array:
    """Non-dominated front index of each point (0 = Pareto front), minimization.

    Args:
      objectives: (N, M) objective values.
      n_keep: stop peeling fronts once at least this many points are ranked; the rest get
        rank `2**31 - 1`. Default: rank every point.
      violation: optional (N,) total constraint violation (0 = feasible). Constrained
        domination: infeasible points rank after every feasible front, one rank per distinct
        violation value, in increasing violation.
    Returns:
      (N,) int32 ranks.
    """
    prepared = _prepare_objectives(objectives, violation)
    n_keep = prepared.shape[0] if n_keep is None else n_keep
    return _pareto_ranks(prepared, n_keep, violation, None)


def non_dominated_mask(objectives: jax.Array, violation: jax.Array | None = None) -> jax.Array:
    """(N,) bool: the point is on the (feasible, if `violation` given) Pareto front. Computed
    over `padded_rows(N)` rows, so that fronts of nearby sizes share one compiled program."""
    objectives = jnp.asarray(objectives)
    if objectives.ndim != 2:
        raise ValueError(f"objectives must have shape (N, M); got {objectives.shape}")
    objectives = objectives.astype(jnp.promote_types(objectives.dtype, jnp.float32))
    n, pad = objectives.shape[0], padded_rows(objectives.shape[0]) - objectives.shape[0]
    # Padding rows are +inf (infeasible too): they rank behind every point and dominate none.
    objectives = jnp.pad(objectives, ((0, pad), (0, 0)), constant_values=jnp.inf)
    padded = None if violation is None else jnp.pad(
        jnp.asarray(violation, objectives.dtype), (0, pad), constant_values=jnp.inf)
    ranks = pareto_ranks(objectives, n_keep=1, violation=padded)[:n]
    if violation is None:
        return ranks == 0
    return (ranks == 0) & (jnp.asarray(violation) <= 0)


def _crowding(objectives, ranks, orders):
    n, n_objectives = objectives.shape
    distance = jnp.zeros((n,), objectives.dtype)
    groups = jnp.minimum(ranks, n)
    index = jnp.arange(n)
    for m in range(n_objectives):
        position = jnp.zeros((n,), jnp.int32).at[orders[m]].set(index.astype(jnp.int32))
        order = _group_sort(groups, position)  # by (rank, value, index)
        sorted_rank, sorted_value = groups[order], objectives[order, m]
        first = jnp.concatenate([jnp.array([True]), sorted_rank[1:] != sorted_rank[:-1]])
        last = jnp.concatenate([sorted_rank[1:] != sorted_rank[:-1], jnp.array([True])])
        front_start = jax.lax.cummax(jnp.where(first, index, 0))
        front_end = jax.lax.cummin(jnp.where(last, index, n), reverse=True)
        spread = sorted_value[front_end] - sorted_value[front_start]
        previous = jnp.concatenate([sorted_value[:1], sorted_value[:-1]])
        following = jnp.concatenate([sorted_value[1:], sorted_value[-1:]])
        gap = jnp.where(spread > 0, (following - previous) / jnp.where(spread > 0, spread, 1), 0)
        gap = jnp.where(first | last, jnp.inf, gap)
        distance = distance.at[order].add(gap)
    return distance


@jax.jit
def crowding_distance(objectives: jax.Array, ranks: jax.Array) -> jax.Array:
    """NSGA-II crowding distance of each point within its front.

    Per objective, the points of a front are sorted (ties by index); boundary points get
    +inf, interior points the gap between their neighbours divided by the front's range of
    that objective. Distances add over objectives. A front whose range is 0 adds 0.
    """
    objectives = jnp.asarray(objectives)
    objectives = objectives.astype(jnp.promote_types(objectives.dtype, jnp.float32))
    orders = [_argsort(objectives[:, m]) for m in range(objectives.shape[1])]
    return _crowding(objectives, jnp.asarray(ranks), orders)


@partial(jax.jit, static_argnames="n_keep")
def ranks_and_crowding(objectives: jax.Array, n_keep: int | None = None,
                       violation: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(`pareto_ranks`, `crowding_distance`) in one pass: the per-objective sorts are shared."""
    prepared = _prepare_objectives(objectives, violation)
    n_keep = prepared.shape[0] if n_keep is None else n_keep
    orders = [_argsort(prepared[:, m]) for m in range(prepared.shape[1])]
    ranks = _pareto_ranks(prepared, n_keep, violation, orders)
    return ranks, _crowding(prepared, ranks, orders)


@partial(jax.jit, static_argnames="n_survivors")
def nsga2_survival(
    objectives: jax.Array, n_survivors: int, violation: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """NSGA-II (mu + lambda) survival: the `n_survivors` best points by rank, then crowding.

    Whole fronts are kept while they fit; the front that does not fit keeps its points of
    largest crowding distance (ties by index).

    Returns:
      (indices (n_survivors,) int32 in increasing order, ranks (N,), crowding (N,)). The
      survivors' ranks are also their ranks among the survivors (only the last front is
      cut); their crowding is the one computed for the selection, as in Deb et al. 2002.
    """
    prepared = _prepare_objectives(objectives, violation)
    n = prepared.shape[0]
    if not 1 <= n_survivors <= n:
        raise ValueError(f"n_survivors must be in [1, {n}]; got {n_survivors}")
    orders = [_argsort(prepared[:, m]) for m in range(prepared.shape[1])]
    ranks = _pareto_ranks(prepared, n_survivors, violation, orders)
    crowding = _crowding(prepared, ranks, orders)
    counts = jnp.cumsum(jnp.bincount(jnp.minimum(ranks, n), length=n + 1))
    cut = jnp.searchsorted(counts, n_survivors).astype(jnp.int32)  # front that overflows
    n_missing = n_survivors - jnp.where(cut > 0, counts[jnp.maximum(cut - 1, 0)], 0)
    in_cut = ranks == cut
    keys = jnp.where(in_cut, _sort_key(crowding), jnp.iinfo(jnp.int32).min)
    threshold = jax.lax.sort(keys)[n - n_missing]  # n_missing-th largest crowding key
    above = in_cut & (keys > threshold)
    tied = in_cut & (keys == threshold)
    take_tied = tied & (jnp.cumsum(tied) <= n_missing - jnp.sum(above))
    chosen = (ranks < cut) | above | take_tied
    return jnp.nonzero(chosen, size=n_survivors)[0].astype(jnp.int32), ranks, crowding


# ---------------------------------------------------------------------------------------------
# Normalization


def normalize_objectives(values, lower, upper):
    """Min-max scale objective values: (values - lower) / (upper - lower), per objective.

    HW-GPT-Bench takes `lower`/`upper` as the per-objective min/max over the smallest and
    the largest architecture (see `normalization_bounds`). NumPy in -> NumPy out, JAX -> JAX.
    """
    xp = jnp if isinstance(values, jax.Array) else np
    lower, upper = xp.asarray(lower), xp.asarray(upper)
    span = upper - lower
    if not isinstance(values, jax.Array) and np.any(np.asarray(span) <= 0):
        raise ValueError(f"normalization needs upper > lower per objective; got {lower}, {upper}")
    return (values - lower) / span


def normalization_bounds(objective_fn, space, key: jax.Array | None = None):
    """(lower, upper), each (M,), from the smallest and the largest architecture of `space`.

    `objective_fn(arch, key) -> (N, M)`; an objective equal on both architectures (a
    constant) would give a zero span, so it is widened to 1 around that value.
    """
    from hwgpt_jax.space.arch import Arch  # local: pareto.py has no other dependency on space

    key = jax.random.key(0) if key is None else key
    extremes = Arch.concatenate(
        [jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], arch)
         for arch in (space.smallest(), space.largest())]
    )
    values = np.asarray(objective_fn(extremes, key), dtype=np.float64)
    lower, upper = values.min(axis=0), values.max(axis=0)
    constant = upper <= lower
    return np.where(constant, lower - 0.5, lower), np.where(constant, upper + 0.5, upper)
