"""Hypervolume: exact for 2 and 3 objectives (float64 NumPy), Monte-Carlo beyond, and the
exclusive improvement of candidates over a front in JAX (for EHVI). All objectives minimized.

- 2-D: one sort and a prefix minimum (the staircase), fully vectorized.
- 3-D: the dimension sweep of Beume, Fonseca, Lopez-Ibanez, Paquete & Vahrenhold, "On the
  complexity of computing the hypervolume indicator", IEEE TEVC 2009 (HV3D of Fonseca,
  Paquete & Lopez-Ibanez, CEC 2006): points in increasing z, a 2-D staircase of the points
  seen so far kept sorted by x, and each point's exclusive area on arrival; O(n log n) search
  and each point removed from the staircase at most once. The loop is Python (its speed against
  moocore: docs/performance.md); everything around it is vectorized: a cheap pre-filter drops
  points that one of a few pivot points dominates, and the volume is one dot product of each
  point's exclusive area with its height ref_z - z.
- 4+ objectives: Monte-Carlo sampling with its standard error (Bader & Zitzler, "HypE",
  Evolutionary Computation 2011).
- Improvement (2-D/3-D, JAX): a sum over the cells of the front's coordinate grid.
"""

from __future__ import annotations

import bisect
import math

import jax
import jax.numpy as jnp
import numpy as np

_N_PIVOTS = 8  # pivots of the dominance pre-filter (3-D)


def _prepare(points, ref_point) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=np.float64)
    ref_point = np.asarray(ref_point, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must have shape (N, M); got {points.shape}")
    if ref_point.shape != (points.shape[1],):
        raise ValueError(
            f"ref_point must have shape ({points.shape[1]},) to match points; got "
            f"{ref_point.shape}"
        )
    if not all(map(math.isfinite, ref_point.tolist())):
        raise ValueError(f"ref_point must be finite; got {ref_point}")
    # Only points strictly better than the reference point in every objective add volume.
    # (Column by column: NumPy reductions over a short last axis are ~10x slower.)
    inside = points[:, 0] < ref_point[0]
    for m in range(1, len(ref_point)):
        inside &= points[:, m] < ref_point[m]
    if inside.all():
        return points, ref_point
    if np.isnan(points).any():  # NaN compares False, so only a point left out can hold one
        raise ValueError("points must not contain NaN")
    return points[inside], ref_point


def _drop_dominated_by_pivots(points: np.ndarray) -> np.ndarray:
    """Points minus those weakly dominated by one of a few pivots (exact, vectorized).

    Pivots are taken in increasing coordinate sum (the first is on the Pareto front). In a
    cloud of evaluated archs a handful of them dominate most points; on a front the first
    removes almost nothing and the filter stops, so it costs a few vector operations. Copies
    of a pivot go too (they add no volume); the pivots themselves stay.
    """
    n = len(points)
    if n <= 4 * _N_PIVOTS:
        return points
    columns = [points[:, m] for m in range(points.shape[1])]
    total = columns[0] + columns[1]  # not .sum(axis=1): slow on a short axis
    for column in columns[2:]:
        total += column
    keep, remaining = None, n
    for _ in range(_N_PIVOTS):
        pivot = int(np.argmin(total))
        beaten = columns[0] < columns[0][pivot]  # some coordinate better than the pivot's
        for column in columns[1:]:
            beaten |= column < column[pivot]
        beaten[pivot] = True
        keep = beaten if keep is None else keep & beaten
        kept = int(np.count_nonzero(keep))
        if remaining - kept < remaining // 16:
            break  # pivots have stopped paying for themselves
        # Next: the smallest sum among the other remaining points. (A point goes only with a
        # pivot that dominates it still kept: the last pivot to remove anything stays.)
        remaining = kept
        total[~keep] = np.inf
        total[pivot] = np.inf
    return points if kept == n else points[keep]


def _hypervolume_2d(points: np.ndarray, ref_point: np.ndarray) -> float:
    order = np.argsort(points[:, 0])
    x, y = points[order, 0], points[order, 1]
    # Area between consecutive x values under the lowest y seen so far (ties in x give
    # zero-width strips, so their order does not matter).
    widths = np.diff(x, append=ref_point[0])
    return float(np.dot(widths, ref_point[1] - np.minimum.accumulate(y)))


def _hypervolume_3d(points: np.ndarray, ref_point: np.ndarray) -> float:
    # Sweep in z: `xs`/`ys` is the 2-D staircase of the points seen so far (x ascending,
    # y descending) between the sentinels (-inf, ref_y) and (ref_x, -inf). A point adds its
    # exclusive area (zero if the staircase already covers its corner) and replaces the
    # staircase points it dominates. Points of equal z may come in any order: the slab
    # between them is empty.
    points = _drop_dominated_by_pivots(points)
    order = np.argsort(points[:, 2])
    ref_x, ref_y, ref_z = (float(v) for v in ref_point)
    xs, ys = [-math.inf, ref_x], [ref_y, -math.inf]
    volume = 0.0
    find, insert_x, insert_y = bisect.bisect_left, xs.insert, ys.insert
    # A point's exclusive area is covered from its z up to ref_z: a sum of positive terms.
    for x, y, height in zip(points[:, 0].take(order).tolist(),
                            points[:, 1].take(order).tolist(),
                            (ref_z - points[:, 2].take(order)).tolist()):
        i = find(xs, x)  # xs[i - 1] < x <= xs[i]
        left_y = ys[i - 1]
        right_y = ys[i]
        if left_y <= y or (right_y <= y and xs[i] == x):
            continue  # weakly dominated in (x, y) by a point of lower or equal z
        if right_y < y:  # dominates no staircase point: a plain insertion
            volume += (xs[i] - x) * (left_y - y) * height
            insert_x(i, x)
            insert_y(i, y)
        else:  # it dominates staircase points from position i on
            j = i + 1
            right_x = xs[i]
            next_x = xs[j]
            gain = (right_x - x) * (left_y - y) + (next_x - right_x) * (right_y - y)
            right_y = ys[j]
            if right_y < y:  # exactly one (the common case): replace it in place
                xs[i] = x
                ys[i] = y
            else:
                right_x = next_x
                while right_y >= y:  # the end sentinel stops the walk
                    j += 1
                    next_x = xs[j]
                    gain += (next_x - right_x) * (right_y - y)
                    right_x, right_y = next_x, ys[j]
                xs[i:j] = (x,)
                ys[i:j] = (y,)
            volume += gain * height
    return volume


def hypervolume_monte_carlo(
    points, ref_point, n_samples: int = 1_000_000, seed: int = 0
) -> tuple[float, float]:
    """Monte-Carlo hypervolume estimate and its standard error (any number of objectives).

    Samples uniformly in the box between the points' per-objective minimum and `ref_point`.
    """
    points, ref_point = _prepare(points, ref_point)
    if len(points) == 0:
        return 0.0, 0.0
    lower = points.min(axis=0)
    box = float(np.prod(ref_point - lower))
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, min(n_samples, 4_000_000 // max(1, len(points))))
    while done < n_samples:
        size = min(chunk, n_samples - done)
        samples = lower + rng.random((size, len(ref_point))) * (ref_point - lower)
        dominated = np.zeros(size, bool)
        for point in points:
            dominated |= np.all(samples >= point, axis=1)
        hits, done = hits + int(dominated.sum()), done + size
    fraction = hits / n_samples
    return box * fraction, box * float(np.sqrt(fraction * (1 - fraction) / n_samples))


def hypervolume(points, ref_point, n_samples: int = 1_000_000, seed: int = 0) -> float:
    """Hypervolume dominated by `points` and bounded by `ref_point` (minimization).

    Exact (float64) for 2 and 3 objectives; a Monte-Carlo estimate with `n_samples` samples
    for 4 or more (use `hypervolume_monte_carlo` to get its standard error). Accepts NumPy
    or JAX arrays; points not strictly better than `ref_point` in every objective add 0, and
    dominated or repeated points are allowed (they add nothing). An empty front gives 0.
    """
    points, ref_point = _prepare(points, ref_point)
    n_objectives = len(ref_point)
    if len(points) == 0:
        return 0.0
    if n_objectives == 1:
        return float(ref_point[0] - points[:, 0].min())
    if n_objectives == 2:
        return _hypervolume_2d(points, ref_point)
    if n_objectives == 3:
        return _hypervolume_3d(points, ref_point)
    return hypervolume_monte_carlo(points, ref_point, n_samples, seed)[0]


# ---------------------------------------------------------------------------------------------
# Hypervolume improvement in JAX (for EHVI)


@jax.jit
def hypervolume_improvement(front: jax.Array, candidates: jax.Array, ref_point) -> jax.Array:
    """Exclusive hypervolume each candidate would add to `front`, for 2 or 3 objectives.

    Uses the grid of the front's coordinates: in each cell the front covers a fixed set of
    the last axis (2-D: all of y above the staircase; 3-D: z above the cell's lowest
    dominating z), so the improvement is a sum over cells of overlap area times the uncovered
    length above the candidate. O(n^(M-1)) per candidate; jit-able.

    Args:
      front: (P, M) points (dominated or out-of-box points are allowed); rows of +inf are
        ignored, so padded fronts work.
      candidates: (..., M) points.
      ref_point: (M,).
    Returns:
      (...,) improvements (>= 0).
    """
    front, candidates = jnp.asarray(front), jnp.asarray(candidates)
    ref_point = jnp.asarray(ref_point, front.dtype)
    front = jnp.minimum(front, ref_point)  # beyond-ref coordinates cover nothing anyway
    n_objectives = front.shape[1]
    xs = jnp.sort(front[:, 0])
    x_edges = jnp.concatenate([xs, ref_point[:1]])
    x_lo, x_hi = jnp.concatenate([jnp.array([-jnp.inf], xs.dtype), xs]), x_edges

    def overlap(lo, hi, value, ref):  # length of [max(lo, value), min(hi, ref)]
        return jnp.maximum(jnp.minimum(hi, ref) - jnp.maximum(lo, value[..., None]), 0)

    if n_objectives == 2:
        # Lowest y covering x-cell a = min y of points with x <= cell's left edge.
        covered = x_lo[:, None] >= front[None, :, 0]
        level = jnp.min(jnp.where(covered, front[None, :, 1], ref_point[1]), axis=1)
        width = overlap(x_lo, x_hi, candidates[..., 0], ref_point[0])
        return jnp.sum(width * jnp.maximum(level - candidates[..., 1:2], 0), axis=-1)
    if n_objectives != 3:
        raise ValueError(f"hypervolume_improvement supports 2 or 3 objectives; got {n_objectives}")
    ys = jnp.sort(front[:, 1])
    y_lo = jnp.concatenate([jnp.array([-jnp.inf], ys.dtype), ys])
    y_hi = jnp.concatenate([ys, ref_point[1:2]])
    covered = (x_lo[:, None, None] >= front[None, None, :, 0]) & (
        y_lo[None, :, None] >= front[None, None, :, 1]
    )
    level = jnp.min(jnp.where(covered, front[None, None, :, 2], ref_point[2]), axis=2)  # (a, b)
    width = overlap(x_lo, x_hi, candidates[..., 0], ref_point[0])  # (..., A)
    height = overlap(y_lo, y_hi, candidates[..., 1], ref_point[1])  # (..., B)
    depth = jnp.maximum(level - candidates[..., 2][..., None, None], 0)  # (..., A, B)
    return jnp.einsum("...a,...b,...ab->...", width, height, depth)
