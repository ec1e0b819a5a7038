"""Objective sources for search: analytic costs, the surrogate `Benchmark`, synthetic MLPs.

An objective function maps an `Arch` population and a PRNG key to (N, M) values to minimize,
and is pure and jit-able. `build_problem` turns metric names as the CLI spells them
(`perplexity,latency:a100,energy:a6000,params,flops`) and constraints like
`latency:a100<=20` into a `Problem`: one function that evaluates every needed metric at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from hwgpt_jax.costs import forward_flops, param_count
from hwgpt_jax.encoding import onehot, onehot_size
from hwgpt_jax.search.base import Problem
from hwgpt_jax.space import Arch, SearchSpace

ANALYTIC_METRICS = ("params", "flops")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w:.\-]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


def analytic_metric(name: str, space: SearchSpace, batch: int = 1,
                    seq: int | None = None) -> Callable[[Arch, jax.Array], jax.Array]:
    """`params` (parameter count) or `flops` (forward FLOPs on (batch, seq) tokens, seq
    defaulting to the space's block size) as an (arch, key) -> (N,) float32 function."""
    seq = space.block_size if seq is None else seq
    if name == "params":
        return lambda arch, key: param_count(_as_jax(arch), space)
    if name == "flops":
        return lambda arch, key: forward_flops(_as_jax(arch), space, batch, seq)
    raise ValueError(f"unknown analytic metric {name!r}; expected one of {ANALYTIC_METRICS}")


def _as_jax(arch: Arch) -> Arch:
    # costs.py returns exact int64 for NumPy input and float32 for JAX input; search wants
    # the jit-able float32 path in both cases.
    return jax.tree.map(jnp.asarray, arch)


def parse_constraint(text: str) -> tuple[str, str, float]:
    """'latency:a100<=20' -> ('latency:a100', '<=', 20.0); also '>='."""
    match = _CONSTRAINT.match(text)
    if not match:
        raise ValueError(f"constraint {text!r} is not of the form METRIC<=VALUE or "
                         f"METRIC>=VALUE (e.g. latency:a100<=20)")
    return match.group(1), match.group(2), float(match.group(3))


def build_problem(space: SearchSpace, objectives: Sequence[str],
                  constraints: Sequence[str] = (), bench: Any = None,
                  mode: str = "median") -> Problem:
    """A `Problem` minimizing the named metrics subject to constraints.

    Args:
      space: the search space.
      objectives: metric names; `params`/`flops` are analytic, every other name is queried
        from `bench` (the surrogate `Benchmark`, keys like 'perplexity', 'latency:a100').
      constraints: strings like 'latency:a100<=20' (or '>=', turned into <= on the negation).
      bench: a `hwgpt_jax.bench.Benchmark`, needed for non-analytic metrics.
      mode: 'median' or 'sample' (noisy hardware, drawn with the evaluation key).
    """
    if not objectives:
        raise ValueError("at least one objective is needed; got none")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"objectives must be distinct; got {list(objectives)}")
    parsed = [parse_constraint(c) for c in constraints]
    names = list(objectives) + [name for name, _, _ in parsed]
    signs = [1.0] * len(objectives) + [1.0 if op == "<=" else -1.0 for _, op, _ in parsed]
    upper = tuple(bound if op == "<=" else -bound for _, op, bound in parsed)
    surrogate = [n for n in dict.fromkeys(names) if n not in ANALYTIC_METRICS]
    if surrogate and bench is None:
        raise ValueError(f"unknown objective(s) {surrogate}: without surrogates only the "
                         f"analytic metrics {list(ANALYTIC_METRICS)} are available (pass "
                         f"--surrogates DIR for perplexity, latency:<device>, energy:<device>)")
    bench_fn = bench.objective_fn(surrogate, mode=mode) if surrogate else None
    analytic = {n: analytic_metric(n, space) for n in dict.fromkeys(names) if n not in surrogate}

    def metrics_fn(arch: Arch, key: jax.Array) -> jax.Array:
        columns = {}
        if bench_fn is not None:
            values = bench_fn(arch, key)
            columns.update({n: values[:, i] for i, n in enumerate(surrogate)})
        columns.update({n: fn(arch, key) for n, fn in analytic.items()})
        return jnp.stack([s * columns[n].astype(jnp.float32) for s, n in zip(signs, names)],
                         axis=1)

    return Problem(space, metrics_fn, len(objectives), upper, tuple(names),
                   tuple(signs[len(objectives):]))


def random_mlp_objective(space: SearchSpace, seed: int = 0, n_objectives: int = 2,
                         hidden: int = 64) -> Callable[[Arch, jax.Array], jax.Array]:
    """A fixed random-init MLP on the one-hot encoding: a synthetic, jit-able stand-in for
    surrogate objectives in tests and benchmarks (no trained model needed). The first
    output rises with model size and the second falls, so the objectives conflict."""
    key_1, key_2 = jax.random.split(jax.random.key(seed))
    size = onehot_size(space)
    w1 = jax.random.normal(key_1, (size, hidden)) / jnp.sqrt(size)
    w2 = jax.random.normal(key_2, (hidden, n_objectives)) / jnp.sqrt(hidden)
    log_min = jnp.log(param_count(_as_jax(space.smallest()), space))
    log_max = jnp.log(param_count(_as_jax(space.largest()), space))

    def objective(arch: Arch, key: jax.Array) -> jax.Array:
        # Model size on a log scale, 0 for the smallest and 1 for the largest arch.
        size_term = (jnp.log(param_count(_as_jax(arch), space)) - log_min) / (log_max - log_min)
        trend = jnp.where(jnp.arange(n_objectives) % 2 == 0, 1.0, -1.0) * size_term[:, None]
        return 4.0 * trend + jnp.tanh(onehot(arch, space) @ w1) @ w2

    return objective
