"""EHVI: Bayesian optimization by Monte-Carlo expected hypervolume improvement.

Emmerich, Giannakoglou & Naujoks, "Single- and multiobjective evolutionary optimization
assisted by Gaussian random field metamodels", IEEE TEVC 2006; Monte-Carlo estimate as in
Daulton, Balandat & Bakshy, "Differentiable expected hypervolume improvement for parallel
multi-objective Bayesian optimization", NeurIPS 2020. For 2 or 3 objectives: the GP
posterior of each normalized objective is sampled `n_samples` times per pool candidate
(common random numbers across candidates), the exclusive hypervolume each sample adds to the
current feasible Pareto front is computed exactly (pareto.hypervolume_improvement), and the
mean times the probability of feasibility is the acquisition. A batch is picked greedily,
adding each pick's posterior mean to the front before the next ("Kriging believer").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hwgpt_jax.search.bayesopt import BayesianOptimization, Model
from hwgpt_jax.search.pareto import hypervolume_improvement, nsga2_survival
from hwgpt_jax.space.arch import SearchSpace


@struct.dataclass
class Params:
    reference: float = 1.1  # reference point in every normalized objective


class EHVI(BayesianOptimization):
    """Monte-Carlo EHVI with a greedy batch; 2 or 3 objectives."""

    name = "ehvi"

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 n_samples: int = 32, front_size: int = 64, **config):
        if n_objectives not in (2, 3):
            raise ValueError(f"EHVI supports 2 or 3 objectives; got {n_objectives}")
        super().__init__(space, n_objectives, n_constraints, **config)
        self.n_samples = n_samples
        self.front_size = min(front_size, self.max_evaluations)

    @property
    def default_params(self) -> Params:
        return Params()

    def _front(self, model: Model) -> jax.Array:
        """(front_size, M) current feasible Pareto points (most spread if too many), inf-padded."""
        violation = jnp.where(model.feasible, 0.0, 1.0)
        keep, rank, _ = nsga2_survival(model.normalized, self.front_size, violation)
        on_front = (rank[keep] == 0) & model.feasible[keep]
        return jnp.where(on_front[:, None], model.normalized[keep], jnp.inf)

    def _select(self, key, model: Model, params) -> jax.Array:
        m = self.n_objectives
        mean = model.pool_mean[:, :m]
        std = jnp.sqrt(model.pool_variance)[:, None] * model.gp.y_std[:m]
        noise = jax.random.normal(key, (self.n_samples, m))
        samples = mean[:, None, :] + std[:, None, :] * noise[None, :, :]  # (P, S, M)
        reference = jnp.full((m,), params.reference, jnp.float32)
        front = jnp.concatenate(
            [self._front(model), jnp.full((self.batch_size, m), jnp.inf, jnp.float32)])
        any_feasible = jnp.any(model.feasible)

        def pick(carry, slot):
            front, taken = carry
            improvement = jnp.mean(hypervolume_improvement(front, samples, reference), axis=1)
            score = jnp.where(any_feasible, improvement, 1.0) * model.pool_feasibility
            index = jnp.argmax(jnp.where(model.pool_new & ~taken, score, -jnp.inf))
            front = front.at[self.front_size + slot].set(mean[index])  # believe the mean
            return (front, taken.at[index].set(True)), index

        taken = jnp.zeros(model.pool.shape[0], bool)
        _, picks = jax.lax.scan(pick, (front, taken), jnp.arange(self.batch_size))
        return picks
