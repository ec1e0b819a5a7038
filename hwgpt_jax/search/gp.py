"""Gaussian-process regression in JAX for Bayesian optimization on architecture genes.

Exact GP (Rasmussen & Williams, "Gaussian Processes for Machine Learning", 2006, ch. 2 and
5.4) with a Matern-5/2 kernel on an ordinal encoding of the genes (choice index / (choices -
1), per-layer genes past the depth at 0), one lengthscale, signal and noise variance shared
by all output columns. Columns are standardized, so one Cholesky factor serves every
objective and constraint (and every scalarization of them, which is linear in the targets
for LSBO or refit as new targets for RSBO). Hyperparameters maximize the summed log
marginal likelihood with Adam; past `max_fit_rows` evaluations the likelihood is taken on a
random subset of that many rows (the usual subset-of-data estimate of hyperparameters: the
gradient through a Cholesky costs O(N^3) per Adam step), while the posterior always
conditions on every row. Fixed capacity: rows with `valid == False` are decoupled
(unit prior variance, zero cross-covariance, target 0), so shapes never change under jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class GP:
    """A fitted GP: training inputs, Cholesky factor, weights and hyperparameters."""

    x: jax.Array  # (N, D)
    valid: jax.Array  # (N,)
    cholesky: jax.Array  # (N, N)
    alpha: jax.Array  # (N, K) = K^-1 y (standardized targets)
    log_hypers: jax.Array  # (3,) log lengthscale, log signal variance, log noise variance
    y_mean: jax.Array  # (K,)
    y_std: jax.Array  # (K,)


def encode_genes(genes: jax.Array, cardinality: tuple[int, ...]) -> jax.Array:
    """Ordinal encoding in [0, 1]: choice index / (number of choices - 1)."""
    card = jnp.asarray(cardinality, jnp.float32)
    return genes.astype(jnp.float32) / jnp.maximum(card - 1, 1)


@jax.jit
def matern52(a: jax.Array, b: jax.Array, log_lengthscale: jax.Array,
             log_signal: jax.Array) -> jax.Array:
    """Matern-5/2 covariance between rows of a (N, D) and b (P, D)."""
    squared = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    r = jnp.sqrt(jnp.maximum(squared, 1e-12)) / jnp.exp(log_lengthscale)
    root5 = jnp.sqrt(5.0) * r
    return jnp.exp(log_signal) * (1 + root5 + 5.0 / 3.0 * r**2) * jnp.exp(-root5)


def _masked_kernel(x, valid, log_hypers):
    k = matern52(x, x, log_hypers[0], log_hypers[1])
    pair = valid[:, None] & valid[None, :]
    noise = jnp.exp(log_hypers[2]) + 1e-6
    return jnp.where(pair, k, 0.0) + jnp.diag(jnp.where(valid, noise, 1.0))


def _negative_log_likelihood(log_hypers, x, valid, y):
    chol = jnp.linalg.cholesky(_masked_kernel(x, valid, log_hypers))
    alpha = jax.scipy.linalg.cho_solve((chol, True), y)
    n_valid = jnp.sum(valid)
    data_fit = 0.5 * jnp.sum(y * alpha)
    complexity = y.shape[1] * jnp.sum(jnp.log(jnp.diagonal(chol)))
    # Weak log-normal priors keep the fit sane with few points.
    prior = 0.5 * jnp.sum(((log_hypers - jnp.array(DEFAULT_LOG_HYPERS)) / 2.0) ** 2)
    return (data_fit + complexity) / jnp.maximum(n_valid, 1) + prior / jnp.maximum(n_valid, 1)


DEFAULT_LOG_HYPERS = (-0.5, 0.0, -4.0)


def fit_gp(x: jax.Array, valid: jax.Array, y: jax.Array, n_steps: int = 60,
           learning_rate: float = 0.05, start: jax.Array | None = None,
           max_fit_rows: int | None = None, key: jax.Array | None = None) -> GP:
    """Fit hyperparameters (Adam on the marginal likelihood) and condition on the data.

    Args:
      x: (N, D) inputs; valid: (N,) bool rows in use; y: (N, K) targets (any scale).
      start: (3,) initial log hyperparameters (e.g. the previous fit's, to warm-start).
      max_fit_rows: fit the hyperparameters on at most this many valid rows, drawn at
        random with `key` (all valid rows when there are fewer); None: every row.
    """
    weight = valid.astype(jnp.float32)[:, None]
    count = jnp.maximum(jnp.sum(weight), 1.0)
    y_mean = jnp.sum(y * weight, axis=0) / count
    y_std = jnp.sqrt(jnp.sum(((y - y_mean) * weight) ** 2, axis=0) / count)
    y_std = jnp.where(y_std > 1e-9, y_std, 1.0)
    targets = jnp.where(valid[:, None], (y - y_mean) / y_std, 0.0)
    fit_x, fit_valid, fit_targets = x, valid, targets
    if max_fit_rows is not None and max_fit_rows < x.shape[0]:
        rows = fit_subset(key, valid, max_fit_rows)
        fit_x, fit_valid, fit_targets = x[rows], valid[rows], targets[rows]
    optimizer = optax.adam(learning_rate)
    loss_grad = jax.grad(_negative_log_likelihood)

    def step(carry, _):
        log_hypers, opt_state = carry
        grads = loss_grad(log_hypers, fit_x, fit_valid, fit_targets)
        updates, opt_state = optimizer.update(grads, opt_state)
        log_hypers = jnp.clip(optax.apply_updates(log_hypers, updates),
                              jnp.array([-4.0, -4.0, -12.0]), jnp.array([3.0, 3.0, 1.0]))
        return (log_hypers, opt_state), None

    start = jnp.array(DEFAULT_LOG_HYPERS) if start is None else start
    (log_hypers, _), _ = jax.lax.scan(step, (start, optimizer.init(start)), None, n_steps)
    chol = jnp.linalg.cholesky(_masked_kernel(x, valid, log_hypers))
    alpha = jax.scipy.linalg.cho_solve((chol, True), targets)
    return GP(x, valid, chol, alpha, log_hypers, y_mean, y_std)


def fit_subset(key: jax.Array, valid: jax.Array, size: int) -> jax.Array:
    """(size,) row indices: `size` distinct valid rows at random, or every valid row (then
    invalid ones to fill) when fewer are valid."""
    noise = jax.random.uniform(key, valid.shape)
    return jax.lax.top_k(jnp.where(valid, 1.0 + noise, noise), size)[1]


def posterior(gp: GP, x_new: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior mean (P, K) and standardized-unit variance (P,) at new inputs.

    The variance of column k in its original units is `variance * y_std[k] ** 2`.
    """
    cross = _cross(gp, x_new)
    mean = cross.T @ gp.alpha * gp.y_std + gp.y_mean
    solved = jax.scipy.linalg.solve_triangular(gp.cholesky, cross, lower=True)
    variance = jnp.exp(gp.log_hypers[1]) - jnp.sum(solved**2, axis=0)
    return mean, jnp.maximum(variance, 1e-10)


def posterior_mean(gp: GP, x_new: jax.Array) -> jax.Array:
    """Posterior mean (P, K) alone: no triangular solve (the variance does not depend on the
    targets, so a GP refitted with `refit_targets` shares it with the original)."""
    return _cross(gp, x_new).T @ gp.alpha * gp.y_std + gp.y_mean


def _cross(gp: GP, x_new: jax.Array) -> jax.Array:
    cross = matern52(gp.x, x_new, gp.log_hypers[0], gp.log_hypers[1])
    return jnp.where(gp.valid[:, None], cross, 0.0)  # (N, P)


def refit_targets(gp: GP, y: jax.Array) -> GP:
    """The same GP (kernel and Cholesky) conditioned on new target columns y (N, K')."""
    weight = gp.valid.astype(jnp.float32)[:, None]
    count = jnp.maximum(jnp.sum(weight), 1.0)
    y_mean = jnp.sum(y * weight, axis=0) / count
    y_std = jnp.sqrt(jnp.sum(((y - y_mean) * weight) ** 2, axis=0) / count)
    y_std = jnp.where(y_std > 1e-9, y_std, 1.0)
    targets = jnp.where(gp.valid[:, None], (y - y_mean) / y_std, 0.0)
    alpha = jax.scipy.linalg.cho_solve((gp.cholesky, True), targets)
    return gp.replace(alpha=alpha, y_mean=y_mean, y_std=y_std)


def expected_improvement(mean: jax.Array, std: jax.Array, best: jax.Array) -> jax.Array:
    """EI for minimization: E[max(best - f, 0)], f ~ N(mean, std^2)."""
    z = (best - mean) / std
    return std * (z * jax.scipy.stats.norm.cdf(z) + jax.scipy.stats.norm.pdf(z))
