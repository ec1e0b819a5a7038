"""Batch sizes rounded up to a few buckets, so that host-side calls on batches of nearby sizes
share one compiled program instead of compiling one per size."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax


def padded_rows(n: int) -> int:
    """Rows to compute a batch of n over: a power of two up to 512 (at least 64), then a
    multiple of an eighth of the power of two below n (at most 12.5 % padding)."""
    if n <= 512:
        return max(64, 1 << max(n - 1, 0).bit_length())
    step = 1 << (n.bit_length() - 4)
    return -(-n // step) * step


@partial(jax.jit, static_argnames="n")
def first_rows(tree: Any, n: int) -> Any:
    """The first n rows of every array of `tree`, in one dispatch (not one per array)."""
    return jax.tree.map(lambda x: x[:n], tree)


__all__ = ["first_rows", "padded_rows"]
