"""Objective sources for search: analytic costs, the surrogate `Benchmark`, the supernet
itself, synthetic MLPs.

An objective function maps an `Arch` population and a PRNG key to (N, M) values to minimize,
and is pure and jit-able. `build_problem` turns metric names as the CLI spells them
(`perplexity,latency:a100,energy:a6000,params,flops,supernet_perplexity`) and constraints like
`latency:a100<=20` into a `Problem`: one function that evaluates every needed metric at once.

`supernet_perplexity` scores archs with the trained supernet's inherited weights, as
HW-GPT-Bench does for its quality tables (Sukthanker et al., arXiv 2405.10299, Sec. 3;
weight inheritance as in one-shot NAS, Bender et al. 2018): exp of the mean next-token
cross-entropy on fixed validation windows, computed inside the search's jit call instead of
queried from a surrogate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from hwgpt_jax.measure.quality import batch_windows, check_windows, window_sums
from hwgpt_jax.model.supernet import check_params, slice_embed_dim
from hwgpt_jax.search.base import Problem
from hwgpt_jax.space.arch import Arch, SearchSpace
from hwgpt_jax.space.costs import forward_flops, param_count
from hwgpt_jax.space.encoding import onehot, onehot_size

ANALYTIC_METRICS = ("params", "flops")
SUPERNET_METRIC = "supernet_perplexity"
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


def supernet_perplexity(params: Any, windows: Any, space: SearchSpace, *,
                        arch_batch: int = 1, window_batch: int = 1
                        ) -> Callable[[Arch, jax.Array], jax.Array]:
    """The supernet's validation perplexity as an (arch, key) -> (N,) float32 objective.

    perplexity = exp(mean next-token cross-entropy over every target token of `windows`),
    softmax over the padded vocabulary, as `hwgpt_jax.measure.quality` computes it. The arch is
    traced data, so one compiled program serves every population; the key is unused.

    Memory stays bounded for any population size: archs are evaluated by `lax.map`, one at
    a time (`arch_batch=1`) or `vmap`-ed in chunks of `arch_batch`, windows are scanned
    `window_batch` at a time, and the loss is `evaluate.window_sums` (the tied head scanned
    over vocabulary chunks, never the whole logits). With `arch_batch=1` an arch costs about
    what its sub-network costs: `lax.switch` runs the parameters sliced to its embed dim, and
    the supernet's conditional mode skips inactive blocks and unused head and hidden widths.
    Under vmap a conditional computes every branch, so chunks run the full-width masked
    supernet: more work per arch, but more parallel work per step for an accelerator.

    Args:
      params: supernet parameters of `space` (`model.checkpoints.load_trained_params`). They
        become constants of the search's compiled program.
      windows: (n, seq + 1) integer token windows (`evaluate.run_validation_windows`).
      space: the supernet's search space.
      arch_batch, window_batch: chunk sizes (positive integers).
    """
    check_params(params, space)
    windows = check_windows(windows, space)
    for name, value in (("arch_batch", arch_batch), ("window_batch", window_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}; expected a positive integer")
    batches, weights = batch_windows(windows, window_batch)  # padding windows weigh 0
    params = jax.tree.map(jnp.asarray, params)

    def objective(arch: Arch, key: jax.Array) -> jax.Array:
        return _supernet_perplexities(params, batches, weights, _as_jax(arch), space,
                                      arch_batch)

    return objective


@partial(jax.jit, static_argnames=("space", "arch_batch"))
def _supernet_perplexities(params: Any, batches: jax.Array, weights: jax.Array, arch: Arch,
                           space: SearchSpace, arch_batch: int) -> jax.Array:
    """(N,) perplexities of archs (batch shape (N,)) over window batches (NB, B, T + 1).

    Jitted with the parameters as arguments, so a call outside jit compiles once per
    population shape and embeds no weights; inside the search's jit it is inlined.
    """
    n_tokens = weights.sum() * (batches.shape[-1] - 1)
    dims = jnp.asarray(space.embed_dims)

    def sequential(one: Arch) -> jax.Array:  # batch shape (): real conditionals
        branches = [lambda a, d=d: window_sums(slice_embed_dim(params, d, max(space.mlp_ratios)),
                                               batches, weights, a, space, True)[0]
                    for d in space.embed_dims]
        return lax.switch(jnp.searchsorted(dims, one.embed_dim), branches, one)

    def chunked(one: Arch) -> jax.Array:  # vmapped by lax.map: full-width masks
        return window_sums(params, batches, weights, one, space, False)[0]

    if arch_batch == 1:
        nll = lax.map(sequential, arch)
    else:
        nll = lax.map(chunked, arch, batch_size=arch_batch)
    return jnp.exp(nll / n_tokens).astype(jnp.float32)


def parse_constraint(text: str) -> tuple[str, str, float]:
    """'latency:a100<=20' -> ('latency:a100', '<=', 20.0); also '>='."""
    match = _CONSTRAINT.match(text)
    if not match:
        raise ValueError(f"constraint {text!r} is not of the form METRIC<=VALUE or "
                         f"METRIC>=VALUE (e.g. latency:a100<=20)")
    return match.group(1), match.group(2), float(match.group(3))


def build_problem(space: SearchSpace, objectives: Sequence[str],
                  constraints: Sequence[str] = (), bench: Any = None,
                  mode: str = "median",
                  supernet: Callable[[Arch, jax.Array], jax.Array] | None = None) -> Problem:
    """A `Problem` minimizing the named metrics subject to constraints.

    Args:
      space: the search space.
      objectives: metric names; `params`/`flops` are analytic, `supernet_perplexity` comes
        from `supernet`, every other name is queried from `bench` (the surrogate
        `Benchmark`, keys like 'perplexity', 'latency:a100').
      constraints: strings like 'latency:a100<=20' (or '>=', turned into <= on the negation).
      bench: a `hwgpt_jax.surrogates.benchmark.Benchmark`, needed for surrogate metrics.
      mode: 'median' or 'sample' (noisy hardware, drawn with the evaluation key).
      supernet: the `supernet_perplexity` objective (an (arch, key) -> (N,) function, e.g.
        from `supernet_perplexity(params, windows, space)`), needed for that metric.
    """
    if not objectives:
        raise ValueError("at least one objective is needed; got none")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"objectives must be distinct; got {list(objectives)}")
    parsed = [parse_constraint(c) for c in constraints]
    names = list(objectives) + [name for name, _, _ in parsed]
    signs = [1.0] * len(objectives) + [1.0 if op == "<=" else -1.0 for _, op, _ in parsed]
    upper = tuple(bound if op == "<=" else -bound for _, op, bound in parsed)
    if SUPERNET_METRIC in names and supernet is None:
        raise ValueError(f"{SUPERNET_METRIC} needs a trained supernet (pass --checkpoint RUN "
                         f"on the command line, or supernet=supernet_perplexity(...))")
    computed = (*ANALYTIC_METRICS, SUPERNET_METRIC)  # everything else is a surrogate metric
    surrogate = [n for n in dict.fromkeys(names) if n not in computed]
    if surrogate and bench is None:
        raise ValueError(f"unknown objective(s) {surrogate}: without surrogates only the "
                         f"analytic metrics {list(ANALYTIC_METRICS)} are available (pass "
                         f"--surrogates DIR for perplexity, latency:<device>, energy:<device>)")
    bench_fn = bench.objective_fn(surrogate, mode=mode) if surrogate else None
    direct = {n: analytic_metric(n, space) for n in dict.fromkeys(names)
              if n in ANALYTIC_METRICS}
    if SUPERNET_METRIC in names:
        direct[SUPERNET_METRIC] = supernet

    def metrics_fn(arch: Arch, key: jax.Array) -> jax.Array:
        columns = {}
        if bench_fn is not None:
            values = bench_fn(arch, key)
            columns.update({n: values[:, i] for i, n in enumerate(surrogate)})
        columns.update({n: fn(arch, key) for n, fn in direct.items()})
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
