"""Run an ask/tell algorithm on a problem for an evaluation budget and keep every evaluation.

`run_compiled` runs the whole search as one `lax.scan` (what `hwgpt search` and the benchmarks
use; progress comes back from inside the program); `run_search` loops in Python (one jit call
each for ask, evaluate and tell), for stepping through a search by hand. Both return the full
trajectory; hypervolume over evaluations is computed on normalized objectives from it
(`hypervolume_curve`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hwgpt_jax.search.base import Problem, SearchAlgorithm, total_violation
from hwgpt_jax.search.pareto import hypervolume, non_dominated_mask, normalize_objectives
from hwgpt_jax.space.rules import canonical_genes


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Every evaluation of one search run, in evaluation order (NumPy arrays).

    Attributes:
      genes: (E, G) int32 canonical genes (0 past the depth); objectives: (E, M);
      constraints: (E, C) margins (<= 0 feasible);
      step: (E,) ask index of each evaluation; algorithm, seed: what made it.
    """

    genes: np.ndarray
    objectives: np.ndarray
    constraints: np.ndarray
    step: np.ndarray
    algorithm: str
    seed: int

    @property
    def feasible(self) -> np.ndarray:
        return np.all(self.constraints <= 0, axis=1)

    def pareto_mask(self) -> np.ndarray:
        """(E,) bool: feasible, non-dominated, first occurrence of its gene row."""
        feasible = self.feasible
        mask = np.zeros(len(self.genes), bool)
        if not feasible.any():
            return mask
        index = np.flatnonzero(feasible)
        front = np.asarray(non_dominated_mask(jnp.asarray(self.objectives[index])))
        mask[index[front]] = True
        _, first = np.unique(self.genes, axis=0, return_index=True)
        unique = np.zeros(len(self.genes), bool)
        unique[first] = True
        return mask & unique


def check_budget(algorithm: SearchAlgorithm, budget: int) -> int:
    """Number of asks for `budget` evaluations; rejects a budget below one population."""
    if budget < algorithm.min_budget:
        raise ValueError(f"budget {budget} is smaller than what {algorithm.name} needs for one "
                         f"population/batch ({algorithm.min_budget} evaluations)")
    return budget // algorithm.batch_size


def run_search(algorithm: SearchAlgorithm, problem: Problem, budget: int, key: jax.Array,
               params: Any = None, seed: int = 0,
               progress: Callable[[int], None] | None = None) -> SearchResult:
    """Run ask -> evaluate -> tell until `budget` evaluations (rounded down to whole batches).

    Args:
      progress: called with the number of evaluations done after every batch.
    """
    n_steps = check_budget(algorithm, budget)
    params = algorithm.default_params if params is None else params
    evaluate = partial(evaluate_genes, problem)
    key, key_init = jax.random.split(key)
    state = algorithm.init(key_init, params)
    genes, objectives, constraints = [], [], []
    for step in range(n_steps):
        key, key_ask, key_eval, key_tell = jax.random.split(key, 4)
        batch, state = algorithm.ask(key_ask, state, params)
        values, margins = evaluate(batch, key_eval)
        state = algorithm.tell(key_tell, batch, values, margins, state, params)
        genes.append(np.asarray(canonical_genes(algorithm.space, batch)))
        objectives.append(np.asarray(values))
        constraints.append(np.asarray(margins))
        if progress is not None:
            progress((step + 1) * algorithm.batch_size)
    return SearchResult(
        genes=np.concatenate(genes), objectives=np.concatenate(objectives),
        constraints=np.concatenate(constraints),
        step=np.repeat(np.arange(n_steps), algorithm.batch_size), algorithm=algorithm.name,
        seed=seed)


@partial(jax.jit, static_argnames=("problem",))
def evaluate_genes(problem: Problem, genes: jax.Array, key: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
    """`problem.evaluate`, compiled once per problem (not once per run): (objectives, margins)."""
    return problem.evaluate(genes, key)


@partial(jax.jit, static_argnames=("algorithm", "problem", "n_steps", "report"))
def _scan(algorithm, problem, n_steps, key, params, report=False):
    key, key_init = jax.random.split(key)
    state = algorithm.init(key_init, params)

    def step(state, inputs):
        key, index = inputs
        key_ask, key_eval, key_tell = jax.random.split(key, 3)
        batch, state = algorithm._ask(key_ask, state, params)
        values, margins = problem.evaluate(batch, key_eval)
        state = algorithm._tell(key_tell, batch, values, margins, state, params)
        if report:  # the host hears of each evaluated batch, in order
            jax.debug.callback(_report, (index + 1) * algorithm.batch_size, values[0, 0],
                               ordered=True)
        return state, (batch, values, margins)

    return jax.lax.scan(step, state, (jax.random.split(key, n_steps), jnp.arange(n_steps)))


# The progress callback of the `run_compiled` call in flight: the compiled program calls the
# module-level `_report`, so changing the callback never recompiles the search.
_progress: list[Callable[[int], None]] = []


def _report(done: Any, _after: Any) -> None:
    # `_after` (one of the batch's objectives) makes the call wait for the batch's evaluation.
    if _progress:
        _progress[-1](int(done))


def available_memory_bytes(device: jax.Device) -> int | None:
    """Memory a run may use on `device`: the accelerator's free memory, or this machine's
    free physical memory for the CPU (other processes hold the rest; None when unknown)."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(algorithm: SearchAlgorithm, n_steps: int, compiled: Any) -> None:
    """One-line ValueError, before anything runs, when the compiled search would not fit.

    The compiler's memory analysis gives the working buffers and the trajectory it returns;
    the trajectory is counted three times (device result, canonical genes, host copies).
    """
    analysis = compiled.memory_analysis()
    device = jax.devices()[0]
    available = available_memory_bytes(device)
    if analysis is None or available is None:
        return
    working = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
    trajectory = analysis.output_size_in_bytes
    needed = working + 3 * trajectory
    if needed > available:
        raise ValueError(
            f"{algorithm.name} with {algorithm.batch_size} candidates x {n_steps} steps needs "
            f"about {needed / 2**30:.1f} GiB ({working / 2**30:.1f} GiB working memory, "
            f"{trajectory / 2**30:.1f} GiB trajectory x 3) but {device.platform} has "
            f"{available / 2**30:.1f} GiB free; use a smaller population or budget")


@functools.lru_cache(maxsize=32)
def _check_scan_memory(algorithm: SearchAlgorithm, problem: Problem, n_steps: int,
                       report: bool) -> None:
    """`check_memory` of the compiled scan, once per configuration (compiling ahead of time
    gives the memory analysis; the jitted call of `run_compiled` then reuses the executable)."""
    lowered = _scan.lower(algorithm, problem, n_steps, jax.random.key(0),
                          algorithm.default_params, report)
    check_memory(algorithm, n_steps, lowered.compile())


def run_compiled(algorithm: SearchAlgorithm, problem: Problem, budget: int, key: jax.Array,
                 params: Any = None, seed: int = 0,
                 progress: Callable[[int], None] | None = None) -> tuple[Any, SearchResult]:
    """Like `run_search`, as one compiled `lax.scan`; returns (final state, result).
    A run that would not fit in memory is refused before it starts (`check_memory`).

    Args:
      progress: called from the running program with the number of evaluations done after
        each batch, in order; the last call comes before this function returns.
    """
    n_steps = check_budget(algorithm, budget)
    params = algorithm.default_params if params is None else params
    report = progress is not None
    _check_scan_memory(algorithm, problem, n_steps, report)
    if report:
        _progress.append(progress)
    try:
        state, (genes, objectives, constraints) = _scan(algorithm, problem, n_steps, key,
                                                        params, report)
        if report:
            jax.effects_barrier()  # every batch reported before the callback goes away
    finally:
        if report:
            _progress.pop()
    genes = canonical_genes(algorithm.space, genes)
    flat = lambda x: np.asarray(x).reshape((x.shape[0] * x.shape[1],) + x.shape[2:])  # noqa: E731
    return state, SearchResult(
        genes=flat(genes), objectives=flat(objectives), constraints=flat(constraints),
        step=np.repeat(np.arange(n_steps), algorithm.batch_size), algorithm=algorithm.name,
        seed=seed)


def hypervolume_curve(result: SearchResult, lower: np.ndarray, upper: np.ndarray,
                      ref_point: np.ndarray | None = None, every: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Hypervolume of the feasible points evaluated so far, after every `every` evaluations
    (default: every batch), on objectives min-max normalized by (lower, upper).

    Returns (evaluations (K,), hypervolume (K,)); the reference point defaults to 1 in every
    normalized objective.
    """
    n_evals = len(result.genes)
    every = int(np.sum(result.step == 0)) if every is None else every
    normalized = normalize_objectives(result.objectives.astype(np.float64), lower, upper)
    ref_point = np.ones(normalized.shape[1]) if ref_point is None else np.asarray(ref_point)
    feasible = result.feasible
    counts = np.arange(every, n_evals + 1, every)
    if counts.size == 0 or counts[-1] != n_evals:
        counts = np.append(counts, n_evals)
    values = [hypervolume(normalized[:c][feasible[:c]], ref_point) for c in counts]
    return counts, np.asarray(values)


def infeasibility_message(result: SearchResult, problem: Problem) -> str | None:
    """A one-line explanation when no evaluated architecture satisfied the constraints."""
    if result.feasible.any() or problem.n_constraints == 0:
        return None
    names = problem.metric_names[problem.n_objectives:] or tuple(
        f"constraint {i}" for i in range(problem.n_constraints))
    best = result.constraints.min(axis=0)
    parts = [f"{name}: smallest margin {margin:+.4g} (relative to the bound)"
             for name, margin in zip(names, best)]
    return (f"no evaluated architecture satisfies the constraints ({len(result.genes)} "
            f"evaluations by {result.algorithm}); " + "; ".join(parts))


__all__ = ["SearchResult", "available_memory_bytes", "check_budget", "check_memory",
           "hypervolume_curve", "infeasibility_message", "run_compiled", "run_search",
           "total_violation"]
