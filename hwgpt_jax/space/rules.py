"""The rules of a search space, written once for NumPy and for JAX.

Genes (choice indices), canonical padding of the layers past `n_layer`, validity and sampling
are array functions. Each takes its array module from its input: NumPy arrays give NumPy results
(host code: files, tables, error messages), jax arrays and tracers give jax results (inside
`jit`: the search algorithms, the benchmark's query). `SearchSpace`, the search algorithms and
`Benchmark` all call these functions, so the rules cannot drift apart.

Gene layout, int32 (..., 3 + 2 * Lmax): [embed, n_layer, bias, heads(Lmax), ratios(Lmax)].
A gene row is canonical when its per-layer genes past the chosen depth are 0; an arch is
canonical when its `n_head` and `mlp_ratio` are 0 past `n_layer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np


class SpaceChoices(Protocol):
    """What the rules read from a search space (`SearchSpace` has these)."""

    embed_dims: tuple[int, ...]
    n_layers: tuple[int, ...]
    n_heads: tuple[int, ...]
    mlp_ratios: tuple[int, ...]

    @property
    def max_layers(self) -> int: ...


def array_module(*arrays: Any) -> ModuleType:
    """`jax.numpy` if any input is a jax array (or tracer), else `numpy`."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def active_layers(n_layer: Any, max_layers: int) -> Any:
    """(..., Lmax) bool: layer j is active iff j < n_layer."""
    xp = array_module(n_layer)
    return xp.arange(max_layers) < xp.asarray(n_layer)[..., None]


def gene_mask(space: SpaceChoices, depth_gene: Any) -> Any:
    """(..., G) bool: the genes that count for a row whose depth gene is `depth_gene`."""
    xp = array_module(depth_gene)
    depth = xp.asarray(space.n_layers)[depth_gene]
    active = active_layers(depth, space.max_layers)
    ones = xp.ones(xp.shape(depth) + (3,), bool)
    return xp.concatenate([ones, active, active], axis=-1)


def canonical_genes(space: SpaceChoices, genes: Any) -> Any:
    """Genes with the per-layer genes past the chosen depth set to 0, so equal architectures
    have equal rows (for deduplication, archives and tables)."""
    xp = array_module(genes)
    return xp.where(gene_mask(space, genes[..., 1]), genes, 0).astype(xp.int32)


def arch_genes(space: SpaceChoices, arch: Any) -> Any:
    """Canonical genes of an arch whose values are in the space (not checked here)."""
    xp = array_module(arch.embed_dim, arch.n_layer, arch.n_head, arch.mlp_ratio)

    def index(choices: Sequence[int], values: Any) -> Any:
        return xp.searchsorted(xp.asarray(choices), xp.asarray(values))

    genes = xp.concatenate(
        [index(space.embed_dims, arch.embed_dim)[..., None],
         index(space.n_layers, arch.n_layer)[..., None],
         xp.asarray(arch.bias).astype(xp.int32)[..., None],
         index(space.n_heads, arch.n_head),
         index(space.mlp_ratios, arch.mlp_ratio)], axis=-1).astype(xp.int32)
    return canonical_genes(space, genes)


def genes_fields(space: SpaceChoices, genes: Any) -> dict[str, Any]:
    """The arch fields of gene rows (the inverse of `arch_genes`); genes past the depth are
    ignored, so the arch is canonical."""
    xp = array_module(genes)
    lmax = space.max_layers

    def pick(choices: Sequence[int], idx: Any) -> Any:
        return xp.asarray(choices, xp.int32)[idx]

    n_layer = pick(space.n_layers, genes[..., 1])
    active = active_layers(n_layer, lmax)
    zero = xp.zeros((), xp.int32)
    return {
        "embed_dim": pick(space.embed_dims, genes[..., 0]),
        "n_layer": n_layer,
        "n_head": xp.where(active, pick(space.n_heads, genes[..., 3 : 3 + lmax]), zero),
        "mlp_ratio": xp.where(active, pick(space.mlp_ratios, genes[..., 3 + lmax :]), zero),
        "bias": genes[..., 2] == 1,
    }


def invalid_entries(space: SpaceChoices, arch: Any) -> dict[str, Any]:
    """Bool masks of the entries that break the rules, per field: a value not among the
    choices, or (per-layer fields) a non-zero value past `n_layer`. Shapes as the fields."""
    xp = array_module(arch.embed_dim, arch.n_layer, arch.n_head, arch.mlp_ratio)

    def outside(values: Any, choices: Sequence[int]) -> Any:
        return ~xp.isin(xp.asarray(values), xp.asarray(choices))

    active = active_layers(arch.n_layer, space.max_layers)
    bad = {"embed_dim": outside(arch.embed_dim, space.embed_dims),
           "n_layer": outside(arch.n_layer, space.n_layers)}
    for name, choices in (("n_head", space.n_heads), ("mlp_ratio", space.mlp_ratios)):
        values = xp.asarray(getattr(arch, name))
        bad[name] = xp.where(active, outside(values, choices), values != 0)
    return bad


def is_valid(space: SpaceChoices, arch: Any) -> Any:
    """(...,) bool: every value is a choice of the space and the padding past n_layer is 0."""
    xp = array_module(arch.embed_dim, arch.n_layer, arch.n_head, arch.mlp_ratio)
    bad = invalid_entries(space, arch)
    return ~(bad["embed_dim"] | bad["n_layer"] | xp.any(bad["n_head"], axis=-1)
             | xp.any(bad["mlp_ratio"], axis=-1))


def random_genes(key: jax.Array, cardinality: Sequence[int], n: int) -> jax.Array:
    """(n, G) int32 genes, each uniform over its choices (canonical only if passed through
    `canonical_genes`; sampling by genes keeps every choice independent and uniform)."""
    # floor(u * k) of a float32 uniform (2**23 equally likely values) is uniform over k choices
    # up to a relative bias below 1e-6, at half the cost of `randint` (which draws twice the
    # random bits to be unbiased); sampling speed matters for populations of millions.
    high = jnp.asarray(cardinality, jnp.float32)
    uniform = jax.random.uniform(key, (n, high.shape[0]))
    return jnp.floor(uniform * high).astype(jnp.int32)
