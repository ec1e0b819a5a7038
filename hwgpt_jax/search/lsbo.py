"""LSBO: Bayesian optimization of a fixed linear scalarization of the objectives.

The LSBO baseline of HW-GPT-Bench (arXiv 2405.10299, via syne-tune): single-objective GP
Bayesian optimization (Jones, Schonlau & Welch, "Efficient global optimization of expensive
black-box functions", J. Global Optim. 1998) of sum_m w_m y_m on normalized objectives, with
fixed weights (default equal). The batch is the `batch_size` pool candidates of largest
expected improvement times probability of feasibility.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hwgpt_jax.search import gp as gaussian_process
from hwgpt_jax.search.bayesopt import BayesianOptimization, Model, top_distinct


@struct.dataclass
class Params:
    weights: jax.Array  # (M,) non-negative scalarization weights


class LSBO(BayesianOptimization):
    """Linear-scalarization BO with fixed weights."""

    name = "lsbo"

    @property
    def default_params(self) -> Params:
        return Params(weights=jnp.full((self.n_objectives,), 1.0 / self.n_objectives))

    def _select(self, key, model: Model, params) -> jax.Array:
        weights = jnp.asarray(params.weights, jnp.float32)
        # A linear scalarization of GP columns is again Gaussian: mean and variance follow.
        mean = model.pool_mean[:, : self.n_objectives] @ weights
        column_std = model.gp.y_std[: self.n_objectives]
        std = jnp.sqrt(model.pool_variance * jnp.sum((weights * column_std) ** 2))
        scalar = model.normalized @ weights
        best = jnp.min(jnp.where(model.feasible, scalar, jnp.inf))
        improvement = gaussian_process.expected_improvement(mean, std, best)
        scores = jnp.where(jnp.isfinite(best), improvement, 1.0) * model.pool_feasibility
        return top_distinct(scores, model.pool_new, self.batch_size)
