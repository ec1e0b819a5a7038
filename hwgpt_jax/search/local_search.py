"""Pareto local search around the current Pareto set.

Pareto local search (Paquete, Chiarandini & Stuetzle, "Pareto local optimum sets in the
biobjective traveling salesman problem", 2004; the LS baseline of HW-GPT-Bench): keep an
archive of the best architectures found, draw parents uniformly from its non-dominated
(feasible, under constrained domination) members, and evaluate one-gene neighbours that
are not yet in the archive. The archive has a fixed capacity `archive_size`: after each
tell the NSGA-II survival (rank, then crowding) of archive + batch keeps the best
`archive_size`, so the whole Pareto set stays while it fits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hwgpt_jax.search.base import (
    SearchAlgorithm,
    contains_rows,
    mutate_one,
    total_violation,
)
from hwgpt_jax.search.pareto import nsga2_survival
from hwgpt_jax.space.arch import SearchSpace
from hwgpt_jax.space.rules import canonical_genes, random_genes


@struct.dataclass
class State:
    genes: jax.Array  # (A, G) archive, canonical genes
    objectives: jax.Array  # (A, M); +inf in empty slots
    violation: jax.Array  # (A,); +inf in empty slots
    rank: jax.Array  # (A,)
    generation: jax.Array


@struct.dataclass
class Params:
    pass


class LocalSearch(SearchAlgorithm):
    """One-gene moves from random members of the archive's Pareto set."""

    name = "local_search"

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 batch_size: int = 64, archive_size: int = 512, n_tries: int = 8):
        super().__init__(space, n_objectives, n_constraints)
        if batch_size < 1 or archive_size < batch_size or n_tries < 1:
            raise ValueError(f"need batch_size >= 1, archive_size >= batch_size, n_tries >= 1; "
                             f"got {batch_size}, {archive_size}, {n_tries}")
        self.batch_size = batch_size
        self.archive_size = archive_size
        self.n_tries = n_tries
        self.min_budget = batch_size

    @property
    def default_params(self) -> Params:
        return Params()

    def _init(self, key, params):
        a = self.archive_size
        return State(
            genes=jnp.zeros((a, self.n_genes), jnp.int32),
            objectives=jnp.full((a, self.n_objectives), jnp.inf, jnp.float32),
            violation=jnp.full((a,), jnp.inf, jnp.float32),
            rank=jnp.full((a,), jnp.iinfo(jnp.int32).max, jnp.int32),
            generation=jnp.int32(0),
        )

    def _ask(self, key, state, params):
        key_start, key_parent, key_move = jax.random.split(key, 3)
        occupied = jnp.isfinite(state.violation)
        on_front = (state.rank == 0) & occupied
        logits = jnp.where(on_front, 0.0, -jnp.inf)
        n_draws = self.n_tries * self.batch_size
        parents = jax.random.categorical(key_parent, logits, shape=(n_draws,))
        candidates = canonical_genes(self.space,
            mutate_one(key_move, state.genes[parents], self.cardinality))
        # Prefer neighbours not yet in the archive; fall back to the first try per slot.
        tries = candidates.reshape(self.n_tries, self.batch_size, self.n_genes)
        new = ~contains_rows(candidates, state.genes, occupied).reshape(self.n_tries, -1)
        first_new = jnp.argmax(new, axis=0)
        neighbours = tries[first_new, jnp.arange(self.batch_size)]
        start = random_genes(key_start, self.cardinality, self.batch_size)
        return jnp.where(jnp.any(on_front), neighbours, start), state

    def _tell(self, key, genes, objectives, constraints, state, params):
        genes = canonical_genes(self.space, genes)
        violation = total_violation(constraints)
        # A re-evaluated architecture already in the archive is dropped (no duplicates).
        seen = contains_rows(genes, state.genes, jnp.isfinite(state.violation))
        violation = jnp.where(seen, jnp.inf, violation)
        all_genes = jnp.concatenate([state.genes, genes])
        all_objectives = jnp.concatenate([state.objectives, objectives.astype(jnp.float32)])
        all_violation = jnp.concatenate([state.violation, violation])
        keep, rank, _ = nsga2_survival(all_objectives, self.archive_size, all_violation)
        return State(
            genes=all_genes[keep],
            objectives=all_objectives[keep],
            violation=all_violation[keep],
            rank=rank[keep],
            generation=state.generation + 1,
        )
