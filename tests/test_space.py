import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgpt_jax.space.arch import SPACES, Arch, get_space


@pytest.mark.parametrize(
    ("scale", "embed", "layers", "heads", "head_size"),
    [
        ("tiny", (64, 128, 256), (2, 3, 4), (2, 4, 8), 32),
        ("s", (192, 384, 768), (10, 11, 12), (4, 8, 12), 64),
        ("m", (256, 512, 1024), (22, 23, 24), (8, 12, 16), 64),
        ("l", (320, 640, 1280), (34, 35, 36), (8, 16, 20), 64),
    ],
)
def test_spaces_match_design_table(scale, embed, layers, heads, head_size):
    space = get_space(scale)
    assert (space.embed_dims, space.n_layers, space.n_heads) == (embed, layers, heads)
    assert space.mlp_ratios == (2, 3, 4)
    assert space.head_size == head_size
    assert space.block_size == (256 if scale == "tiny" else 1024)
    assert space.max_layers == layers[-1]


def test_size_counts_per_layer_choices_up_to_depth():
    # tiny: 3 embed x 2 bias x sum over depth L of (3 heads x 3 ratios)^L
    assert get_space("tiny").size == 3 * 2 * (9**2 + 9**3 + 9**4)
    assert get_space("s").size == 6 * (9**10 + 9**11 + 9**12)


def _enumerate_tiny():
    space = get_space("tiny")
    records = []
    for e in space.embed_dims:
        for depth in space.n_layers:
            for layer_choice in np.ndindex(*(9,) * depth):
                heads = [space.n_heads[c // 3] for c in layer_choice]
                ratios = [space.mlp_ratios[c % 3] for c in layer_choice]
                for b in (False, True):
                    records.append(dict(embed_dim=e, n_layer=depth, n_head=heads,
                                        mlp_ratio=ratios, bias=b))
    return space.from_records(records)


def test_size_equals_enumeration_and_ids_are_distinct():
    space = get_space("tiny")
    archs = _enumerate_tiny()
    assert len(archs) == space.size
    assert len(set(space.arch_ids(archs))) == space.size
    assert len(np.unique(space.genes(archs), axis=0)) == space.size


def test_named_archs():
    space = get_space("s")
    largest, smallest, mid = space.largest(), space.smallest(), space.mid()
    assert space.arch_ids(largest)[0].startswith("s:e768-l12-h12.")
    assert int(smallest.embed_dim) == 192 and int(smallest.n_layer) == 10
    assert not bool(smallest.bias) and bool(largest.bias)
    assert int(mid.embed_dim) == 384 and int(mid.n_layer) == 11
    assert list(mid.n_head) == [8] * 11 + [0]
    for arch in (largest, smallest, mid):
        space.validate(arch)


def test_sample_covers_choices_uniformly():
    space = get_space("s")
    n = 60_000
    archs = space.sample(jax.random.key(0), n).to_numpy()
    space.validate(archs)
    for field, choices in (("embed_dim", space.embed_dims), ("n_layer", space.n_layers)):
        values = getattr(archs, field)
        freq = np.array([np.mean(values == c) for c in choices])
        np.testing.assert_allclose(freq, 1 / 3, atol=0.01)
    np.testing.assert_allclose(archs.bias.mean(), 0.5, atol=0.01)
    first_layer_heads = archs.n_head[:, 0]
    freq = np.array([np.mean(first_layer_heads == c) for c in space.n_heads])
    np.testing.assert_allclose(freq, 1 / 3, atol=0.01)
    # per-layer choices are independent: layer 0 and layer 1 heads co-occur at 1/9
    joint = np.mean((archs.n_head[:, 0] == 4) & (archs.n_head[:, 1] == 12))
    np.testing.assert_allclose(joint, 1 / 9, atol=0.01)
    last = archs.mlp_ratio[:, -1]  # layer 12 exists only for depth 12
    np.testing.assert_allclose(np.mean(last == 0), 2 / 3, atol=0.01)


def test_sample_is_deterministic_and_jittable():
    space = get_space("tiny")
    a = space.sample(jax.random.key(3), 50).to_numpy()
    b = jax.jit(lambda k: space.sample(k, 50))(jax.random.key(3)).to_numpy()
    c = space.sample(jax.random.key(4), 50).to_numpy()
    assert space.arch_ids(a) == space.arch_ids(b)
    assert space.arch_ids(a) != space.arch_ids(c)


def test_a_sample_is_the_first_rows_of_a_larger_one():
    """Outside jit, n archs are drawn as `padded_rows(n)` and cut: the rows do not depend on n."""
    space = get_space("s")
    key = jax.random.key(11)
    larger = space.genes(jax.tree.map(np.asarray, space.sample(key, 700)))
    for n in (1, 5, 70, 120, 600):
        sample = space.sample(key, n)
        assert sample.embed_dim.shape == (n,)
        np.testing.assert_array_equal(space.genes(jax.tree.map(np.asarray, sample)), larger[:n])


def test_sample_unique():
    space = get_space("tiny")
    archs = space.sample_unique(jax.random.key(0), 2000)
    assert len(archs) == 2000
    assert len(set(space.arch_ids(archs))) == 2000
    with pytest.raises(ValueError, match="only 44226"):
        space.sample_unique(jax.random.key(0), space.size + 1)


def test_padding_is_canonical_so_equal_archs_hash_equal():
    space = get_space("s")
    genes = space.genes(space.sample(jax.random.key(0), 500).to_numpy())
    noisy = genes.copy()
    rng = np.random.default_rng(0)
    # Rewrite the hidden per-layer genes past n_layer: the decoded arch must not change.
    depth = space.from_genes(genes).n_layer
    hidden = np.arange(space.max_layers) >= np.asarray(depth)[:, None]
    noisy[:, 3 : 3 + space.max_layers][hidden] = rng.integers(0, 3, hidden.sum())
    a, b = space.from_genes(genes).to_numpy(), space.from_genes(noisy).to_numpy()
    assert np.array_equal(a.n_head, b.n_head) and np.array_equal(a.mlp_ratio, b.mlp_ratio)
    assert space.arch_ids(a) == space.arch_ids(b)
    assert {hash(x.tobytes()) for x in a.n_head} == {hash(x.tobytes()) for x in b.n_head}
    np.testing.assert_array_equal(space.genes(a), space.genes(b))


arch_records = st.sampled_from(list(SPACES)).flatmap(
    lambda scale: st.tuples(
        st.just(scale),
        st.sampled_from(SPACES[scale].n_layers).flatmap(
            lambda depth: st.fixed_dictionaries({
                "embed_dim": st.sampled_from(SPACES[scale].embed_dims),
                "n_layer": st.just(depth),
                "n_head": st.lists(st.sampled_from(SPACES[scale].n_heads),
                                   min_size=depth, max_size=depth),
                "mlp_ratio": st.lists(st.sampled_from(SPACES[scale].mlp_ratios),
                                      min_size=depth, max_size=depth),
                "bias": st.booleans(),
            })),
    ))


@settings(max_examples=60, deadline=None)
@given(arch_records)
def test_every_conversion_round_trips(scale_and_record):
    scale, record = scale_and_record
    space = get_space(scale)
    arch = space.from_records([record])
    ids = space.arch_ids(arch)
    assert space.to_records(arch) == [record]
    assert space.arch_ids(space.from_ids(ids)) == ids
    assert space.arch_ids(space.from_json(space.to_json(arch))) == ids
    hw = space.to_hwgpt(arch)
    assert hw[0]["sample_intermediate_size"] == [r * record["embed_dim"]
                                                 for r in record["mlp_ratio"]]
    assert space.arch_ids(space.from_hwgpt(hw)) == ids
    assert space.arch_ids(space.from_genes(space.genes(arch))) == ids


def test_hwgpt_dict_accepts_string_bias_and_long_lists():
    space = get_space("s")
    config = {"sample_embed_dim": 384, "sample_n_layer": 10, "sample_n_head": [8] * 12,
              "sample_mlp_ratio": [2] * 12, "sample_bias": "False"}
    arch = space.from_hwgpt([config])
    assert space.arch_ids(arch) == ["s:e384-l10-h" + ".".join(["8"] * 10)
                                    + "-r" + ".".join(["2"] * 10) + "-b0"]


@pytest.mark.parametrize("scale", ["s", "m"])
def test_published_archs_round_trip(published, scale):
    data = published(scale)
    space = get_space(scale)
    arrays = {k: data[k][:1000] for k in ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")}
    arch = space.from_published(arrays)
    for key in ("n_head", "mlp_ratio"):  # published -1 padding becomes the canonical 0
        np.testing.assert_array_equal(getattr(arch, key), np.maximum(arrays[key], 0))
        assert np.all((arrays[key] == -1) == (np.arange(space.max_layers)
                                              >= arrays["n_layer"][:, None]))
    for key in ("embed_dim", "n_layer", "bias"):
        np.testing.assert_array_equal(getattr(arch, key), arrays[key], err_msg=key)
    assert space.arch_ids(space.from_hwgpt(space.to_hwgpt(arch))) == space.arch_ids(arch)
    assert space.arch_ids(space.from_json(space.to_json(arch))) == space.arch_ids(arch)


def _arch(space, **changes):
    base = space.smallest().to_numpy()
    fields = {f: np.array(getattr(base, f))[None] for f in
              ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")}
    fields.update(changes)
    return Arch(**fields)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"embed_dim": np.array([100])}, r"embed_dim=100 is not in the tiny space; allowed "
                                         r"choices: \[64, 128, 256\]"),
        ({"n_layer": np.array([5])}, r"n_layer=5 .* \[2, 3, 4\]"),
        ({"n_head": np.array([[2, 3, 0, 0]])}, r"n_head=3 .* \[2, 4, 8\]"),
        ({"mlp_ratio": np.array([[2, 2, 4, 0]])}, r"mlp_ratio has value 4 past n_layer"),
        ({"n_head": np.array([[2, 2, 0]])}, r"n_head has shape \(1, 3\), expected \(1, 4\)"),
    ],
)
def test_validation_names_field_value_and_choices(changes, message):
    with pytest.raises(ValueError, match=message):
        get_space("tiny").validate(_arch(get_space("tiny"), **changes))


def test_wrong_scale_is_rejected():
    with pytest.raises(ValueError, match="unknown scale 'xl'"):
        get_space("xl")
    s_arch = get_space("s").largest()
    with pytest.raises(ValueError, match="shape"):
        get_space("tiny").validate(s_arch)
    ids = get_space("s").arch_ids(s_arch)
    with pytest.raises(ValueError, match="scale 's', expected 'tiny'"):
        get_space("tiny").from_ids(ids)
    with pytest.raises(ValueError, match="scale 'm'"):
        get_space("s").from_json(json.dumps({"scale": "m", "archs": []}))
    with pytest.raises(ValueError, match="n_head has 3 entries"):
        get_space("tiny").from_records([{"embed_dim": 64, "n_layer": 2, "n_head": [2, 2, 2],
                                         "mlp_ratio": [2, 2], "bias": True}])
    with pytest.raises(ValueError, match="bias='yes'"):
        get_space("tiny").from_records([{"embed_dim": 64, "n_layer": 2, "n_head": [2, 2],
                                         "mlp_ratio": [2, 2], "bias": "yes"}])
