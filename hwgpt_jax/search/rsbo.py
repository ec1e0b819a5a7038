"""RSBO: Bayesian optimization with random Chebyshev scalarizations.

ParEGO (Knowles, "ParEGO: a hybrid algorithm with on-line landscape approximation for
expensive multiobjective optimization problems", IEEE TEVC 2006) and its random-
scalarization view (Paria, Kandasamy & Poczos, "A flexible framework for multi-objective
Bayesian optimization using random scalarizations", UAI 2019); the RSBO baseline of
HW-GPT-Bench. Each member of a batch draws weights lambda uniformly from the simplex,
scalarizes the normalized objectives with the augmented Chebyshev function
max_m lambda_m y_m + rho * sum_m lambda_m y_m, models that target with the GP (same kernel
and Cholesky factor, new targets) and takes the pool candidate of largest expected
improvement times probability of feasibility.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hwgpt_jax.search import gp as gaussian_process
from hwgpt_jax.search.bayesopt import BayesianOptimization, Model, pick_sequentially


@struct.dataclass
class Params:
    rho: float = 0.05  # augmentation weight of the linear term (ParEGO's value)


def chebyshev(normalized: jax.Array, weights: jax.Array, rho: float | jax.Array) -> jax.Array:
    """Augmented Chebyshev scalarization: (N, M) x (B, M) -> (N, B)."""
    weighted = normalized[:, None, :] * weights[None, :, :]
    return jnp.max(weighted, axis=-1) + rho * jnp.sum(weighted, axis=-1)


class RSBO(BayesianOptimization):
    """Random-scalarization BO; one fresh weight vector per batch member."""

    name = "rsbo"

    @property
    def default_params(self) -> Params:
        return Params()

    def _select(self, key, model: Model, params) -> jax.Array:
        weights = jax.random.dirichlet(key, jnp.ones(self.n_objectives), (self.batch_size,))
        scalar = chebyshev(model.normalized, weights, params.rho)  # (C, B)
        scalar_gp = gaussian_process.refit_targets(model.gp, scalar)
        x_pool = gaussian_process.encode_genes(model.pool, self.cardinality)
        mean = gaussian_process.posterior_mean(scalar_gp, x_pool)  # (P, B)
        std = jnp.sqrt(model.pool_variance)[:, None] * scalar_gp.y_std  # same kernel and data
        best = jnp.min(jnp.where(model.feasible[:, None], scalar, jnp.inf), axis=0)
        improvement = gaussian_process.expected_improvement(mean, std, best)
        # With no feasible evaluation yet, chase feasibility alone.
        scores = jnp.where(jnp.isfinite(best), improvement, 1.0) * model.pool_feasibility[:, None]
        return pick_sequentially(scores, model.pool_new)
