"""Shared pieces of the search algorithms: the ask/tell interface, problems, gene operators.

Every algorithm follows evosax's pattern (Lange, "evosax: JAX-based evolution strategies",
GECCO 2023): an object holding static configuration, a `Params` dataclass of tunable values,
a `State` dataclass, and pure jit-compiled `init(key, params)`, `ask(key, state, params)`,
`tell(key, genes, objectives, constraints, state, params)`. Candidates are gene arrays
(int32 (B, G), choice indices, `SearchSpace.genes` layout); objectives are minimized.

Constraints enter as margins, (B, C) float, feasible iff every margin <= 0 (C may be 0).
Population methods use Deb's constrained domination on the total violation
sum(max(margin, 0)); the Bayesian-optimization methods model each margin with the GP and
multiply the acquisition by the probability of feasibility (Gardner et al., ICML 2014).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from evosax.algorithms.population_based.simple_ga import crossover as evosax_crossover

from hwgpt_jax.space.arch import Arch, SearchSpace

ObjectiveFn = Callable[[Arch, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A search problem: a space, a jit-able metrics function, and which columns are what.

    `metrics_fn(arch, key) -> (N, M + C)`: the first `n_objectives` columns are minimized;
    the remaining C columns are constrained by `constraint_upper` (value <= bound).
    `metric_names` name all M + C columns (for tables).
    """

    space: SearchSpace
    metrics_fn: ObjectiveFn
    n_objectives: int
    constraint_upper: tuple[float, ...] = ()
    metric_names: tuple[str, ...] = ()
    constraint_signs: tuple[float, ...] = ()  # -1 where a '>=' constraint was negated

    @property
    def n_constraints(self) -> int:
        return len(self.constraint_upper)

    def evaluate(self, genes: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(objectives (N, M), constraint margins (N, C)) of gene rows; jit-able.

        Margins are (value - bound) / max(|bound|, 1), so constraints of different units
        weigh alike in the total violation.
        """
        values = self.metrics_fn(self.space.from_genes(genes), key)
        objectives = values[:, : self.n_objectives]
        upper = jnp.asarray(self.constraint_upper, values.dtype)
        margins = (values[:, self.n_objectives :] - upper) / jnp.maximum(jnp.abs(upper), 1.0)
        return objectives, margins


def total_violation(constraints: jax.Array) -> jax.Array:
    """(N,) sum of positive constraint margins; 0 means feasible."""
    return jnp.sum(jnp.maximum(constraints, 0.0), axis=-1)


class SearchAlgorithm:
    """Base class: static configuration lives on the object, everything else in State/Params.

    Subclasses set `name`, implement `default_params`, `_init`, `_ask`, `_tell`, and set
    `batch_size` (rows per ask) and `min_budget` (evaluations needed before the first tell
    is meaningful, e.g. one population).
    """

    name: str = ""
    batch_size: int
    min_budget: int

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0):
        self.space = space
        self.cardinality = tuple(int(c) for c in np.asarray(space.gene_cardinality))
        if n_objectives < 1:
            raise ValueError(f"n_objectives must be >= 1; got {n_objectives}")
        self.n_genes = len(self.cardinality)
        self.n_objectives = n_objectives
        self.n_constraints = n_constraints

    def _configuration(self) -> tuple[Any, ...]:
        return (type(self), tuple(sorted(vars(self).items())))

    # Equal configurations are equal (and hash alike), so the jitted `init`/`ask`/`tell`
    # (static `self`) compile once for every algorithm object built with the same options.
    def __eq__(self, other: object) -> bool:
        return (isinstance(other, SearchAlgorithm)
                and self._configuration() == other._configuration())

    def __hash__(self) -> int:
        return hash(self._configuration())

    @property
    def default_params(self) -> Any:
        raise NotImplementedError

    @partial(jax.jit, static_argnames=("self",))
    def init(self, key: jax.Array, params: Any) -> Any:
        return self._init(key, params)

    @partial(jax.jit, static_argnames=("self",))
    def ask(self, key: jax.Array, state: Any, params: Any) -> tuple[jax.Array, Any]:
        """Next (batch_size, G) int32 genes to evaluate, and the updated state."""
        return self._ask(key, state, params)

    @partial(jax.jit, static_argnames=("self",))
    def tell(self, key: jax.Array, genes: jax.Array, objectives: jax.Array,
             constraints: jax.Array, state: Any, params: Any) -> Any:
        """Update the state with evaluated genes, objectives (B, M) and margins (B, C)."""
        return self._tell(key, genes, objectives, constraints, state, params)

    def _init(self, key, params):
        raise NotImplementedError

    def _ask(self, key, state, params):
        raise NotImplementedError

    def _tell(self, key, genes, objectives, constraints, state, params):
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Gene operators


def mutate(key: jax.Array, genes: jax.Array, cardinality: tuple[int, ...],
           rate: float | jax.Array) -> jax.Array:
    """Resample each gene with probability `rate` to a *different* choice (if it has one).

    One 32-bit draw per gene: the low 16 bits decide the flip (rate resolution 2^-16), the
    high 16 bits pick the shift (random bits are the costly part on a CPU).
    """
    card = jnp.asarray(cardinality, jnp.uint32)
    bits = jax.random.bits(key, genes.shape, jnp.uint32)
    flip = (bits & 0xFFFF).astype(jnp.float32) < rate * 65536.0
    # A shift by 1..card-1 modulo card is uniform over the other choices.
    shift = 1 + (((bits >> 16) * (card - 1)) >> 16).astype(jnp.int32)
    return jnp.where(flip & (card > 1), (genes + shift) % card.astype(jnp.int32), genes)


def mutate_one(key: jax.Array, genes: jax.Array, cardinality: tuple[int, ...]) -> jax.Array:
    """Change exactly one gene per row (chosen among genes with more than one choice)."""
    card = jnp.asarray(cardinality)
    key_pick, key_shift = jax.random.split(key)
    logits = jnp.where(card > 1, 0.0, -jnp.inf)
    which = jax.random.categorical(key_pick, logits, shape=genes.shape[:1])
    one_hot = jax.nn.one_hot(which, genes.shape[1], dtype=bool)
    shift = 1 + jnp.floor(jax.random.uniform(key_shift, genes.shape) * (card - 1)).astype(jnp.int32)
    return jnp.where(one_hot, (genes + shift) % card, genes)


def uniform_crossover(key: jax.Array, first: jax.Array, second: jax.Array,
                      rate: float | jax.Array) -> jax.Array:
    """Per-gene uniform crossover: each gene from `second` with probability `rate`.

    This is evosax's SimpleGA crossover operator, vmapped over rows; on integer genes its
    blend p1 * (1 - mask) + p2 * mask is an exact per-gene choice.
    """
    keys = jax.random.split(key, first.shape[0])
    child = jax.vmap(evosax_crossover, in_axes=(0, 0, 0, None))(keys, first, second, rate)
    return child.astype(jnp.int32)


def contains_rows(rows: jax.Array, table: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """(R,) bool: each row of `rows` (R, G) equals some (valid) row of `table` (T, G)."""
    equal = jnp.all(rows[:, None, :] == table[None, :, :], axis=-1)
    if valid is not None:
        equal = equal & valid[None, :]
    return jnp.any(equal, axis=1)


def duplicate_rows(rows: jax.Array, cardinality: tuple[int, ...]) -> jax.Array:
    """(N,) bool: the gene row (N, G) equals an earlier row (the first of equal rows is False).

    Each row is packed into a few 32-bit words (gene g takes ceil(log2(cardinality[g])) bits),
    then a stable lexicographic sort on the words puts equal rows next to each other in index
    order: a handful of sort passes instead of one per gene, or an O(N^2) comparison."""
    bits = [max(1, (c - 1).bit_length()) for c in cardinality]
    word, shift, used = [], [], 0
    for b in bits:
        if used % 32 + b > 32:
            used += 32 - used % 32  # start a new word
        word.append(used // 32)
        shift.append(used % 32)
        used += b
    n_words = used // 32 + (used % 32 > 0)
    shifted = rows.astype(jnp.uint32) << jnp.asarray(shift, jnp.uint32)  # disjoint bit fields
    in_word = jnp.asarray(word)[None, :] == jnp.arange(n_words)[:, None]  # (W, G)
    keys = jnp.stack([jnp.sum(jnp.where(in_word[w], shifted, 0), axis=-1, dtype=jnp.uint32)
                      for w in range(n_words)])  # (W, N)
    order = jnp.lexsort(keys[::-1])  # stable: equal rows keep their index order
    ordered = keys[:, order]
    same_as_previous = jnp.concatenate(
        [jnp.zeros((1,), bool), jnp.all(ordered[:, 1:] == ordered[:, :-1], axis=0)])
    return jnp.zeros(rows.shape[0], bool).at[order].set(same_as_previous)
