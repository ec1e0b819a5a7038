"""NSGA-II on architecture genes (Deb et al., "A fast and elitist multiobjective genetic
algorithm: NSGA-II", IEEE TEVC 2002), as an evosax algorithm.

Each generation: binary tournaments on (non-dominated rank, crowding distance) pick parents,
per-gene uniform crossover (evosax's SimpleGA operator) and categorical mutation make
`population_size` children, and (mu + lambda) survivor selection by rank and crowding keeps
the best `population_size` of parents and children. Duplicate architectures are eliminated
before survival, as pymoo does by default: a child equal to a parent or to an earlier child
(canonical genes) ranks behind every distinct arch. Constraints: Deb's constrained
domination (feasible first, infeasible by total violation), in tournaments and survival.

The population machinery is evosax's: `NSGA2Strategy` is an evosax `PopulationBasedAlgorithm`
on choice indices, and `NSGA2` runs it through the same multi-objective wrapper as every
`evosax:<Strategy>` (`hwgpt_jax.search.evosax_search`). The wrapper's nsga2 fitness shaping
ranks parents and children jointly by (rank, crowding), so survival is truncation on that
scalar and a tournament is won by the lower one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from evosax.algorithms.population_based.base import Params as BaseParams
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm
from evosax.algorithms.population_based.base import State as BaseState
from flax import struct

from hwgpt_jax.search.base import mutate, uniform_crossover
from hwgpt_jax.search.evosax_search import EvosaxSearch
from hwgpt_jax.space.arch import SearchSpace


@struct.dataclass
class State(BaseState):
    origin: jax.Array  # (P,) row of each member in (old members + children) at the last tell


@struct.dataclass
class Params(BaseParams):
    crossover_rate: float = 0.5  # per-gene probability of taking the second parent's gene
    crossover_probability: float = 0.9  # probability that a child is a crossover at all
    mutation_rate: float = -1.0  # per-gene; < 0 means 1 / number of genes


class NSGA2Strategy(PopulationBasedAlgorithm):
    """NSGA-II variation and (mu + lambda) survival on a scalar fitness that orders by
    (rank, crowding): the wrapper's nsga2 shaping of parents and children together."""

    genotype = "index"  # solutions hold choice indices (as floats)
    eliminate_duplicates = True
    truncation_survival = True  # only the order of the best population_size matters

    def __init__(self, population_size: int, solution: jax.Array,
                 cardinality: tuple[int, ...]):
        super().__init__(population_size, solution)
        self.cardinality = tuple(cardinality)

    @property
    def _default_params(self) -> Params:
        return Params()

    def _init(self, key, params):
        p, g = self.population_size, self.num_dims
        return State(population=jnp.zeros((p, g)), fitness=jnp.full((p,), jnp.inf),
                     origin=jnp.arange(p, dtype=jnp.int32), best_solution=jnp.zeros(g),
                     best_fitness=jnp.inf, generation_counter=0)

    def init(self, key, population, fitness, params):
        """The first evaluated population is told to an empty (all-worst) state."""
        return self.tell(key, population, fitness, self._init(key, params), params)[0]

    def _tournament(self, key, fitness):
        """Binary tournament: the lower shaped fitness (rank, then crowding) wins."""
        pairs = jax.random.randint(key, (self.population_size, 2), 0, fitness.shape[0])
        first, second = pairs[:, 0], pairs[:, 1]
        return jnp.where(fitness[first] <= fitness[second], first, second)

    def _ask(self, key, state, params):
        key_a, key_b, key_cross, key_do, key_mutate = jax.random.split(key, 5)
        genes = state.population.astype(jnp.int32)
        mother = genes[self._tournament(key_a, state.fitness)]
        father = genes[self._tournament(key_b, state.fitness)]
        crossed = uniform_crossover(key_cross, mother, father, params.crossover_rate)
        do_cross = jax.random.uniform(key_do, (self.population_size, 1)) < (
            params.crossover_probability)
        children = jnp.where(do_cross, crossed, mother)
        rate = jnp.where(params.mutation_rate < 0, 1.0 / self.num_dims, params.mutation_rate)
        children = mutate(key_mutate, children, self.cardinality, rate)
        return children.astype(jnp.float32), state

    def _tell(self, key, population, fitness, state, params):
        """(mu + lambda): keep the `population_size` lowest fitness of parents + children."""
        everyone = jnp.concatenate([state.population, population])
        all_fitness = jnp.concatenate([state.fitness, fitness])
        keep = jnp.argsort(all_fitness, stable=True)[: self.population_size].astype(jnp.int32)
        return state.replace(population=everyone[keep], fitness=all_fitness[keep], origin=keep)


class NSGA2(EvosaxSearch):
    """NSGA-II with `population_size` children per generation."""

    name = "nsga2"

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 population_size: int = 256):
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2; got {population_size}")
        super().__init__(space, n_objectives, n_constraints, strategy=NSGA2Strategy,
                         shaping="nsga2", population_size=population_size, archive_size=0)
