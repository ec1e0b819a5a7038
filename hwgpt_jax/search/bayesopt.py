"""Shared machinery of the GP-based searches (RSBO, LSBO, EHVI).

Batch Bayesian optimization on a fixed-capacity archive of evaluations: `n_initial` random
architectures first, then each ask fits one GP (hwgpt_jax.search.gp) to the normalized
objectives and the constraint margins, scores a sampled candidate pool (half uniform
architectures, half one-gene neighbours of the current Pareto set, none already evaluated)
with the subclass's acquisition times the probability of feasibility (Gardner et al.,
"Bayesian optimization with inequality constraints", ICML 2014), and returns `batch_size`
distinct candidates. The GP's hyperparameters are warm-started from the previous ask's fit
(30 Adam steps per ask by default) on at most `fit_rows` random evaluations; the
posterior conditions on all of them. Objectives are min-max normalized over the evaluated
architectures before modelling, so scalarization weights and reference points are scale free.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hwgpt_jax.search import gp as gaussian_process
from hwgpt_jax.search.base import (
    SearchAlgorithm,
    contains_rows,
    mutate_one,
    total_violation,
)
from hwgpt_jax.search.pareto import pareto_ranks
from hwgpt_jax.space.arch import SearchSpace
from hwgpt_jax.space.rules import canonical_genes, random_genes


@struct.dataclass
class State:
    genes: jax.Array  # (C, G) canonical genes of the evaluations so far
    objectives: jax.Array  # (C, M)
    constraints: jax.Array  # (C, K) margins, <= 0 feasible
    count: jax.Array  # rows in use
    generation: jax.Array
    log_hypers: jax.Array  # (3,) last GP fit, warm start of the next


@struct.dataclass
class Model:
    """What an acquisition needs, computed once per ask."""

    gp: gaussian_process.GP
    normalized: jax.Array  # (C, M) objectives in [0, 1] over the evaluated rows
    feasible: jax.Array  # (C,) valid and feasible rows
    pool: jax.Array  # (P, G) candidate genes
    pool_mean: jax.Array  # (P, M + K) posterior mean (normalized objectives, margins)
    pool_variance: jax.Array  # (P,) standardized posterior variance
    pool_feasibility: jax.Array  # (P,) probability that every margin is <= 0
    pool_new: jax.Array  # (P,) not evaluated yet


class BayesianOptimization(SearchAlgorithm):
    """Base class: archive, initial design, GP fit and candidate pool. Subclasses implement
    `_select(key, model, params) -> (batch_size,) pool indices`."""

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 batch_size: int = 8, max_evaluations: int = 256, n_initial: int | None = None,
                 n_candidates: int = 1024, fit_steps: int = 30, fit_rows: int = 128):
        super().__init__(space, n_objectives, n_constraints)
        n_initial = max(2 * batch_size, 8) if n_initial is None else n_initial
        if not 1 <= batch_size <= n_candidates // 2 or n_initial < 1:
            raise ValueError(f"need 1 <= batch_size <= n_candidates / 2 and n_initial >= 1; got "
                             f"batch_size={batch_size}, n_candidates={n_candidates}, "
                             f"n_initial={n_initial}")
        if fit_rows < 2:
            raise ValueError(f"fit_rows must be >= 2 (rows of the hyperparameter fit); got "
                             f"{fit_rows}")
        if max_evaluations < n_initial:
            raise ValueError(f"max_evaluations ({max_evaluations}) must be >= n_initial "
                             f"({n_initial})")
        self.batch_size = batch_size
        self.max_evaluations = max_evaluations
        self.n_initial = n_initial
        self.n_candidates = n_candidates
        self.fit_steps = fit_steps
        self.fit_rows = fit_rows
        self.min_budget = batch_size

    def _init(self, key, params):
        c = self.max_evaluations
        return State(
            genes=jnp.zeros((c, self.n_genes), jnp.int32),
            objectives=jnp.zeros((c, self.n_objectives), jnp.float32),
            constraints=jnp.zeros((c, self.n_constraints), jnp.float32),
            count=jnp.int32(0),
            generation=jnp.int32(0),
            log_hypers=jnp.array(gaussian_process.DEFAULT_LOG_HYPERS, jnp.float32),
        )

    def _tell(self, key, genes, objectives, constraints, state, params):
        rows = state.count + jnp.arange(genes.shape[0])  # past capacity: dropped
        return state.replace(
            genes=state.genes.at[rows].set(canonical_genes(self.space, genes), mode="drop"),
            objectives=state.objectives.at[rows].set(objectives.astype(jnp.float32),
                                                     mode="drop"),
            constraints=state.constraints.at[rows].set(constraints.astype(jnp.float32),
                                                       mode="drop"),
            count=jnp.minimum(state.count + genes.shape[0], self.max_evaluations),
            generation=state.generation + 1,
        )

    def _ask(self, key, state, params):
        key_random, key_model, key_select = jax.random.split(key, 3)

        def initial_design(_):
            return random_genes(key_random, self.cardinality, self.batch_size), state.log_hypers

        def bayes(_):
            model = self._model(key_model, state)
            return model.pool[self._select(key_select, model, params)], model.gp.log_hypers

        genes, log_hypers = jax.lax.cond(state.count < self.n_initial, initial_design, bayes,
                                         None)
        return genes, state.replace(log_hypers=log_hypers)

    def _model(self, key, state) -> Model:
        key_fit, key_pool = jax.random.split(key)
        valid = jnp.arange(self.max_evaluations) < state.count
        feasible = valid & (total_violation(state.constraints) <= 0)
        lower = jnp.min(jnp.where(valid[:, None], state.objectives, jnp.inf), axis=0)
        upper = jnp.max(jnp.where(valid[:, None], state.objectives, -jnp.inf), axis=0)
        span = jnp.where(upper > lower, upper - lower, 1.0)
        normalized = jnp.where(valid[:, None], (state.objectives - lower) / span, 0.0)
        x = gaussian_process.encode_genes(state.genes, self.cardinality)
        targets = jnp.concatenate([normalized, state.constraints], axis=1)
        model = gaussian_process.fit_gp(x, valid, targets, n_steps=self.fit_steps,
                                        start=state.log_hypers, max_fit_rows=self.fit_rows,
                                        key=key_fit)
        pool = self._pool(key_pool, state, normalized, valid)
        mean, variance = gaussian_process.posterior(
            model, gaussian_process.encode_genes(pool, self.cardinality))
        margin_mean = mean[:, self.n_objectives:]
        margin_std = jnp.sqrt(variance)[:, None] * model.y_std[self.n_objectives:]
        feasibility = jnp.prod(jax.scipy.stats.norm.cdf(-margin_mean / margin_std), axis=1)
        # A candidate is new if it was not evaluated and is the pool's first copy of itself.
        same = jnp.all(pool[:, None, :] == pool[None, :, :], axis=-1)
        first_copy = ~jnp.any(jnp.tril(same, k=-1), axis=1)
        new = first_copy & ~contains_rows(pool, state.genes, valid)
        return Model(model, normalized, feasible, pool, mean, variance, feasibility, new)

    def _pool(self, key, state, normalized, valid):
        key_random, key_parent, key_move = jax.random.split(key, 3)
        half = self.n_candidates // 2
        violation = jnp.where(valid, total_violation(state.constraints), jnp.inf)
        on_front = (pareto_ranks(normalized, violation=violation) == 0) & valid
        parents = jax.random.categorical(key_parent, jnp.where(on_front, 0.0, -jnp.inf),
                                         shape=(self.n_candidates - half,))
        neighbours = mutate_one(key_move, state.genes[parents], self.cardinality)
        uniform = random_genes(key_random, self.cardinality, half)
        return canonical_genes(self.space, jnp.concatenate([uniform, neighbours]))

    def _select(self, key, model: Model, params) -> jax.Array:
        raise NotImplementedError


def top_distinct(scores: jax.Array, new: jax.Array, k: int) -> jax.Array:
    """Indices of the k best scores among new candidates (old ones only if needed)."""
    return jax.lax.top_k(jnp.where(new, scores, -jnp.inf), k)[1]


def pick_sequentially(scores: jax.Array, new: jax.Array) -> jax.Array:
    """One pick per column of scores (P, B), never the same candidate twice."""

    def pick(taken, column):
        index = jnp.argmax(jnp.where(new & ~taken, column, -jnp.inf))
        return taken.at[index].set(True), index

    _, picks = jax.lax.scan(pick, jnp.zeros(scores.shape[0], bool), scores.T)
    return picks
