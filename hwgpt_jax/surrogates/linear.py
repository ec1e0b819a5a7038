"""Closed-form ridge regression, Kendall's tau and k-fold splits, in JAX (for model selection).

Ridge standardizes the features on the rows it is fitted on, leaves the intercept unpenalized
and returns weights on the original feature scale, so `x @ w + b` predicts. Everything is
jit- and vmap-able (one call fits every fold and penalty of a cross-validation).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def ridge_fit(x: jax.Array, y: jax.Array, penalty: float | jax.Array) -> tuple[jax.Array,
                                                                              jax.Array]:
    """Minimize |y - x w - b|^2 + penalty * n * |w_std|^2 (w_std on standardized features).

    Args:
        x: (n, F) features; y: (n,) targets; penalty: relative strength (per row).
    Returns:
        w (F,), b () with predictions x @ w + b.
    """
    n = x.shape[0]
    mean, scale = x.mean(0), x.std(0)
    scale = jnp.where(scale > 1e-8, scale, 1.0)  # constant columns get weight 0 via the penalty
    xs = (x - mean) / scale
    y_mean = y.mean()
    gram = xs.T @ xs + penalty * n * jnp.eye(x.shape[1], dtype=x.dtype)
    w_std = jnp.linalg.solve(gram, xs.T @ (y - y_mean))
    w = w_std / scale
    return w, y_mean - mean @ w


@functools.partial(jax.jit, static_argnums=1)
def pair_products(x: jax.Array, columns: tuple[int, ...]) -> jax.Array:
    """Products x_i * x_j of the named columns, i <= j (squares included): (..., P), P =
    c (c + 1) / 2 for c columns. They let the ridge model bend along the cost features
    (e.g. log FLOPs x embed one-hot: a latency slope per width)."""
    i, j = np.triu_indices(len(columns))
    picked = x[..., np.asarray(columns, np.int32)]
    return picked[..., i] * picked[..., j]


def ridge_design(x: jax.Array, quadratic: tuple[int, ...]) -> jax.Array:
    """The ridge model's inputs: the features, then `pair_products` of `quadratic` (if any)."""
    if not quadratic:
        return x
    return jnp.concatenate([x, pair_products(x, tuple(quadratic))], axis=-1)


def n_products(quadratic: tuple[int, ...]) -> int:
    return len(quadratic) * (len(quadratic) + 1) // 2


def kendall_tau(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Kendall's tau-b of two (n,) vectors (ties counted as in scipy's default), O(n^2)."""
    dp = jnp.sign(prediction[:, None] - prediction[None, :])
    dt = jnp.sign(target[:, None] - target[None, :])
    concordance = jnp.sum(dp * dt)
    norm = jnp.sqrt(jnp.sum(dp != 0) * jnp.sum(dt != 0).astype(jnp.float32))
    return jnp.where(norm > 0, concordance / jnp.maximum(norm, 1.0), 0.0)


def kfold_indices(n: int, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint k-fold split of `n` rows: (train (k, n_k (k-1)), val (k, n_k)) index arrays.

    Rows are shuffled by `seed`; the n mod k rows left over stay out of every fold's
    validation part (they always train), so all folds have equal shapes for vmap.
    """
    if folds < 2 or n < 2 * folds:
        raise ValueError(f"{n} rows cannot be split into {folds} folds (need folds >= 2 and "
                         f"at least 2 rows per fold)")
    order = np.random.default_rng(seed).permutation(n)
    size = n // folds
    val = order[: size * folds].reshape(folds, size)
    extra = order[size * folds :]
    train = np.stack([np.concatenate([*np.delete(val, k, axis=0), extra]) for k in
                      range(folds)])
    return train, val
