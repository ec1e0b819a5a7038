import jax
import numpy as np

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.costs import forward_flops, param_count, training_flops


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


def test_training_flops_match_xla_count_of_the_gradient():
    # Oracle: XLA's cost analysis of the compiled forward + backward of the dense model (the
    # logits' cotangent is an input, so no product folds into a reduction). XLA also counts
    # element-wise work (and the scatter of the embedding gradient), so it may be a little
    # above the product count, never far from it; a count that missed the backward pass's two
    # products per forward product would be off by 3x.
    from hwgpt_jax.model.supernet import dense_forward, extract, init_params

    space = get_space("tiny")
    params = jax.device_get(init_params(jax.random.key(0), space))
    tokens = np.zeros((2, 32), np.int32)
    cotangent = jax.ShapeDtypeStruct((*tokens.shape, space.padded_vocab_size), np.float32)
    for arch in (space.smallest(), space.largest()):
        dense = extract(params, arch, space)

        def gradient(p, logits_cotangent):  # logits too: a training step needs them
            logits, pullback = jax.vjp(lambda q: dense_forward(q, tokens), p)
            return logits, pullback(logits_cotangent)

        analysis = jax.jit(gradient).lower(dense, cotangent).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
        expected = training_flops(arch, space, *tokens.shape)
        assert expected == 3 * forward_flops(arch, space, *tokens.shape)
        assert 1.0 <= analysis["flops"] / expected < 1.05
