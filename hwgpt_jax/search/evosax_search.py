"""Any evosax strategy as a multi-objective architecture search (`evosax:<StrategyName>`).

evosax (Lange, GECCO 2023) strategies minimize one scalar fitness over real vectors. This
wrapper gives them (1) a genotype: one real per gene, decoded to choice indices, either a
value in the unit box of choices (`decode`; the default) or the choice index itself, rounded
(`genotype="index"`: a step of 1 is one choice in every gene, as a discrete GA mutates),
and (2) a scalar fitness from the objectives and constraint violation by a multi-objective
shaping (`hwgpt_jax.search.shaping`: nsga2, hv, chebyshev), computed before evosax's `tell`
(whose best-solution bookkeeping needs one scalar per candidate).

Selection stays consistent across generations: population-based strategies (SimpleGA, DE,
PSO, ...) keep earlier members with the fitness they were given then, and a per-generation
rank is not comparable with it. So the wrapper keeps the raw objectives of the strategy's
stored members, shapes stored members and new candidates jointly, writes the stored members'
new shaped fitness into the strategy state, then calls `tell`: every comparison the strategy
makes (DE's replacement, PSO's personal bests, GA elites) is within one ranking. After
`tell`, each stored row is matched to the candidate or old member with the same vector (at
any index: MR15_GA and LGA sort what they keep) to carry its objectives; a row matching
neither counts as unevaluated (worst).
Distribution-based strategies (CMA_ES, SNES, Open_ES, ...) keep no members; the batch alone
is shaped. A bounded Pareto archive (NSGA-II survival over archive + batch, copies dropped)
lives beside the strategy state. Everything is jit-able, so the runner's `lax.scan` applies.

Our own population methods (NSGA-II, MO-RE) are evosax `PopulationBasedAlgorithm`s too, run
by this same wrapper: they declare `genotype = "index"` (a real vector holding choice
indices, not the unit box), may keep more members than they ask per generation, report each
stored member's `origin` (its row in old members + new candidates) and may ask for copies of
an evaluated arch to rank last (`eliminate_duplicates`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from evosax.algorithms import algorithms as EVOSAX_STRATEGIES  # noqa: N812
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm
from flax import struct

from hwgpt_jax.search.base import (
    SearchAlgorithm,
    duplicate_rows,
    total_violation,
)
from hwgpt_jax.search.pareto import nsga2_survival
from hwgpt_jax.search.shaping import (
    HV_SAMPLES,
    SHAPINGS,
    get_shaping,
    hv_is_exact,
    nsga2_scores,
)
from hwgpt_jax.space.arch import Arch, SearchSpace
from hwgpt_jax.space.rules import canonical_genes, random_genes

PREFIX = "evosax:"
# evosax strategies whose `tell` keeps the best `population_size` of old members + new
# candidates: nsga2 shaping may stop ranking there (`nsga2_scores`).
TRUNCATION_SURVIVAL = frozenset({"MR15_GA"})
GENOTYPES = ("unit", "index")
# Strategy coordinate x maps to the unit value 0.5 + x / GENOTYPE_SPAN: evosax's unit-std
# defaults (std_init = 1, GA mutation std 1) then span the box of choices.
GENOTYPE_SPAN = 4.0


def unit_to_genes(unit: jax.Array, space: SearchSpace) -> jax.Array:
    """(..., G) values in [0, 1) -> canonical int32 choice indices (values outside clip to
    the first/last choice; genes past the chosen depth are 0)."""
    cardinality = jnp.asarray(space.gene_cardinality, jnp.int32)
    index = jnp.floor(jnp.nan_to_num(unit, nan=0.0) * cardinality)
    index = jnp.clip(index, 0, cardinality - 1).astype(jnp.int32)
    return canonical_genes(space, index)


def decode(unit: jax.Array, space: SearchSpace) -> Arch:
    """(..., G) unit-box genotype -> architectures (via `space.from_genes`)."""
    return space.from_genes(unit_to_genes(unit, space))


def strategy_names() -> list[str]:
    """Names of the evosax strategies, as `evosax:<name>`."""
    return [PREFIX + name for name in sorted(EVOSAX_STRATEGIES)]


def index_to_genes(x: jax.Array, space: SearchSpace) -> jax.Array:
    """(..., G) reals holding choice indices -> canonical int32 genes (rounded, clipped)."""
    cardinality = jnp.asarray(space.gene_cardinality, jnp.int32)
    index = jnp.clip(jnp.round(jnp.nan_to_num(x, nan=0.0)), 0, cardinality - 1).astype(jnp.int32)
    return canonical_genes(space, index)


@struct.dataclass
class State:
    strategy: Any  # the evosax strategy's state
    pending: jax.Array  # (B, G) the last asked strategy coordinates
    member_objectives: jax.Array  # (P, M) raw objectives of the strategy's stored members
    member_violation: jax.Array  # (P,)
    archive_genes: jax.Array  # (A, G) int32 canonical
    archive_objectives: jax.Array  # (A, M); +inf in empty slots
    archive_violation: jax.Array  # (A,); +inf in empty slots and for copies
    generation: jax.Array


@struct.dataclass
class Params:
    strategy: Any  # the evosax strategy's params


class EvosaxSearch(SearchAlgorithm):
    """Multi-objective search driving evosax strategy `strategy` with `population_size`."""

    def __init__(self, space: SearchSpace, n_objectives: int, n_constraints: int = 0,
                 strategy: str | type = "CMA_ES", shaping: str = "nsga2",
                 population_size: int = 256, archive_size: int = 1024,
                 strategy_options: tuple[tuple[str, Any], ...] = (),
                 strategy_params: Any = (), genotype: str | None = None):
        """`strategy`: an evosax strategy name or an evosax algorithm class (our own
        NSGA-II, MO-RE); `strategy_options`: extra constructor options of that class;
        `strategy_params`: values of fields of the strategy's evosax `Params` (pairs, a
        mapping or 'NAME=VALUE' strings, e.g. MR15_GA's `std_min=0.25`); `archive_size` 0
        keeps no archive (the runner's trajectory has every evaluation); `genotype`: 'unit'
        (a real per gene over the box of choices, evosax strategies' default) or 'index'
        (a real per gene holding the choice index, rounded: steps are in choices; our
        NSGA-II and MO-RE work on it only)."""
        super().__init__(space, n_objectives, n_constraints)
        if isinstance(strategy, str) and strategy not in EVOSAX_STRATEGIES:
            raise ValueError(f"unknown evosax strategy {strategy!r}; expected one of "
                             f"{sorted(EVOSAX_STRATEGIES)}")
        get_shaping(shaping)
        if shaping == "hv" and n_objectives < 2:
            raise ValueError(f"hv shaping needs 2 or more objectives; got {n_objectives} "
                             f"(use nsga2 or chebyshev shaping)")
        smallest = 2 if isinstance(strategy, str) else 1  # evosax's own need two members
        if population_size < smallest or archive_size < 0:
            raise ValueError(f"population_size must be >= {smallest} and archive_size >= 0; "
                             f"got {population_size}, {archive_size}")
        self.strategy_class = EVOSAX_STRATEGIES[strategy] if isinstance(strategy, str) else strategy
        self.strategy_name, self.shaping = self.strategy_class.__name__, shaping
        self.strategy_options = tuple(strategy_options)
        if isinstance(strategy, str):
            self.name = PREFIX + strategy
        own = getattr(self.strategy_class, "genotype", None)  # our classes: index only
        self.genotype = genotype or own or "unit"
        if self.genotype not in GENOTYPES or (own and self.genotype != own):
            raise ValueError(f"genotype {genotype!r} for {self.strategy_name}; expected "
                             f"{f'{own!r} (its only one)' if own else f'one of {GENOTYPES}'}")
        self.population_size = self.batch_size = self.min_budget = population_size
        self.archive_size = archive_size
        self.strategy_params: tuple[tuple[str, float], ...] = ()
        self._check_strategy()
        self.strategy_params = self._parse_params(strategy_params)
        if self.strategy_params:
            self._check_strategy()  # with the given values

    def _parse_params(self, given: Any) -> tuple[tuple[str, float], ...]:
        """Strategy params as sorted (name, float) pairs, each a field of its `Params`."""
        pairs = given.items() if isinstance(given, dict) else given
        fields = sorted(vars(self.strategy.default_params))
        parsed = {}
        for pair in pairs:
            if isinstance(pair, str) and "=" not in pair:
                raise ValueError(f"strategy parameter {pair!r}; expected NAME=VALUE")
            name, value = pair.split("=", 1) if isinstance(pair, str) else pair
            name = str(name).strip()
            if name not in fields:
                raise ValueError(f"unknown parameter {name!r} of evosax strategy "
                                 f"{self.strategy_name!r}; expected one of {fields}")
            try:
                parsed[name] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"strategy parameter {name}={value!r}; expected a "
                                 f"number") from None
        return tuple(sorted(parsed.items()))

    def _configuration(self) -> tuple[Any, ...]:
        return (type(self), self.space, self.n_objectives, self.n_constraints,
                self.strategy_class, self.strategy_options, self.strategy_params, self.shaping,
                self.population_size, self.archive_size, self.genotype)

    @property
    def shaping_note(self) -> str | None:
        """A one-line caveat on the shaping (None when it is exact), for reports."""
        if self.shaping == "hv" and not hv_is_exact(self.n_objectives):
            return (f"hv shaping on {self.n_objectives} objectives uses Monte-Carlo "
                    f"hypervolume contributions ({HV_SAMPLES} samples per front), not exact ones")
        return None

    @property
    def strategy(self) -> Any:
        """The evosax strategy object (built on demand: it is not part of the hash)."""
        options = dict(self.strategy_options)
        if getattr(self.strategy_class, "genotype", None) == "index":  # our NSGA-II, MO-RE
            options["cardinality"] = self.cardinality
        return self.strategy_class(population_size=self.population_size,
                                   solution=jnp.zeros(self.n_genes), **options)

    @property
    def truncation_survival(self) -> bool:
        """Whether the strategy keeps the best `population_size` of its members and the new
        candidates by fitness and compares no other fitness values than theirs (our NSGA-II;
        evosax's MR15_GA, whose step-size rule compares each child with its parent)."""
        return (getattr(self.strategy_class, "truncation_survival", False)
                or self.strategy_class.__name__ in TRUNCATION_SURVIVAL)

    @property
    def population_based(self) -> bool:
        return issubclass(self.strategy_class, PopulationBasedAlgorithm)

    def coordinates_to_genes(self, x: jax.Array) -> jax.Array:
        """(..., G) strategy coordinates -> canonical int32 genes."""
        if self.genotype == "index":
            return index_to_genes(x, self.space)
        return unit_to_genes(0.5 + x / GENOTYPE_SPAN, self.space)

    def _check_strategy(self) -> None:
        """Build the strategy and trace one init/ask/tell; any failure is one line."""
        try:
            key = jax.random.key(0)
            jax.eval_shape(lambda: self._tell(
                key, jnp.zeros((self.population_size, self.n_genes), jnp.int32),
                jnp.zeros((self.population_size, self.n_objectives)),
                jnp.zeros((self.population_size, self.n_constraints)),
                self._ask(key, self._init(key, self.default_params),
                          self.default_params)[1], self.default_params))
        except Exception as error:  # noqa: BLE001 - any evosax failure means "cannot run"
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise ValueError(
                f"evosax strategy {self.strategy_name!r} cannot run on the {self.n_genes}-gene "
                f"{'choice-index' if self.genotype == 'index' else 'unit-box'} genotype with "
                f"population_size {self.population_size}: {reason}"
            ) from None

    @property
    def default_params(self) -> Params:
        return Params(strategy=self.strategy.default_params.replace(**dict(self.strategy_params)))

    def _init(self, key, params):
        p, a, m = self.population_size, self.archive_size, self.n_objectives
        strategy, key_strategy, key_x = self.strategy, *jax.random.split(key)
        if self.population_based:
            strategy_state = strategy._init(key_strategy, params.strategy)
            if self.genotype == "index":
                pending = random_genes(key_x, self.cardinality, p).astype(jnp.float32)
            else:
                pending = jax.random.uniform(key_x, (p, self.n_genes), minval=-0.5, maxval=0.5)
                pending = pending * GENOTYPE_SPAN
            n_members = getattr(strategy_state, _member_fields(strategy_state)[0]).shape[0]
        else:  # the search distribution starts at the middle of the box of choices
            middle = (jnp.zeros(self.n_genes) if self.genotype == "unit" else
                      (jnp.asarray(self.cardinality, jnp.float32) - 1) / 2)
            strategy_state = strategy.init(key_strategy, middle, params.strategy)
            pending, n_members = jnp.zeros((p, self.n_genes)), p
        return State(
            strategy=_strong(strategy_state), pending=pending,
            member_objectives=jnp.full((n_members, m), jnp.inf),
            member_violation=jnp.zeros((n_members,)),
            archive_genes=jnp.zeros((a, self.n_genes), jnp.int32),
            archive_objectives=jnp.full((a, m), jnp.inf), archive_violation=jnp.full((a,), jnp.inf),
            generation=jnp.int32(0))

    def _ask(self, key, state, params):
        strategy = self.strategy
        if self.population_based:  # generation 0 evaluates the random initial population
            x, strategy_state = jax.lax.cond(
                state.generation == 0, lambda: (state.pending, state.strategy),
                lambda: strategy.ask(key, state.strategy, params.strategy))
        else:
            x, strategy_state = strategy.ask(key, state.strategy, params.strategy)
        state = state.replace(strategy=_strong(strategy_state), pending=x)
        return self.coordinates_to_genes(x), state

    def _tell(self, key, genes, objectives, constraints, state, params):
        key_shape, key_tell = jax.random.split(key)
        objectives = objectives.astype(jnp.float32)
        violation = total_violation(constraints).astype(jnp.float32)
        shape = get_shaping(self.shaping)
        if self.population_based:
            state = self._tell_members(key_shape, key_tell, objectives, violation, state, params)
        else:
            fitness = shape(key_shape, objectives, violation)
            strategy_state, _ = self.strategy.tell(key_tell, state.pending, fitness,
                                                   state.strategy, params.strategy)
            state = state.replace(strategy=_strong(strategy_state))
        if self.archive_size:
            state = self._update_archive(genes, objectives, violation, state)
        return state.replace(generation=state.generation + 1)

    def _tell_members(self, key_shape, key_tell, objectives, violation, state, params):
        """Joint shaping of stored members and new candidates, then the strategy's tell."""
        strategy, x = self.strategy, state.pending
        p = state.member_objectives.shape[0]
        population_field, fitness_field = _member_fields(state.strategy)
        old_members = getattr(state.strategy, population_field)
        all_objectives = jnp.concatenate([state.member_objectives, objectives])
        all_violation = jnp.concatenate([state.member_violation, violation])
        if getattr(self.strategy_class, "eliminate_duplicates", False):
            # A copy of an evaluated arch ranks behind every distinct one (as pymoo does);
            # before the first tell the members are unevaluated placeholders.
            genes = self.coordinates_to_genes(jnp.concatenate([old_members, x]))
            copies = duplicate_rows(genes, self.cardinality) & (state.generation > 0)
            all_violation = jnp.where(copies, jnp.inf, all_violation)
        if self.shaping == "nsga2" and self.truncation_survival:
            # Only the best p are kept and compared: rank no further, skip the centering sort.
            fitness = nsga2_scores(all_objectives, all_violation, p)
        else:
            fitness = get_shaping(self.shaping)(key_shape, all_objectives, all_violation)
        old_fitness, new_fitness = fitness[:p], fitness[p:]

        def first():
            return strategy.init(key_tell, x, new_fitness, params.strategy)

        def later():
            reshaped = state.strategy.replace(**{fitness_field: old_fitness})
            return strategy.tell(key_tell, x, new_fitness, reshaped, params.strategy)[0]

        strategy_state = jax.lax.cond(state.generation == 0, lambda: _strong(first()),
                                      lambda: _strong(later()))
        if hasattr(strategy_state, "origin"):  # the strategy says where each member came from
            return state.replace(
                strategy=strategy_state, member_objectives=all_objectives[strategy_state.origin],
                member_violation=all_violation[strategy_state.origin])
        # Strategies may reorder what they keep (MR15_GA and LGA select from old + new), so
        # each stored row is found by its vector among old members and new candidates.
        members = getattr(strategy_state, population_field)
        valid = (jnp.arange(p + x.shape[0]) >= p) | (state.generation > 0)
        origin, found = match_rows(members, jnp.concatenate([old_members, x]), valid)
        raw_violation = jnp.concatenate([state.member_violation, violation])
        return state.replace(
            strategy=strategy_state,
            member_objectives=jnp.where(found[:, None], all_objectives[origin], jnp.inf),
            member_violation=jnp.where(found, raw_violation[origin], jnp.inf))

    def _update_archive(self, genes, objectives, violation, state):
        """Keep the best `archive_size` of archive + batch by NSGA-II survival (copies last)."""
        all_genes = jnp.concatenate([state.archive_genes, genes])
        all_objectives = jnp.concatenate([state.archive_objectives, objectives])
        all_violation = jnp.concatenate([state.archive_violation, violation])
        copies = duplicate_rows(all_genes, self.cardinality) | ~jnp.all(
            jnp.isfinite(all_objectives), axis=1)
        all_violation = jnp.where(copies, jnp.inf, all_violation)
        keep = nsga2_survival(all_objectives, self.archive_size, violation=all_violation)[0]
        return state.replace(archive_genes=all_genes[keep], archive_objectives=all_objectives[keep],
                             archive_violation=all_violation[keep])


def match_rows(rows: jax.Array, source: jax.Array,
               valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For each row of `rows` (N, G), the index of an equal row of `source` (S, G) among the
    `valid` ones, and whether there is one. Rows are hashed from their float32 bits, looked up
    by a sort of the source hashes (O(S log S), not O(N S)), then compared whole."""
    def digest(a: jax.Array) -> jax.Array:
        bits = jax.lax.bitcast_convert_type(a.astype(jnp.float32), jnp.uint32)
        h = jnp.full(a.shape[:1], 2166136261, jnp.uint32)  # FNV-1a over the 32-bit words
        for column in range(a.shape[1]):
            h = (h ^ bits[:, column]) * jnp.uint32(16777619)
        return h

    source_keys = jnp.where(valid, digest(source), jnp.uint32(0))
    order = jnp.argsort(source_keys)
    ordered = source_keys[order]
    keys = digest(rows)
    slot = jnp.clip(jnp.searchsorted(ordered, keys), 0, source.shape[0] - 1)
    origin = order[slot]
    found = (ordered[slot] == keys) & valid[origin] & jnp.all(source[origin] == rows, axis=1)
    return origin, found


def _member_fields(strategy_state: Any) -> tuple[str, str]:
    """The strategy-state fields holding its stored members and their fitness (PSO keeps
    personal bests apart from the current particles)."""
    if hasattr(strategy_state, "population_best"):
        return "population_best", "fitness_best"
    return "population", "fitness"


def _strong(tree: Any) -> Any:
    """Drop weak types (evosax counters start as Python ints) so `cond`/`scan` types match."""
    return jax.tree.map(lambda leaf: jnp.array(leaf, dtype=jnp.asarray(leaf).dtype), tree)


__all__ = ["GENOTYPES", "GENOTYPE_SPAN", "PREFIX", "SHAPINGS", "EvosaxSearch", "decode",
           "index_to_genes", "match_rows", "strategy_names", "unit_to_genes"]
