"""Tests of the masked supernet and dense extraction (hwgpt_jax.model.supernet).

The oracle is an independent float64 NumPy GPT (`reference_logits`): it runs dense parameter
trees, either extracted sub-networks or the full supernet weights taken layer by layer.
Compiled functions are shared through module-scoped fixtures; sequences are short.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from hwgpt_jax.model import attention as attention_lib
from hwgpt_jax.model import supernet as model
from hwgpt_jax.space import costs
from hwgpt_jax.space.arch import Arch, get_space

TOL = 1e-4


# ---------------------------------------------------------------------------- NumPy oracle
def _layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * scale + bias


def _rope(x: np.ndarray) -> np.ndarray:
    """Rotate pairs (i, i + R/2) of the first R = S/2 dims by angle t * 10000^(-2i/R)."""
    seq, size = x.shape[1], x.shape[-1]
    rope_dims = size // 2
    half = rope_dims // 2
    angle = np.arange(seq)[:, None] * 10000.0 ** (-np.arange(half) * 2.0 / rope_dims)
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]  # (T, 1, R/2)
    a, b = x[..., :half], x[..., half:rope_dims]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin, x[..., rope_dims:]], axis=-1)


def reference_logits(dense: dict, tokens: np.ndarray) -> np.ndarray:
    """Plain float64 GPT (parallel residual, RoPE, causal softmax attention, erf GELU)."""
    dense = jax.tree.map(lambda a: np.asarray(a, np.float64), dense)
    embedding = dense["token_embedding"]
    x = embedding[tokens]
    seq = tokens.shape[1]
    future = np.triu(np.ones((seq, seq), bool), k=1)
    for p in dense["blocks"]:
        h = _layer_norm(x, p["ln1_scale"], p["ln1_bias"])
        qkv = np.einsum("btd,dkhs->btkhs", h, p["qkv_kernel"]) + p.get("qkv_bias", 0.0)
        q, k, v = _rope(qkv[:, :, 0]), _rope(qkv[:, :, 1]), qkv[:, :, 2]
        scores = np.einsum("bthc,bshc->bhts", q, k) / np.sqrt(q.shape[-1])
        scores = np.where(future, -np.inf, scores)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = np.einsum("bhts,bshc->bthc", probs, v)
        attn = np.einsum("bthc,hcd->btd", attn, p["attn_out_kernel"]) + p.get("attn_out_bias", 0)
        h = _layer_norm(x, p["ln2_scale"], p["ln2_bias"]) @ p["fc_kernel"] + p.get("fc_bias", 0)
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        x = x + attn + h @ p["proj_kernel"] + p.get("proj_bias", 0.0)
    x = _layer_norm(x, dense["ln_f_scale"], dense["ln_f_bias"])
    return x @ embedding.T


def loud_params(params: dict, seed: int, kernel_std: float) -> dict:
    """Random values everywhere (non-zero biases, LayerNorm scales around 1), so attention,
    biases and norms all matter to the logits. NumPy float32 leaves."""
    rng = np.random.default_rng(seed)

    def draw(path: tuple, leaf: jax.Array) -> np.ndarray:
        name = str(path[-1].key)
        noise = rng.standard_normal(leaf.shape, np.float32)
        if name.endswith("_scale"):
            return 1.0 + 0.2 * noise
        if name.endswith("_bias"):
            return 0.1 * noise
        return kernel_std * noise

    return jax.tree_util.tree_map_with_path(draw, params)


def tokens_for(seed: int, batch: int, seq: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 50257, (batch, seq)).astype(np.int32)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny():
    return get_space("tiny")


@pytest.fixture(scope="module")
def tiny_params(tiny):
    """Host (NumPy) float32 params: extraction slices them without compiling."""
    params = model.init_params(jax.random.key(0), tiny)
    return loud_params(params, 1, kernel_std=0.1)


@pytest.fixture(scope="module")
def tiny_archs(tiny):
    """25 distinct random archs plus the largest and the smallest."""
    random = tiny.sample_unique(jax.random.key(7), 25)
    return Arch.concatenate([random, tiny.largest(), tiny.smallest()])


@pytest.fixture(scope="module")
def tiny_batched_logits(tiny, tiny_params, tiny_archs):
    tokens = tokens_for(0, 2, 16)
    return tokens, np.asarray(model.forward_batched(tiny_params, tokens, tiny_archs, tiny))


# ---------------------------------------------------------------------------- equivalence
def test_masked_supernet_equals_extracted_dense_reference(tiny, tiny_params, tiny_archs,
                                                          tiny_batched_logits):
    tokens, logits = tiny_batched_logits
    for i in range(len(tiny_archs)):
        arch = tiny_archs[i]
        dense = model.extract(tiny_params, arch, tiny)
        diff = max_diff(logits[i], reference_logits(dense, tokens))
        assert diff < TOL, f"{tiny.arch_ids(arch)[0]}: masked vs dense max |diff| {diff}"
        assert model.param_count(dense) == int(costs.param_count(arch, tiny))
    assert np.std(logits) > 0.5  # the loud params give logits far from zero


def test_dense_forward_matches_masked_and_reference(tiny, tiny_params, tiny_archs,
                                                    tiny_batched_logits):
    tokens, logits = tiny_batched_logits
    device_params = jax.tree.map(jnp.asarray, tiny_params)
    for i in (0, 1, len(tiny_archs) - 2, len(tiny_archs) - 1):  # 2 random, largest, smallest
        arch = tiny_archs[i]
        dense = model.extract(device_params, arch, tiny)  # the on-device slicing path
        host_dense = model.extract(tiny_params, arch, tiny)
        assert jax.tree.structure(dense) == jax.tree.structure(host_dense)
        for a, b in zip(jax.tree.leaves(dense), jax.tree.leaves(host_dense), strict=True):
            np.testing.assert_array_equal(np.asarray(a), b)
        dense_logits = jax.jit(model.dense_forward)(dense, jnp.asarray(tokens))
        assert max_diff(dense_logits, logits[i]) < TOL
        assert max_diff(dense_logits, reference_logits(host_dense, tokens)) < TOL
        if not bool(arch.bias):
            assert not any("bias" in k and k.startswith(("qkv", "attn", "fc", "proj"))
                           for block in dense["blocks"] for k in block)


def test_largest_arch_equals_plain_full_size_gpt(tiny, tiny_params, tiny_archs,
                                                 tiny_batched_logits):
    """The full supernet weights, taken layer by layer without `extract`, run by NumPy."""
    tokens, logits = tiny_batched_logits
    stacked = tiny_params["blocks"]
    full = {
        "token_embedding": tiny_params["token_embedding"],
        "blocks": [{name: leaf[layer] for name, leaf in stacked.items()}
                   for layer in range(tiny.max_layers)],
        "ln_f_scale": tiny_params["ln_f_scale"],
        "ln_f_bias": tiny_params["ln_f_bias"],
    }
    largest = len(tiny_archs) - 2
    np.testing.assert_array_equal(tiny_archs[largest].embed_dim, max(tiny.embed_dims))
    assert max_diff(logits[largest], reference_logits(full, tokens)) < TOL
    assert model.param_count(full) == model.param_count(tiny_params)
    assert model.param_count(tiny_params) == int(costs.param_count(tiny.largest(), tiny))


def test_batched_equals_single_forward(tiny, tiny_params, tiny_archs, tiny_batched_logits):
    tokens, logits = tiny_batched_logits
    single = model.forward(tiny_params, tokens, tiny_archs[3], tiny)
    assert max_diff(single, logits[3]) < 1e-5


def test_conditional_forward_equals_masked(tiny, tiny_params, tiny_archs, tiny_batched_logits):
    """The real-conditional path (skipped blocks, switched head/width slices) computes the same
    logits and gradients as the masked one, on full-width and embed-dim-sliced params."""
    from hwgpt_jax.model.supernet import slice_embed_dim

    tokens, logits = tiny_batched_logits
    forward = jax.jit(model.masked_forward, static_argnames=("space", "conditional"))

    def loss(params, arch, conditional):
        hidden = model.masked_hidden(params, tokens, arch, tiny, conditional=conditional)
        return jnp.sum(jnp.sin(hidden))

    grad = jax.jit(jax.grad(loss), static_argnums=2)
    params = jax.tree.map(jnp.asarray, tiny_params)
    for i in (0, 1, 2, len(tiny_archs) - 1):  # three random archs and the smallest
        got = forward(params, tokens, tiny_archs[i], space=tiny, conditional=True)
        assert max_diff(got, logits[i]) < 1e-4
    # Gradients: an arch whose layers differ in heads and width (several branches taken).
    arch = tiny_archs[int(np.argmax([len(set(np.asarray(tiny_archs[i].n_head).tolist()))
                                     for i in range(len(tiny_archs))]))]
    sliced = slice_embed_dim(params, int(arch.embed_dim), max(tiny.mlp_ratios))
    want, have = grad(sliced, arch, False), grad(sliced, arch, True)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(have), strict=True):
        assert max_diff(a, b) <= 1e-4 * (1.0 + float(np.max(np.abs(a))))


def test_gelu_value_and_derivative_equal_the_erf_formula():
    """The custom-JVP GELU against float64 x Phi(x) and its derivative Phi(x) + x phi(x),
    from deep in the negative tail to large positive inputs."""
    x = np.linspace(-12.0, 12.0, 2001)
    cdf = 0.5 * (1.0 + erf(x / np.sqrt(2.0)))
    pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    xs = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(np.asarray(model.gelu(xs)), x * cdf, rtol=1e-5, atol=1e-6)
    slope = jax.vmap(jax.grad(model.gelu))(xs)
    np.testing.assert_allclose(np.asarray(slope), cdf + x * pdf, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["cpu_blocked", "cpu_per_head", "xla"])
def test_causal_attention_kernels_equal_full_softmax(path, monkeypatch):
    """Every attention kernel (the CPU query-blocked one, 3 blocks with the last partial,
    batched over heads or one (batch, head) at a time, and XLA's `dot_product_attention`
    of accelerators) equals a float64 NumPy causal softmax attention over the whole (T, T)
    matrix, RoPE included."""
    seq, heads, head_size = 2 * attention_lib.QUERY_BLOCK + 44, 3, 8
    monkeypatch.setattr(attention_lib, "PER_HEAD_MIN_SEQ",
                        seq if path == "cpu_per_head" else seq + 1)
    kernel = "xla" if path == "xla" else "cpu_blocked"
    qkv = np.random.default_rng(0).normal(size=(2, seq, 3, heads, head_size)).astype(np.float32)
    cos, sin = model.rope_tables(seq, head_size)

    def attention(qkv, cos, sin):
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        return attention_lib.causal_attention(model.apply_rope(q, cos, sin),
                                              model.apply_rope(k, cos, sin), v, kernel)

    got = np.asarray(jax.jit(attention)(jnp.asarray(qkv), cos, sin))  # traced afresh

    def rope(x):  # NeoX rotate-half on the first half of the head dims, float64
        half = head_size // 2
        c, s = np.asarray(cos, np.float64)[:, None], np.asarray(sin, np.float64)[:, None]
        rot, rest = x[..., :half], x[..., half:]
        first, second = rot[..., : half // 2], rot[..., half // 2:]
        return np.concatenate([rot * c + np.concatenate([-second, first], -1) * s, rest], -1)

    q, k, v = (qkv[:, :, i].astype(np.float64) for i in range(3))
    q, k = rope(q), rope(k)
    scores = np.einsum("bthc,bshc->bhts", q, k) / np.sqrt(head_size)
    scores = np.where(np.tril(np.ones((seq, seq), bool)), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    want = np.einsum("bhts,bshc->bthc", probs, v)
    assert max_diff(got, want) < 1e-5


# ---------------------------------------------------------------------------- entanglement
def active_slices(arch: Arch, space) -> dict:
    """Index masks (True = used by `arch`) per supernet leaf, by the leading-slice rule."""
    d, n_layer = int(arch.embed_dim), int(arch.n_layer)
    dims_max = max(space.embed_dims)
    heads_max, hidden_max = max(space.n_heads), max(space.mlp_ratios) * dims_max
    dim = np.arange(dims_max) < d
    layer = np.arange(space.max_layers) < n_layer
    head = np.arange(heads_max)[None, :] < np.asarray(arch.n_head)[:, None]  # (L, H)
    hidden = np.arange(hidden_max)[None, :] < (np.asarray(arch.mlp_ratio) * d)[:, None]
    use_bias = bool(arch.bias)
    per_dim = layer[:, None] & dim[None, :]  # (L, D)
    blocks = {
        "ln1_scale": per_dim, "ln1_bias": per_dim, "ln2_scale": per_dim, "ln2_bias": per_dim,
        "qkv_kernel": dim[None, :, None, None, None] & head[:, None, None, :, None],
        "qkv_bias": use_bias & head[:, None, :, None],
        "attn_out_kernel": head[:, :, None, None] & dim[None, None, None, :],
        "attn_out_bias": use_bias & per_dim,
        "fc_kernel": dim[None, :, None] & hidden[:, None, :],
        "fc_bias": use_bias & hidden,
        "proj_kernel": hidden[:, :, None] & dim[None, None, :],
        "proj_bias": use_bias & per_dim,
    }
    return {"token_embedding": dim[None, :], "blocks": blocks, "ln_f_scale": dim,
            "ln_f_bias": dim}


@pytest.mark.parametrize("index", [0, 5])
def test_params_outside_the_active_slice_do_not_matter(tiny, tiny_params, tiny_archs, index):
    arch = tiny_archs[index]
    tokens = tokens_for(1, 2, 16)
    base = np.asarray(model.forward(tiny_params, tokens, arch, tiny))
    masks = active_slices(arch, tiny)
    rng = np.random.default_rng(index)
    garbage = jax.tree.map(
        lambda p, m: np.where(np.broadcast_to(m, p.shape), p,
                              100.0 * rng.standard_normal(p.shape).astype(np.float32)),
        tiny_params, masks)
    outside = sum(int(np.size(p) - np.broadcast_to(m, p.shape).sum())
                  for p, m in zip(jax.tree.leaves(tiny_params), jax.tree.leaves(masks),
                                  strict=True))
    assert outside > 0
    np.testing.assert_array_equal(np.asarray(model.forward(garbage, tokens, arch, tiny)), base)

    # A single weight inside the slice changes the logits: the last active layer's last
    # active hidden unit, and the last active head's output row.
    last = int(arch.n_layer) - 1
    unit = int(arch.mlp_ratio[last]) * int(arch.embed_dim) - 1
    head = int(arch.n_head[last]) - 1
    for name, index_ in (("fc_kernel", (last, 0, unit)), ("attn_out_kernel", (last, head, 0, 0))):
        changed = jax.tree.map(np.copy, tiny_params)
        changed["blocks"][name][index_] += 1.0
        assert max_diff(model.forward(changed, tokens, arch, tiny), base) > 1e-3, name


# ---------------------------------------------------------------------------- compile once
def test_one_compile_serves_every_arch(tiny, tiny_params):
    traces = []

    @jax.jit
    def counted(params, tokens, arch):
        traces.append(1)  # runs only while tracing
        return model.masked_forward(params, tokens, arch, tiny)

    tokens = jnp.asarray(tokens_for(2, 1, 16))
    archs = tiny.sample_unique(jax.random.key(11), 21)
    counted(tiny_params, tokens, archs[0]).block_until_ready()
    model.forward(tiny_params, tokens, archs[0], tiny).block_until_ready()
    cache_before = model.masked_forward_jit._cache_size()
    outputs = []
    for i in range(1, 21):
        outputs.append(counted(tiny_params, tokens, archs[i]))
        model.forward(tiny_params, tokens, archs[i], tiny)
    assert len(traces) == 1
    assert model.masked_forward_jit._cache_size() == cache_before
    assert len({round(float(jnp.sum(o)), 3) for o in outputs}) == 20  # really different archs


# ---------------------------------------------------------------------------- causality
def test_logits_at_t_ignore_later_tokens(tiny, tiny_params, tiny_archs):
    tokens = tokens_for(3, 2, 16)
    t = 9
    changed = tokens.copy()
    changed[:, t + 1:] = tokens_for(4, 2, 16 - t - 1)
    for arch in (tiny_archs[2], tiny_archs[len(tiny_archs) - 2]):
        a = np.asarray(model.forward(tiny_params, tokens, arch, tiny))
        b = np.asarray(model.forward(tiny_params, changed, arch, tiny))
        np.testing.assert_array_equal(a[:, : t + 1], b[:, : t + 1])
        assert max_diff(a[:, t + 1:], b[:, t + 1:]) > 1e-3


# ---------------------------------------------------------------------------- scale s
@pytest.fixture(scope="module")
def s_setup():
    space = get_space("s")
    # The supernet's shapes, random values from NumPy: at the suite's XLA optimization level
    # 0, JAX's random kernel takes seconds for the 124 M values (init is tested at tiny).
    # Kernels and the embedding are normal(0, 0.02); biases and LayerNorms random too.
    shapes = jax.eval_shape(lambda: model.init_params(jax.random.key(5), space))
    rng = np.random.default_rng(5)

    def draw(path, leaf):
        name = str(path[-1].key)
        noise = rng.standard_normal(leaf.shape, np.float32)
        if name.endswith("_kernel") or name == "token_embedding":
            return noise * np.float32(0.02)
        return noise * np.float32(0.1) + np.float32(name.endswith("_scale"))

    return space, jax.device_put(jax.tree_util.tree_map_with_path(draw, shapes))


def test_s_scale_masked_equals_dense(s_setup):
    space, params = s_setup
    tokens = tokens_for(6, 1, 8)
    archs = space.sample_unique(jax.random.key(8), 3)
    for i in range(3):
        arch = archs[i]
        logits = np.asarray(model.forward(params, tokens, arch, space))
        dense = model.extract(params, arch, space)
        assert max_diff(logits, reference_logits(dense, tokens)) < TOL
        assert model.param_count(dense) == int(costs.param_count(arch, space))
        if i == 0:  # the JAX dense model too (one compile of a 10-12 layer model)
            assert max_diff(jax.jit(model.dense_forward)(dense, jnp.asarray(tokens)),
                            logits) < TOL
    assert model.param_count(params) == int(costs.param_count(space.largest(), space))


# ---------------------------------------------------------------------------- init, dtype
def test_init_is_gpt2_style(tiny):
    params = model.init_params(jax.random.key(0), tiny)
    blocks = params["blocks"]
    assert abs(float(jnp.std(params["token_embedding"])) - 0.02) < 1e-3
    assert abs(float(jnp.std(blocks["qkv_kernel"])) - 0.02) < 1e-3
    assert abs(float(jnp.std(blocks["fc_kernel"])) - 0.02) < 1e-3
    residual = 0.02 / np.sqrt(2 * tiny.max_layers)
    assert abs(float(jnp.std(blocks["proj_kernel"])) - residual) < 1e-3 * residual * 50
    assert abs(float(jnp.std(blocks["attn_out_kernel"])) - residual) < 1e-3 * residual * 50
    for name in ("qkv_bias", "attn_out_bias", "fc_bias", "proj_bias", "ln1_bias", "ln2_bias"):
        assert not np.any(np.asarray(blocks[name]))
    assert np.all(np.asarray(blocks["ln1_scale"]) == 1) and np.all(params["ln_f_scale"] == 1)
    decay = model.weight_decay_mask(params)
    assert decay["token_embedding"] and decay["blocks"]["fc_kernel"]
    assert not decay["blocks"]["fc_bias"] and not decay["ln_f_scale"]


def test_bfloat16_compute_is_close_to_float32(tiny, tiny_params, tiny_archs,
                                              tiny_batched_logits):
    tokens, logits = tiny_batched_logits
    low = model.forward(tiny_params, tokens, tiny_archs[4], tiny, compute_dtype=jnp.bfloat16)
    assert low.dtype == jnp.float32
    scale = float(np.max(np.abs(logits[4])))
    assert 0 < max_diff(low, logits[4]) < 0.05 * scale


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors(tiny, tiny_params):
    arch, tokens = tiny.mid(), tokens_for(0, 1, 8)
    s_arch = get_space("s").mid()
    with pytest.raises(ValueError, match="n_head has shape"):
        model.forward(tiny_params, tokens, s_arch, tiny)
    with pytest.raises(ValueError, match="embed_dim=768 is not in the tiny space"):
        model.forward(tiny_params, tokens, Arch(np.int32(768), arch.n_layer, arch.n_head,
                                                arch.mlp_ratio, arch.bias), tiny)
    with pytest.raises(ValueError, match="dtype float32"):
        model.forward(tiny_params, tokens.astype(np.float32), arch, tiny)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        model.forward(tiny_params, tokens[0], arch, tiny)
    with pytest.raises(ValueError, match="sequence length 257 exceeds the tiny block size 256"):
        model.forward(tiny_params, tokens_for(0, 1, 257), arch, tiny)
    with pytest.raises(ValueError, match="token id 50257"):
        model.forward(tiny_params, np.full((1, 4), 50257, np.int32), arch, tiny)
    with pytest.raises(ValueError, match="use forward_batched"):
        model.forward(tiny_params, tokens, Arch.concatenate([arch, arch]), tiny)
    with pytest.raises(ValueError, match=r"batch shape \(N,\)"):
        model.forward_batched(tiny_params, tokens, arch, tiny)
    with pytest.raises(ValueError, match="params do not fit the s space"):
        model.extract(tiny_params, s_arch, get_space("s"))
    with pytest.raises(ValueError, match="extract takes one arch"):
        model.extract(tiny_params, Arch.concatenate([arch, arch]), tiny)


def test_attention_path_is_chosen_by_platform_and_dtype():
    assert attention_lib.attention_path("cpu", jnp.bfloat16) == "cpu_blocked"
    assert attention_lib.attention_path("gpu", jnp.bfloat16) == "cudnn"
    assert attention_lib.attention_path("gpu", jnp.float32) == "xla"
    assert attention_lib.attention_path("tpu", jnp.bfloat16) == "xla"
    with pytest.raises(ValueError, match="attention path 'flash'"):
        attention_lib.causal_attention(*[jnp.zeros((1, 4, 1, 8))] * 3, path="flash")


# ---------------------------------------------------------------------------- NNX modules
def test_supernet_module_state_call_and_extract(tiny, tiny_params, tiny_archs):
    """`Supernet(space, rngs)` holds the parameter layout as its `nnx.state`; called as
    `model(tokens, arch)` it equals the functional forward, `extract(arch)` gives a dense
    module of the real shapes with equal logits, and split/merge round-trips through jit."""
    from flax import nnx

    supernet = model.Supernet(tiny, rngs=nnx.Rngs(0))
    params = supernet.params()
    assert jax.tree.structure(params) == jax.tree.structure(tiny_params)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, tiny_params)
    tokens = jnp.asarray(tokens_for(2, 2, 16))
    arch = tiny_archs[1]
    want = model.masked_forward(params, tokens, arch, tiny)
    assert max_diff(supernet(tokens, arch), want) == 0.0
    graph, state = nnx.split(supernet)
    jitted = jax.jit(lambda s, t, a: nnx.merge(graph, s)(t, a))(state, tokens, arch)
    assert max_diff(jitted, want) < TOL
    dense = supernet.extract(arch)
    assert isinstance(dense, model.DenseGPT)
    assert len(dense.blocks) == int(arch.n_layer)
    assert dense.token_embedding.shape == (tiny.padded_vocab_size, int(arch.embed_dim))
    assert max_diff(dense(tokens), want) < TOL
