"""The space rules (genes, canonical padding, validity) against a plain-Python reference, on
random and edge-case archs of every scale, with NumPy input and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hwgpt_jax.space import rules
from hwgpt_jax.space.arch import SPACES, Arch


def reference_valid(space, e, n, heads, ratios):
    per_layer = all((h in space.n_heads and r in space.mlp_ratios) if j < n else h == r == 0
                    for j, (h, r) in enumerate(zip(heads, ratios, strict=True)))
    return e in space.embed_dims and n in space.n_layers and per_layer


def reference_canonical(space, genes):
    depth = space.n_layers[genes[1]]
    lmax = space.max_layers
    return genes[:3] + [g if j < depth else 0 for j, g in enumerate(genes[3 : 3 + lmax])] + [
        g if j < depth else 0 for j, g in enumerate(genes[3 + lmax :])]


def reference_genes(space, e, n, b, heads, ratios):
    return reference_canonical(space, [space.embed_dims.index(e), space.n_layers.index(n), int(b)]
                               + [space.n_heads.index(h) if h else 0 for h in heads]
                               + [space.mlp_ratios.index(r) if r else 0 for r in ratios])


def edge_case_archs(space, rng, n=150):
    """Random archs, about half breaking one rule (bad value, bad depth, non-zero padding)."""
    lmax = space.max_layers
    fields = {"embed_dim": [], "n_layer": [], "n_head": [], "mlp_ratio": [], "bias": []}
    for i in range(n):
        fault = i % 8
        depth = min(space.n_layers) if fault in (4, 5) else int(rng.choice(space.n_layers))
        heads = [int(rng.choice(space.n_heads)) if j < depth else 0 for j in range(lmax)]
        ratios = [int(rng.choice(space.mlp_ratios)) if j < depth else 0 for j in range(lmax)]
        embed = int(rng.choice(space.embed_dims))
        if fault == 1:
            embed = embed + 1
        elif fault == 2:
            depth = min(space.n_layers) - 1
        elif fault == 3:
            heads[rng.integers(depth)] = 0 if i % 16 < 8 else max(space.n_heads) + 1
        elif fault == 4:
            ratios[-1] = -1
        elif fault == 5:
            heads[depth] = space.n_heads[0]
        for name, value in zip(fields, (embed, depth, heads, ratios, bool(i % 3)), strict=True):
            fields[name].append(value)
    return Arch(**{k: np.asarray(v, bool if k == "bias" else np.int32)
                   for k, v in fields.items()})


def rows(arch):
    return zip(arch.embed_dim.tolist(), arch.n_layer.tolist(), arch.bias.tolist(),
               arch.n_head.tolist(), arch.mlp_ratio.tolist(), strict=True)


@pytest.mark.parametrize("scale", list(SPACES))
def test_rules_match_the_reference_in_numpy_and_under_jit(scale):
    space = SPACES[scale]
    archs = edge_case_archs(space, np.random.default_rng(len(scale)))
    want = [reference_valid(space, e, n, h, r) for e, n, _, h, r in rows(archs)]
    assert 0 < sum(want) < len(want)
    valid_np = rules.is_valid(space, archs)
    assert isinstance(valid_np, np.ndarray) and valid_np.tolist() == want
    as_jax = jax.tree.map(jnp.asarray, archs)
    assert np.asarray(jax.jit(lambda a: rules.is_valid(space, a))(as_jax)).tolist() == want

    good = archs[np.asarray(want)]
    genes = [reference_genes(space, e, n, b, h, r) for e, n, b, h, r in rows(good)]
    assert rules.arch_genes(space, good).tolist() == genes
    np.testing.assert_array_equal(
        jax.jit(lambda a: rules.arch_genes(space, a))(jax.tree.map(jnp.asarray, good)), genes)
    back = space.from_genes(np.asarray(genes))
    assert isinstance(back.n_head, np.ndarray)
    jax.tree.map(np.testing.assert_array_equal, back, good)


@pytest.mark.parametrize("scale", list(SPACES))
def test_canonical_genes_match_the_reference(scale):
    space = SPACES[scale]
    genes = np.random.default_rng(3).integers(0, space.gene_cardinality, (200, len(
        space.gene_cardinality)), dtype=np.int32)
    want = [reference_canonical(space, row) for row in genes.tolist()]
    assert rules.canonical_genes(space, genes).tolist() == want
    np.testing.assert_array_equal(jax.jit(lambda g: rules.canonical_genes(space, g))(genes), want)


def test_validate_names_the_rule_that_failed():
    space = SPACES["tiny"]
    archs = edge_case_archs(space, np.random.default_rng(0), n=8)
    messages = []
    for i in range(1, 6):
        with pytest.raises(ValueError) as err:
            space.validate(archs[i : i + 1])
        messages.append(str(err.value))
    assert messages[0].startswith("embed_dim=") and messages[1].startswith("n_layer=")
    assert messages[2].startswith("n_head=") and "allowed choices" in messages[2]
    assert "past n_layer" in messages[4]
