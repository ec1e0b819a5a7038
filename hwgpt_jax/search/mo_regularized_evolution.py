"""Multi-objective regularized evolution (MO-RE).

Regularized ("aging") evolution (Real et al., "Regularized evolution for image classifier
architecture search", AAAI 2019) keeps a queue of the `population_size` most recent
architectures; each child mutates one gene of the winner of a tournament among
`tournament_size` random queue members, and the oldest member dies. The multi-objective
variant (as in syne-tune's MO regularized evolution, used by HW-GPT-Bench) ranks the
tournament by non-dominated rank, ties by crowding distance, with constrained domination.
Batched: each ask makes `batch_size` children from independent tournaments, and the
`batch_size` oldest die. The first asks fill the queue with random architectures.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hwgpt_jax.pareto import crowding_distance, pareto_ranks
from hwgpt_jax.search.base import SearchAlgorithm, mutate_one, random_genes, total_violation
from hwgpt_jax.space import SearchSpace


@struct.dataclass
class State:
    genes: jax.Array  # (P, G) queue, slot order is age order modulo `oldest`
    objectives: jax.Array  # (P, M)
    violation: jax.Array  # (P,)
    oldest: jax.Array  # slot of the oldest member (next to be replaced)
    n_filled: jax.Array  # slots holding evaluated members
    generation: jax.Array


@struct.dataclass
class Params:
    pass


class MORegularizedEvolution(SearchAlgorithm):
    """Aging-population evolution with parents chosen by non-dominated rank."""

    name = "mo_regularized_evolution"

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 population_size: int = 256, batch_size: int | None = None,
                 tournament_size: int = 10):
        super().__init__(space, n_objectives, n_constraints)
        batch_size = max(1, population_size // 8) if batch_size is None else batch_size
        if population_size < 2 or not 1 <= batch_size <= population_size:
            raise ValueError(f"need population_size >= 2 and 1 <= batch_size <= population_size;"
                             f" got {population_size}, {batch_size}")
        if population_size % batch_size:
            raise ValueError(f"population_size ({population_size}) must be a multiple of "
                             f"batch_size ({batch_size})")
        if not 1 <= tournament_size <= population_size:
            raise ValueError(f"tournament_size must be in [1, population_size]; got "
                             f"{tournament_size}")
        self.population_size = population_size
        self.batch_size = batch_size
        self.tournament_size = tournament_size
        self.min_budget = population_size

    @property
    def default_params(self) -> Params:
        return Params()

    def _init(self, key, params):
        p = self.population_size
        return State(
            genes=jnp.zeros((p, self.n_genes), jnp.int32),
            objectives=jnp.full((p, self.n_objectives), jnp.inf, jnp.float32),
            violation=jnp.zeros((p,), jnp.float32),
            oldest=jnp.int32(0),
            n_filled=jnp.int32(0),
            generation=jnp.int32(0),
        )

    def _ask(self, key, state, params):
        key_random, key_pick, key_mutate = jax.random.split(key, 3)
        filled = jnp.arange(self.population_size) < state.n_filled
        # Members not yet evaluated rank last (infinite violation).
        violation = jnp.where(filled, state.violation, jnp.inf)
        objectives = jnp.where(filled[:, None], state.objectives, 0.0)  # finite for crowding
        rank = pareto_ranks(objectives, violation=violation)
        crowding = crowding_distance(objectives, rank)
        picks = jax.random.randint(key_pick, (self.batch_size, self.tournament_size), 0,
                                   self.population_size)
        # Best of each tournament: lowest rank, then largest crowding distance.
        score = rank[picks].astype(jnp.float32) - jnp.arctan(crowding[picks]) / jnp.pi
        parents = state.genes[jnp.take_along_axis(picks, jnp.argmin(score, 1)[:, None], 1)[:, 0]]
        children = mutate_one(key_mutate, parents, self.cardinality)
        fresh = random_genes(key_random, self.cardinality, self.batch_size)
        return jnp.where(state.n_filled < self.population_size, fresh, children), state

    def _tell(self, key, genes, objectives, constraints, state, params):
        # The batch replaces the `batch_size` oldest slots (the empty ones while filling).
        slots = (state.oldest + jnp.arange(self.batch_size)) % self.population_size
        return state.replace(
            genes=state.genes.at[slots].set(genes),
            objectives=state.objectives.at[slots].set(objectives.astype(jnp.float32)),
            violation=state.violation.at[slots].set(total_violation(constraints)),
            oldest=(state.oldest + self.batch_size) % self.population_size,
            n_filled=jnp.minimum(state.n_filled + self.batch_size, self.population_size),
            generation=state.generation + 1,
        )
