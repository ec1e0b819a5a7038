"""Random search: every batch drawn uniformly from the space (Bergstra & Bengio, JMLR 2012).

The multi-objective baseline of HW-GPT-Bench (arXiv 2405.10299); its Pareto set is the
non-dominated subset of everything evaluated, which the runner keeps.
"""

from __future__ import annotations

import jax
from flax import struct

from hwgpt_jax.search.base import SearchAlgorithm
from hwgpt_jax.space.arch import SearchSpace
from hwgpt_jax.space.rules import random_genes


@struct.dataclass
class State:
    generation: jax.Array


@struct.dataclass
class Params:
    pass


class RandomSearch(SearchAlgorithm):
    """Uniform random architectures, `batch_size` per ask."""

    name = "random_search"

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 batch_size: int = 256):
        super().__init__(space, n_objectives, n_constraints)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.batch_size = batch_size
        self.min_budget = batch_size

    @property
    def default_params(self) -> Params:
        return Params()

    def _init(self, key, params):
        return State(generation=jax.numpy.int32(0))

    def _ask(self, key, state, params):
        return random_genes(key, self.cardinality, self.batch_size), state

    def _tell(self, key, genes, objectives, constraints, state, params):
        return state.replace(generation=state.generation + 1)
