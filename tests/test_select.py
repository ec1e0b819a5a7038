"""Tests of hwgpt_jax/surrogates/linear.py and select.py: ridge, Kendall tau, folds, selection."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import kendalltau

from hwgpt_jax.surrogates.linear import (
    kendall_tau,
    kfold_indices,
    pair_products,
    ridge_design,
    ridge_fit,
)
from hwgpt_jax.surrogates.select import SelectionConfig, select_model

CONFIG = SelectionConfig(folds=3, cv_steps=50, ensemble_size=2, penalties=(1e-4, 1e-1),
                         hidden=(8,), activation="silu", learning_rate=1e-2,
                         weight_decay=1e-3, batch_size=64, seed=0)


def numpy_ridge(x, y, penalty):
    """Oracle: augmented least squares on standardized features, mapped back."""
    mean, scale = x.mean(0), x.std(0)
    xs = (x - mean) / scale
    n, f = x.shape
    design = np.vstack([np.hstack([xs, np.ones((n, 1))]),
                        np.hstack([np.sqrt(penalty * n) * np.eye(f), np.zeros((f, 1))])])
    coef = np.linalg.lstsq(design, np.concatenate([y, np.zeros(f)]), rcond=None)[0]
    w = coef[:f] / scale
    return w, coef[f] - mean @ w


@pytest.mark.parametrize("penalty", [0.0, 0.3])
def test_ridge_matches_numpy_lstsq(penalty):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 10, 0.1, 3, 1] + [0, 5, 1, 0, -2]
    y = x @ np.array([1.0, -0.2, 4.0, 0.5, 0.0]) + 3 + 0.1 * rng.normal(size=200)
    w, b = ridge_fit(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), penalty)
    w_ref, b_ref = numpy_ridge(x, y, penalty)
    np.testing.assert_allclose(np.asarray(w), w_ref, rtol=2e-3, atol=2e-3)
    assert float(b) == pytest.approx(b_ref, abs=2e-2)


def test_kendall_tau_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 20, 300).astype(np.float32)  # many ties
    b = (a + rng.normal(scale=5, size=300)).round().astype(np.float32)
    assert float(kendall_tau(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(
        kendalltau(a, b)[0], abs=1e-5)


def test_kfold_parts_are_disjoint_and_cover_every_row():
    train, val = kfold_indices(23, 3, seed=4)
    assert val.shape == (3, 7) and train.shape == (3, 16)
    assert len(np.unique(val)) == 21  # validation parts are disjoint
    for k in range(3):
        assert not set(train[k]) & set(val[k])
        assert sorted(set(train[k]) | set(val[k])) == list(range(23))
    with pytest.raises(ValueError, match="5 rows cannot be split into 3 folds"):
        kfold_indices(5, 3, seed=0)


def test_selection_picks_the_linear_model_on_exactly_linear_data():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(300, 6)).astype(np.float32)
    y = (x @ rng.normal(size=6)).astype(np.float32)
    y = (y - y.mean()) / y.std()
    selection = select_model(x, {"identity": y}, CONFIG)
    candidates = selection.report["candidates"]
    assert set(candidates) == {"linear", "mlp", "ensemble", "gp"}  # gp: 300 <= gp_max_archs
    # the GP on an exactly zero residual predicts the ridge model's values; which of the two
    # has the lower RMSE is float noise, but no network may win
    assert selection.family in ("linear", "gp")
    assert candidates["gp"]["kendall_tau"] > 0.999
    assert candidates["linear"]["kendall_tau"] > 0.999
    assert selection.penalty == 1e-4  # the weaker penalty fits exact data better


def test_selection_prefers_a_network_on_nonlinear_data_and_reports_the_transforms():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(600, 2)).astype(np.float32)
    y = np.sin(3 * x[:, 0]) * np.cos(3 * x[:, 1])  # no linear trend at all
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    config = SelectionConfig(**{**CONFIG.__dict__, "cv_steps": 400, "hidden": (32, 32),
                                "gp_max_archs": 100})
    selection = select_model(x, {"identity": y, "other": rng.permutation(y)}, config)
    assert selection.family in ("mlp", "ensemble") and selection.transform == "identity"
    assert len(selection.report["linear_candidates"]) == 4  # 2 transforms x 2 penalties
    assert "gp not tried: 600 training archs > gp_max_archs 100" in selection.report["gp"]
    # with the GP allowed, this smooth 2-D function is the GP's: it beats the ridge model
    gp = select_model(x, {"identity": y}, CONFIG, ("linear", "gp"))
    assert gp.family == "gp"
    assert gp.report["candidates"]["gp"]["kendall_tau"] > 0.95


def test_too_few_archs_use_the_linear_model_and_say_so():
    x = np.ones((12, 3), np.float32)
    selection = select_model(x, {"log": np.zeros(12, np.float32)}, CONFIG)
    assert selection.family == "linear"
    assert "too few to cross-validate" in selection.report["note"]


def test_a_smaller_ridge_feature_set_wins_when_the_rest_is_noise():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(45, 33)).astype(np.float32)  # 30 folds' rows vs 33 features
    y = (x[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=45)).astype(np.float32)
    sets = {"all": np.ones(33, bool), "first3": np.arange(33) < 3}
    selection = select_model(x, {"identity": y}, CONFIG, ("linear",), sets)
    assert selection.report["columns"] == "first3"
    np.testing.assert_array_equal(selection.columns, sets["first3"])
    assert len(selection.report["linear_candidates"]) == 4  # 2 sets x 2 penalties


def test_pair_products_match_a_loop():
    x = np.random.default_rng(6).normal(size=(4, 5)).astype(np.float32)
    got = np.asarray(pair_products(jnp.asarray(x), (1, 3, 4)))
    want = np.stack([x[:, a] * x[:, b] for i, a in enumerate((1, 3, 4))
                     for b in (1, 3, 4)[i:]], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert ridge_design(jnp.asarray(x), ()).shape == (4, 5)


def test_products_are_chosen_for_a_product_target_and_dropped_otherwise():
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(300, 3)).astype(np.float32)
    sets = {"plain": np.arange(9) < 3, "products": np.ones(9, bool)}  # 3 features + 6 products
    y = (x[:, 0] * x[:, 1] + 0.1 * x[:, 2]).astype(np.float32)
    chosen = select_model(x, {"identity": y}, CONFIG, ("linear",), sets, (0, 1, 2))
    assert chosen.report["columns"] == "products" and chosen.quadratic == (0, 1, 2)
    assert chosen.columns.shape == (9,)
    y = (x @ np.array([1.0, -1.0, 0.5])).astype(np.float32)
    plain = select_model(x, {"identity": y}, CONFIG, ("linear",), sets, (0, 1, 2))
    assert plain.report["columns"] == "plain" and plain.quadratic == ()
    assert plain.columns.shape == (3,)  # the unused product columns are trimmed
