"""NSGA-II on architecture genes (Deb et al., "A fast and elitist multiobjective genetic
algorithm: NSGA-II", IEEE TEVC 2002).

Each generation: binary tournaments on (non-dominated rank, crowding distance) pick parents,
per-gene uniform crossover (evosax's SimpleGA operator) and categorical mutation make
`population_size` children, and (mu + lambda) survivor selection by rank and crowding keeps
the best `population_size` of parents and children. Duplicate architectures are eliminated
before survival, as pymoo does by default: a child equal to a parent or to an earlier child
(canonical genes) ranks behind every distinct arch, so a large population on a discrete space
does not fill up with copies of its best points. Constraints: Deb's constrained domination
(feasible first, infeasible by total violation), in tournaments and survival.

evosax 0.3.2 fits only in part: its strategies select on one scalar fitness and its
mutation is Gaussian on reals, so the multi-objective selection (hwgpt_jax.pareto) and the
categorical mutation (resample a gene to another choice) are ours; its uniform crossover is
used as is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hwgpt_jax.pareto import nsga2_survival
from hwgpt_jax.search.base import (
    GeneLayout,
    SearchAlgorithm,
    duplicate_rows,
    mutate,
    random_genes,
    total_violation,
    uniform_crossover,
)
from hwgpt_jax.space import SearchSpace


@struct.dataclass
class State:
    genes: jax.Array  # (P, G) current population
    objectives: jax.Array  # (P, M); +inf before the first tell
    violation: jax.Array  # (P,)
    rank: jax.Array  # (P,) non-dominated rank within the population
    crowding: jax.Array  # (P,)
    generation: jax.Array


@struct.dataclass
class Params:
    crossover_rate: float = 0.5  # per-gene probability of taking the second parent's gene
    crossover_probability: float = 0.9  # probability that a child is a crossover at all
    mutation_rate: float = -1.0  # per-gene; < 0 means 1 / number of genes


class NSGA2(SearchAlgorithm):
    """NSGA-II with `population_size` children per generation."""

    name = "nsga2"

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 population_size: int = 256):
        super().__init__(space, n_objectives, n_constraints)
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2; got {population_size}")
        self.population_size = population_size
        self.batch_size = population_size
        self.min_budget = population_size

    @property
    def default_params(self) -> Params:
        return Params()

    def _init(self, key, params):
        p = self.population_size
        return State(
            genes=random_genes(key, self.cardinality, p),
            objectives=jnp.full((p, self.n_objectives), jnp.inf, jnp.float32),
            violation=jnp.zeros((p,), jnp.float32),
            rank=jnp.zeros((p,), jnp.int32),
            crowding=jnp.zeros((p,), jnp.float32),
            generation=jnp.int32(0),
        )

    def _tournament(self, key, state):
        """Binary tournament: lower rank wins, then larger crowding distance."""
        pairs = jax.random.randint(key, (self.population_size, 2), 0, self.population_size)
        first, second = pairs[:, 0], pairs[:, 1]
        first_wins = (state.rank[first] < state.rank[second]) | (
            (state.rank[first] == state.rank[second])
            & (state.crowding[first] >= state.crowding[second])
        )
        return jnp.where(first_wins, first, second)

    def _ask(self, key, state, params):
        key_a, key_b, key_cross, key_do, key_mutate = jax.random.split(key, 5)
        mother = state.genes[self._tournament(key_a, state)]
        father = state.genes[self._tournament(key_b, state)]
        crossed = uniform_crossover(key_cross, mother, father, params.crossover_rate)
        do_cross = jax.random.uniform(key_do, (self.population_size, 1)) < (
            params.crossover_probability)
        children = jnp.where(do_cross, crossed, mother)
        rate = jnp.where(params.mutation_rate < 0, 1.0 / self.n_genes, params.mutation_rate)
        children = mutate(key_mutate, children, self.cardinality, rate)
        # The first generation evaluates the random initial population itself.
        return jnp.where(state.generation == 0, state.genes, children), state

    def _tell(self, key, genes, objectives, constraints, state, params):
        violation = total_violation(constraints)
        all_genes = jnp.concatenate([state.genes, genes])
        all_objectives = jnp.concatenate([state.objectives, objectives.astype(jnp.float32)])
        all_violation = jnp.concatenate([state.violation, violation])
        # Before the first tell the "parents" are the unevaluated initial population: drop them.
        all_violation = all_violation.at[: self.population_size].set(
            jnp.where(state.generation == 0, jnp.inf, state.violation))
        # Copies rank last (behind the infeasible): with violation inf they survive only when
        # fewer distinct archs than population_size exist.
        # (Generation 0's children are the unevaluated parents' genes: no copies there.)
        copies = duplicate_rows(GeneLayout.of(self.space).canonical(all_genes),
                                self.cardinality) & (
            state.generation > 0)
        all_violation = jnp.where(copies & (all_violation < jnp.inf), jnp.inf, all_violation)
        keep, rank, crowding = nsga2_survival(
            all_objectives, self.population_size, violation=all_violation)
        return State(
            genes=all_genes[keep],
            objectives=all_objectives[keep],
            violation=all_violation[keep],
            rank=rank[keep],
            crowding=crowding[keep],
            generation=state.generation + 1,
        )
