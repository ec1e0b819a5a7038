import jax
import numpy as np
import pytest

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.published_costs import has_published_costs, published_costs


@pytest.mark.parametrize("scale", ["s", "m", "l"])
def test_closed_form_reproduces_every_published_count(published, scale):
    arrays = published(scale)
    space = get_space(scale)
    archs = space.from_published({k: arrays[k] for k in
                                  ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")})
    costs = published_costs(archs.to_numpy(), space)
    for name in ("params", "macs", "flops"):
        assert costs[name].dtype == np.int64
        np.testing.assert_array_equal(costs[name], arrays[name].astype(np.int64), err_msg=name)


def test_hand_computed_smallest_s_arch():
    space = get_space("s")  # d=192, 10 layers of 4 heads (width 256) and ratio 2, no bias
    d, width, hidden = 192, 256, 384
    per_layer = 4 * d + 3 * d * width + width * d + 2 * d * hidden + hidden * d  # LNs, attn, MLP
    params = 2 * 50254 * d + 2 * d + 10 * per_layer  # untied embedding + head, final LN
    macs_per_token = 50254 * d + 10 * (4 * d * width + 3 * d * hidden)
    elementwise_per_token = 5 * d + 10 * (2 * 5 * d + hidden)  # LayerNorms: 5, SiLU: 1 per elem
    costs = published_costs(space.smallest(), space)
    assert costs["params"] == params
    assert costs["macs"] == 8 * 1024 * macs_per_token
    assert costs["flops"] == 8 * 1024 * (2 * macs_per_token + elementwise_per_token)
    biased = space.from_records([{"embed_dim": 192, "n_layer": 10, "n_head": [4] * 10,
                                  "mlp_ratio": [2] * 10, "bias": True}])
    extra = 10 * (3 * width + d + 2 * hidden + d)  # qkv, attn proj, fc1, fc2, proj biases
    assert published_costs(biased.to_numpy(), space)["params"][0] == params + extra


def test_jit_agrees_and_tiny_has_no_published_model():
    space = get_space("m")
    archs = space.sample(jax.random.key(1), 64)
    exact = published_costs(archs.to_numpy(), space)
    traced = jax.jit(lambda a: published_costs(a, space))(archs)
    for name in exact:
        np.testing.assert_allclose(np.asarray(traced[name]), exact[name], rtol=1e-6)
    tiny = get_space("tiny")
    assert not has_published_costs(tiny)
    with pytest.raises(ValueError, match="tiny"):
        published_costs(tiny.smallest(), tiny)
