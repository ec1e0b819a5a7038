"""Training losses of the surrogates: the pinball (quantile) loss and the squared error.

The pinball loss of level tau, rho_tau(u) = max(tau * u, (tau - 1) * u) with u = y - q, is
minimised in expectation by the tau-quantile of y (Koenker & Bassett 1978, "Regression
Quantiles"); summed over levels it trains all quantiles of a quantile MLP at once.

Observations come as (N, R) arrays, R repeated measurements per architecture, NaN where an
architecture has fewer than R repeats; NaN entries are masked out of every loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pinball_loss(quantiles: jax.Array, observations: jax.Array, levels: jax.Array) -> jax.Array:
    """Mean pinball loss over levels and valid observations.

    Args:
        quantiles: (N, Q) predicted quantiles.
        observations: (N, R) repeated observations, NaN where missing.
        levels: (Q,) quantile levels in (0, 1).

    Returns:
        Scalar mean of rho_tau(y - q) over all (arch, observation, level) triples with a valid y.
    """
    valid = ~jnp.isnan(observations)
    y = jnp.where(valid, observations, 0.0)
    residual = y[:, :, None] - quantiles[:, None, :]  # (N, R, Q)
    levels = jnp.asarray(levels, quantiles.dtype)
    loss = jnp.maximum(levels * residual, (levels - 1.0) * residual)
    weight = valid[:, :, None].astype(loss.dtype)
    return jnp.sum(loss * weight) / (jnp.maximum(jnp.sum(weight), 1.0) * quantiles.shape[-1])


def squared_error(prediction: jax.Array, observations: jax.Array) -> jax.Array:
    """Mean squared error of a (N, 1) prediction against (N, R) observations (NaN masked)."""
    valid = ~jnp.isnan(observations)
    residual = jnp.where(valid, observations - prediction, 0.0)
    return jnp.sum(residual**2) / jnp.maximum(jnp.sum(valid), 1)


LOSSES = ("pinball", "mse")
