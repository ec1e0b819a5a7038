"""Brute-force NumPy references shared by the tests (non-dominated sorting, crowding)."""

from __future__ import annotations

import numpy as np


def reference_ranks(points: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """Non-dominated front index of every point (0 = best), by pairwise comparison.

    With `violation`, constrained domination (Deb 2000): feasible beats infeasible, and between
    infeasible points the smaller total violation wins.
    """
    n = len(points)
    violation = np.zeros(n) if violation is None else np.asarray(violation)
    feasible = violation <= 0

    def dominates(i: int, j: int) -> bool:
        if feasible[i] != feasible[j]:
            return bool(feasible[i])
        if not feasible[i]:
            return bool(violation[i] < violation[j])
        return bool(np.all(points[i] <= points[j]) and np.any(points[i] < points[j]))

    beats = np.array([[dominates(i, j) for j in range(n)] for i in range(n)]).reshape(n, n)
    ranks, remaining, front = np.full(n, -1), np.ones(n, bool), 0
    while remaining.any():
        in_front = remaining & ~np.any(beats[remaining], axis=0)
        ranks[in_front], remaining, front = front, remaining & ~in_front, front + 1
    return ranks


def reference_crowding(points: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within each front (ends infinite; ties broken by index)."""
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
