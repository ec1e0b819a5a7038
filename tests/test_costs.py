import jax
import numpy as np

from hwgpt_jax.costs import forward_flops, param_count
from hwgpt_jax.space import get_space


def test_param_count_hand_computed_tiny_smallest():
    space = get_space("tiny")  # d=64, 2 layers, 2 heads x 32 = 64 attention width, ratio 2
    embedding = 50304 * 64
    per_layer = 64 * 3 * 64 + 64 * 64 + 64 * 128 + 128 * 64 + 4 * 64  # qkv, out, fc, proj, 2 LN
    assert per_layer == 33024
    assert param_count(space.smallest(), space) == embedding + 2 * per_layer + 2 * 64
    with_bias = space.from_records([{"embed_dim": 64, "n_layer": 2, "n_head": [2, 2],
                                     "mlp_ratio": [2, 2], "bias": True}])
    biases_per_layer = 3 * 64 + 64 + 128 + 64
    assert param_count(with_bias, space)[0] == embedding + 2 * (per_layer + biases_per_layer) + 128


def test_param_count_mixed_layers():
    space = get_space("tiny")
    arch = space.from_records([{"embed_dim": 128, "n_layer": 3, "n_head": [2, 4, 8],
                                "mlp_ratio": [4, 3, 2], "bias": True}])
    d = 128
    total = 50304 * d + 2 * d
    for heads, ratio in ((2, 4), (4, 3), (8, 2)):
        width, hidden = heads * 32, ratio * d
        total += d * 3 * width + 3 * width + width * d + d + d * hidden + hidden
        total += hidden * d + d + 4 * d
    assert param_count(arch, space)[0] == total


def test_flops_hand_computed():
    space = get_space("tiny")
    batch, seq = 1, 4
    macs_per_token = 2 * (64 * 192 + 64 * 64 + 2 * 64 * 128)  # two layers of projections
    macs_per_token += 2 * (2 * seq * 64)  # scores and values, two layers
    macs_per_token += 64 * 50304  # LM head
    assert forward_flops(space.smallest(), space, batch, seq) == 2 * batch * seq * macs_per_token


def test_costs_numpy_exact_and_jax_jittable_agree():
    space = get_space("s")
    archs = space.sample(jax.random.key(0), 256)
    exact = param_count(archs.to_numpy(), space)
    assert exact.dtype == np.int64
    approx = np.asarray(jax.jit(lambda a: param_count(a, space))(archs))
    np.testing.assert_allclose(approx, exact, rtol=1e-6)
    flops = forward_flops(archs.to_numpy(), space, 8, 1024)
    assert flops.dtype == np.int64 and np.all(flops > 0)
    np.testing.assert_allclose(np.asarray(forward_flops(archs, space, 8, 1024)), flops, rtol=1e-6)
    assert np.all(param_count(archs.to_numpy(), space) <= param_count(space.largest(), space))
