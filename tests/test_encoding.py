import jax
import numpy as np
import pytest

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.encoding import continuous, encode, onehot, onehot_size


@pytest.mark.parametrize(("scale", "length"), [("tiny", 32), ("s", 80), ("m", 152), ("l", 224)])
def test_onehot_layout(scale, length):
    space = get_space(scale)
    archs = space.sample(jax.random.key(0), 64)
    codes = np.asarray(onehot(archs, space))
    assert codes.shape == (64, length) == (64, onehot_size(space))
    depth = np.asarray(archs.n_layer)
    # one hot each for embed, depth, bias, and two per active layer; zeros past n_layer
    np.testing.assert_array_equal(codes.sum(-1), 3 + 2 * depth)
    lmax = space.max_layers
    ratios = codes[:, 6 : 6 + 3 * lmax].reshape(64, lmax, 3)
    heads = codes[:, 6 + 3 * lmax : 6 + 6 * lmax].reshape(64, lmax, 3)
    active = np.arange(lmax) < depth[:, None]
    np.testing.assert_array_equal(ratios.sum(-1), active)
    np.testing.assert_array_equal(heads.sum(-1), active)
    np.testing.assert_array_equal(np.asarray(space.mlp_ratios)[ratios.argmax(-1)] * active,
                                  np.asarray(archs.mlp_ratio))
    # bias one-hot follows HW-GPT-Bench's choice order [True, False]
    np.testing.assert_array_equal(codes[:, -2], np.asarray(archs.bias))


def test_onehot_matches_hand_written_example():
    space = get_space("tiny")
    arch = space.from_records([{"embed_dim": 128, "n_layer": 2, "n_head": [8, 2],
                                "mlp_ratio": [3, 4], "bias": False}])
    expected = np.array([0, 1, 0,  1, 0, 0,                    # embed 128, depth 2
                         0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,   # ratios 3, 4, pad, pad
                         0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,   # heads 8, 2, pad, pad
                         0, 1], np.float32)                    # bias False
    np.testing.assert_array_equal(np.asarray(onehot(arch, space))[0], expected)


def test_continuous_features():
    space = get_space("s")
    arch = space.largest()
    feats = np.asarray(continuous(arch, space))
    assert feats.shape == (3 + 2 * 12,)
    np.testing.assert_allclose(feats, 1.0)
    small = np.asarray(continuous(space.smallest(), space))
    np.testing.assert_allclose(small[:3], [192 / 768, 10 / 12, 0.0])
    np.testing.assert_allclose(small[3:13], 4 / 12)
    np.testing.assert_array_equal(small[13:15], 0.0)  # padding layers 11, 12


def test_encodings_jit_and_batch_shapes():
    space = get_space("tiny")
    archs = space.sample(jax.random.key(1), 12)
    batched = jax.jit(lambda a: encode(a, space, "continuous"))(archs)
    single = np.stack([np.asarray(continuous(archs[i], space)) for i in range(12)])
    np.testing.assert_array_equal(np.asarray(batched), single)
    with pytest.raises(ValueError, match="unknown encoding 'bad'"):
        encode(archs, space, "bad")


def test_cost_features_use_the_published_counts_and_fall_back_on_tiny():
    from hwgpt_jax.space.costs import param_count
    from hwgpt_jax.space.encoding import COST_FEATURES, cost_features, cost_source, cost_summary
    from hwgpt_jax.space.published_costs import published_costs

    space = get_space("m")
    archs = space.sample(jax.random.key(2), 32)
    feats = np.asarray(cost_features(archs, space))
    params = published_costs(archs.to_numpy(), space)["params"]
    top = published_costs(space.largest(), space)["params"]
    np.testing.assert_allclose(feats[:, COST_FEATURES.index("log_params")],
                               np.log(params / top), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(cost_features(space.largest(), space))[:10],
                               [0] * 5 + [1] * 5, atol=1e-6)
    summary = np.asarray(cost_summary(archs, space))
    assert summary.shape == (32, 9)
    np.testing.assert_array_equal(summary[:, :3].argmax(-1),
                                  [space.embed_dims.index(d) for d in archs.embed_dim.tolist()])
    tiny = get_space("tiny")
    assert cost_source(space) == "published" and cost_source(tiny).startswith("analytic")
    small = tiny.sample(jax.random.key(3), 8)
    ours = param_count(small.to_numpy(), tiny) / param_count(tiny.largest(), tiny)
    np.testing.assert_allclose(np.asarray(cost_features(small, tiny))[:, 0], np.log(ours),
                               rtol=1e-5, atol=1e-6)
