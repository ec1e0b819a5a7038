"""Multi-objective fitness shaping: (N, M) objectives -> one scalar per candidate, lower better.

evosax strategies minimize one fitness per candidate; these functions turn a set of
objective vectors (plus constraint violation) into such a scalar, so any evosax strategy can
run a multi-objective search (`hwgpt_jax.search.evosax_search`). Each returns centered ranks
in [-0.5, 0.5] (ties broken by index): scale-free, so gradient-style strategies (Open_ES,
SNES) and selection-style ones (SimpleGA, DE) see the same order.

- `nsga2`: non-dominated rank, then crowding distance (Deb et al., IEEE TEVC 2002), with
  constrained domination (feasible first, infeasible by total violation).
- `hv`: non-dominated rank, then exclusive hypervolume contribution within the front (as in
  SMS-EMOA, Beume et al., EJOR 2007); exact for 2 objectives (O(N log N)) and 3 objectives
  (an x-sweep, O(N^2) per front); for 4+ objectives a Monte-Carlo estimate
  (`HV_SAMPLES` uniform samples of the reference box per front, fresh each call; a sample
  dominated by exactly one member of the front counts for that member, as in Bader &
  Zitzler's HypE, Evol. Comput. 2011), so contributions below about 1 / HV_SAMPLES of the
  box are not told apart (`hv_is_exact` says which).
- `chebyshev`: weighted Chebyshev distance to the ideal point on min-max normalized
  objectives, with one weight vector drawn uniformly from the simplex per call (ParEGO,
  Knowles, IEEE TEVC 2006); infeasible candidates rank after every feasible one.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from hwgpt_jax.search.pareto import crowding_distance, pareto_ranks, ranks_and_crowding

ShapingFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
HV_REFERENCE = 1.1  # reference point in normalized objectives: boundary points count
HV_SAMPLES = 8192  # Monte-Carlo samples per front for the hv shaping of 4+ objectives
_BLOCK_ELEMENTS = 2**22  # elements of one (samples, N, M) dominance comparison


def centered_ranks(*keys: jax.Array) -> jax.Array:
    """(N,) lexicographic position by `keys` (first key most significant, ties by index),
    scaled to [-0.5, 0.5]."""
    order = jnp.lexsort(tuple(reversed(keys)))
    n = order.shape[0]
    position = jnp.zeros((n,), jnp.float32).at[order].set(jnp.arange(n, dtype=jnp.float32))
    return position / max(n - 1, 1) - 0.5


def normalize_jointly(objectives: jax.Array, violation: jax.Array) -> jax.Array:
    """Min-max scale each objective over the feasible finite candidates (all if none is)."""
    finite = jnp.all(jnp.isfinite(objectives), axis=1)
    use = finite & (violation <= 0)
    use = jnp.where(jnp.any(use), use, finite)
    low = jnp.min(jnp.where(use[:, None], objectives, jnp.inf), axis=0)
    high = jnp.max(jnp.where(use[:, None], objectives, -jnp.inf), axis=0)
    span = jnp.where(high > low, high - low, 1.0)
    scaled = (objectives - low) / span
    return jnp.nan_to_num(scaled, nan=jnp.inf)


def nsga2_ranks_crowding(objectives: jax.Array, violation: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
    """(rank (N,) int32, crowding (N,)) under constrained domination."""
    ranks = pareto_ranks(objectives, violation=violation)
    finite = jnp.nan_to_num(objectives.astype(jnp.float32), nan=jnp.inf)
    finite = jnp.clip(finite, -jnp.finfo(jnp.float32).max, jnp.finfo(jnp.float32).max)
    return ranks, crowding_distance(finite, ranks)


def nsga2_scores(objectives: jax.Array, violation: jax.Array, n_keep: int) -> jax.Array:
    """rank + (0.5 - arctan(crowding) / pi): increasing in (rank, -crowding) like
    `nsga2_shaping` but not centered (no sort); for truncation survival, where only the
    order of the best `n_keep` matters and ranking stops there."""
    ranks, crowding = ranks_and_crowding(objectives, n_keep, violation)
    return ranks.astype(jnp.float32) + (0.5 - jnp.arctan(crowding) / jnp.pi)


def nsga2_shaping(key: jax.Array, objectives: jax.Array, violation: jax.Array) -> jax.Array:
    """Centered rank of (non-dominated rank, -crowding distance)."""
    del key
    ranks, crowding = nsga2_ranks_crowding(objectives, violation)
    return centered_ranks(ranks, -crowding)


def _contributions_2d(points: jax.Array, ranks: jax.Array, reference: float) -> jax.Array:
    """Exclusive 2-D hypervolume of each point within its front (points sorted per front by
    the first objective: the second then decreases, so each point owns one rectangle)."""
    n = points.shape[0]
    order = jnp.lexsort((points[:, 1], points[:, 0], ranks))
    x, y, r = points[order, 0], points[order, 1], ranks[order]
    same_next = jnp.concatenate([r[1:] == r[:-1], jnp.array([False])])
    same_prev = jnp.concatenate([jnp.array([False]), r[1:] == r[:-1]])
    x_next = jnp.where(same_next, jnp.concatenate([x[1:], x[-1:]]), reference)
    y_prev = jnp.where(same_prev, jnp.concatenate([y[:1], y[:-1]]), reference)
    area = jnp.maximum(jnp.minimum(x_next, reference) - x, 0) * jnp.maximum(
        jnp.minimum(y_prev, reference) - y, 0)
    return jnp.zeros((n,), points.dtype).at[order].set(area)


def _contributions_3d(points: jax.Array, ranks: jax.Array, reference: float,
                      n_fronts: jax.Array | int | None = None) -> jax.Array:
    """Exclusive 3-D hypervolume of each point within its front (fronts 0..n_fronts-1; the
    rest get 0).

    On the grid of a front's x and y coordinates, the column above a cell is covered from
    the lowest z of the points covering it; the lowest point owns the column up to the
    second-lowest z (nothing if they tie). The points covering x-row a are the first a in x
    order, so a sweep in x keeps the two lowest z (and the owner) per y-cell, updating them
    with one point per row: O(N) memory and O(N^2) time per front.
    """
    n = points.shape[0]
    ref = jnp.asarray(reference, points.dtype)
    n_fronts = jnp.max(ranks) + 1 if n_fronts is None else n_fronts

    def front(rank, total):
        member = ranks == rank
        front_points = jnp.where(member[:, None], jnp.minimum(points, ref), jnp.inf)
        order = jnp.argsort(front_points[:, 0])  # members first, by x
        ordered = front_points[order]
        x_edge = jnp.minimum(jnp.concatenate([ordered[:, 0], ref[None]]), ref)  # (N + 1,)
        y_sorted = jnp.minimum(jnp.sort(front_points[:, 1]), ref)
        y_low = jnp.concatenate([jnp.full((1,), -jnp.inf, points.dtype), y_sorted])
        height = jnp.where(jnp.isfinite(y_low), jnp.concatenate([y_sorted, ref[None]]) - y_low,
                           0.0)

        def add_point(carry, a):  # x-row a (a >= 1) spans [x_edge[a-1], x_edge[a]]
            lowest, second, owner, owned = carry
            point = ordered[a - 1]
            covers = y_low >= point[1]
            below = covers & (point[2] < lowest)
            second = jnp.where(below, lowest, jnp.where(covers & (point[2] < second), point[2],
                                                        second))
            lowest = jnp.where(below, point[2], lowest)
            owner = jnp.where(below, order[a - 1], owner)
            width = x_edge[a] - x_edge[a - 1]
            return (lowest, second, owner, owned.at[owner].add(width * height * (second - lowest))
                    ), None

        start = (jnp.full((n + 1,), ref), jnp.full((n + 1,), ref), jnp.zeros((n + 1,), jnp.int32),
                 jnp.zeros((n,), points.dtype))
        owned = jax.lax.scan(add_point, start, jnp.arange(1, n + 1))[0][3]
        return total + jnp.where(member, owned, 0.0)

    return jax.lax.fori_loop(0, n_fronts, front, jnp.zeros((n,), points.dtype))


def _contributions_monte_carlo(key: jax.Array, points: jax.Array, ranks: jax.Array,
                               reference: float, n_fronts: jax.Array | int,
                               n_samples: int = HV_SAMPLES) -> jax.Array:
    """Monte-Carlo exclusive hypervolume of each point within its front (any M): the share of
    uniform samples of [0, reference]^M that only this member of the front dominates, times
    the box volume. Samples are compared in blocks, so memory is O(block * N)."""
    n, m = points.shape
    block = int(max(1, min(n_samples, _BLOCK_ELEMENTS // max(1, n * m))))
    n_blocks = -(-n_samples // block)
    samples = jax.random.uniform(key, (n_blocks * block, m), points.dtype) * reference
    valid_sample = jnp.arange(n_blocks * block) < n_samples

    def front(rank, total):
        member = ranks == rank

        def add_block(b, counts):
            sample = jax.lax.dynamic_slice(samples, (b * block, 0), (block, m))
            valid = jax.lax.dynamic_slice(valid_sample, (b * block,), (block,))
            covers = jnp.all(points[None, :, :] <= sample[:, None, :], axis=-1) & member
            alone = (jnp.sum(covers, axis=1) == 1) & valid
            return counts.at[jnp.argmax(covers, axis=1)].add(alone.astype(points.dtype))

        counts = jax.lax.fori_loop(0, n_blocks, add_block, jnp.zeros((n,), points.dtype))
        return total + jnp.where(member, counts, 0.0)

    counts = jax.lax.fori_loop(0, n_fronts, front, jnp.zeros((n,), points.dtype))
    return counts * (reference ** m / n_samples)


def hv_is_exact(n_objectives: int) -> bool:
    """Whether the hv shaping's contributions are exact (2 or 3 objectives) or Monte-Carlo."""
    return n_objectives in (2, 3)


def hv_shaping(key: jax.Array, objectives: jax.Array, violation: jax.Array) -> jax.Array:
    """Centered rank of (non-dominated rank, -exclusive hypervolume contribution); the
    contributions are exact for 2 or 3 objectives, Monte-Carlo estimates beyond."""
    n_objectives = objectives.shape[1]
    if n_objectives < 2:
        raise ValueError(f"hv shaping needs 2 or more objectives; got {n_objectives}")
    ranks = pareto_ranks(objectives, violation=violation)
    points = jnp.minimum(normalize_jointly(objectives, violation), HV_REFERENCE)
    if n_objectives == 2:
        return centered_ranks(ranks, -_contributions_2d(points, ranks, HV_REFERENCE))
    # Every feasible front (infeasible points are ordered by violation already).
    n_fronts = jnp.max(jnp.where(violation <= 0, ranks + 1, 0))
    if n_objectives == 3:
        contributions = _contributions_3d(points, ranks, HV_REFERENCE, n_fronts)
    else:
        contributions = _contributions_monte_carlo(key, points, ranks, HV_REFERENCE, n_fronts)
    return centered_ranks(ranks, -contributions)


def chebyshev_weights(key: jax.Array, n_objectives: int) -> jax.Array:
    """(M,) weights uniform on the simplex (normalized exponential draws)."""
    draws = jax.random.exponential(key, (n_objectives,))
    return draws / jnp.sum(draws)


def chebyshev_values(objectives: jax.Array, violation: jax.Array, weights: jax.Array
                     ) -> jax.Array:
    """(N,) max_m w_m * f_m on jointly min-max normalized objectives (ideal point 0)."""
    return jnp.max(weights * normalize_jointly(objectives, violation), axis=1)


def chebyshev_shaping(key: jax.Array, objectives: jax.Array, violation: jax.Array) -> jax.Array:
    """Centered rank of (infeasible, violation, Chebyshev value) with fresh random weights."""
    values = chebyshev_values(objectives, violation, chebyshev_weights(key, objectives.shape[1]))
    infeasible = (violation > 0).astype(jnp.int32)
    return centered_ranks(infeasible, jnp.where(violation > 0, violation, 0.0), values)


SHAPINGS: dict[str, ShapingFn] = {
    "nsga2": nsga2_shaping, "hv": hv_shaping, "chebyshev": chebyshev_shaping}


def get_shaping(name: str) -> ShapingFn:
    """The shaping function registered under `name`."""
    if name not in SHAPINGS:
        raise ValueError(f"unknown shaping {name!r}; expected one of {sorted(SHAPINGS)}")
    return SHAPINGS[name]
