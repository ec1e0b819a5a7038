"""Tests of hwgpt_jax/surrogates: losses, the quantile head, CQR calibration, fitting, tables."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from scipy.stats import kendalltau

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.costs import forward_flops, param_count
from hwgpt_jax.space.encoding import encode
from hwgpt_jax.surrogates import (
    MetricData,
    SurrogateConfig,
    calibrate,
    calibrated_quantiles,
    conformal_quantile,
    cqr_scores,
    fit_surrogate,
    from_table,
    monotone_quantiles,
    pinball_loss,
    predict,
    split_archs,
)
from hwgpt_jax.surrogates.conformal import cross_calibrate, interpolation_matrix
from hwgpt_jax.surrogates.io import load_benchmark, save_benchmark
from hwgpt_jax.surrogates.mlp import QuantileMLP, init_mlp
from hwgpt_jax.surrogates.model import SurrogateNet, base_quantiles

SPACE = get_space("tiny")
SMALL = {"hidden": (32, 32), "max_steps": 600, "eval_every": 100, "batch_size": 256,
         "cv_steps": 100, "ensemble_size": 2,
         "learning_rate": 1e-2, "weight_decay": 1e-3, "activation": "silu"}


def synthetic(seed: int, n: int, repeats: int) -> tuple[MetricData, MetricData]:
    """Latency-like (heteroscedastic, log-normal noise) and perplexity-like data, tiny space."""
    archs = SPACE.sample_unique(jax.random.key(seed), n)
    rng = np.random.default_rng(seed)
    flops = forward_flops(archs, SPACE, 1, 256).astype(np.float64)
    sigma = 0.02 + 0.2 * (archs.embed_dim == 256) + 0.1 * archs.bias  # noise depends on arch
    latency = 1e-8 * flops[:, None] * np.exp(sigma[:, None] * rng.standard_normal((n, repeats)))
    params = param_count(archs, SPACE).astype(np.float64)
    ppl = 20 + 400 / np.sqrt(params / 1e5) + 0.05 * rng.standard_normal(n)
    return (MetricData("tiny", "latency", "cpu", "ms", archs, latency),
            MetricData("tiny", "perplexity", "", "", archs, ppl))


def coverage(surrogate, data: MetricData, level: float) -> float:
    features = encode(data.archs, SPACE, surrogate.spec.encoding)
    interval = np.asarray(predict(surrogate.spec, surrogate.state, features, "interval",
                                  level=level))
    obs = data.observations
    return float(np.mean((obs >= interval[:, :1]) & (obs <= interval[:, 1:])))


@pytest.fixture(scope="module")
def fitted():
    latency, ppl = synthetic(seed=0, n=8000, repeats=4)
    train, fresh = np.arange(4500), np.arange(4500, 8000)
    config = SurrogateConfig(kind="quantile", calib_fraction=0.4, encoding="onehot",
                             transform="log", family="mlp", calibration="split", **SMALL)
    quantile = fit_surrogate(latency.subset(train), config)
    point_config = SurrogateConfig(kind="mlp", calibration="split",
                                   **{**SMALL, "max_steps": 1500})
    point = fit_surrogate(ppl.subset(train), point_config)
    return quantile, point, latency.subset(fresh), ppl.subset(fresh)


def numpy_pinball(q: np.ndarray, y: np.ndarray, levels: np.ndarray) -> float:
    total, count = 0.0, 0
    for i in range(y.shape[0]):
        for r in range(y.shape[1]):
            if np.isnan(y[i, r]):
                continue
            for j, tau in enumerate(levels):
                u = y[i, r] - q[i, j]
                total += tau * u if u >= 0 else (tau - 1) * u
                count += 1
    return total / count


def test_pinball_loss_matches_numpy_reference():
    rng = np.random.default_rng(1)
    q = np.sort(rng.normal(size=(7, 5)), axis=1)
    y = rng.normal(size=(7, 3))
    y[2, 1] = y[5, 0] = np.nan  # ragged repeats
    levels = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    got = float(pinball_loss(jnp.asarray(q), jnp.asarray(y), jnp.asarray(levels)))
    assert got == pytest.approx(numpy_pinball(q, y, levels), rel=1e-5)


def test_pinball_loss_is_minimised_by_the_empirical_quantile():
    y = np.random.default_rng(2).exponential(size=(1, 2001))
    grid = np.linspace(0, 3, 601)
    losses = [float(pinball_loss(jnp.full((1, 1), g), jnp.asarray(y), jnp.array([0.8])))
              for g in grid]
    assert abs(grid[int(np.argmin(losses))] - np.quantile(y, 0.8)) < 0.01


def test_monotone_head_never_crosses():
    raw = 30 * jax.random.normal(jax.random.key(3), (1000, 9))
    q = np.asarray(monotone_quantiles(raw, 4))
    assert np.all(np.diff(q, axis=1) >= 0)
    np.testing.assert_allclose(q[:, 4], np.asarray(raw[:, 4]))


def numpy_mlp(params, x):
    """Oracle forward of a SiLU MLP given as [{"w", "b"}, ...]."""
    for i, layer in enumerate(params):
        x = x @ np.asarray(layer["w"]) + np.asarray(layer["b"])
        if i < len(params) - 1:
            x = x / (1 + np.exp(-x))
    return x


def test_nnx_modules_match_a_numpy_forward_and_round_trip_their_params():
    x = np.random.default_rng(8).normal(size=(6, 5)).astype(np.float32)
    levels = (0.1, 0.5, 0.9)
    quantile = QuantileMLP((5, 16, 3), levels, "silu", rngs=nnx.Rngs(0))
    params = quantile.net.to_params()
    raw = numpy_mlp(params, x)
    np.testing.assert_allclose(np.asarray(quantile.net(jnp.asarray(x))), raw, rtol=1e-5,
                               atol=1e-5)
    q = np.asarray(quantile(jnp.asarray(x)))
    assert np.all(np.diff(q, axis=1) > 0)
    np.testing.assert_allclose(q[:, 1], raw[:, 1], rtol=1e-5, atol=1e-5)
    again = QuantileMLP.from_params(params, levels, "silu")
    np.testing.assert_array_equal(np.asarray(again(jnp.asarray(x))), q)
    with pytest.raises(ValueError, match="one output per level"):
        QuantileMLP.from_params(params, (0.5,), "silu")
    # the whole network: linear part over features + pair products, plus the members' mean
    members = jax.vmap(lambda k: init_mlp(k, (5, 8, 3)))(jax.random.split(jax.random.key(1), 2))
    rng = np.random.default_rng(9)
    state = {"linear": {"w": jnp.asarray(rng.normal(size=(5 + 3, 3)), jnp.float32),
                        "b": jnp.zeros(3)}, "params": members}
    spec = dataclasses.make_dataclass("Head", ["family", "activation", "levels", "quadratic"])(
        "linear+mlp", "silu", levels, (0, 2))
    design = np.hstack([x, x[:, [0]] ** 2, x[:, [0]] * x[:, [2]], x[:, [2]] ** 2])
    member_outputs = [numpy_mlp(jax.tree.map(lambda a, i=i: a[i], members), x) for i in (0, 1)]
    want = design @ np.asarray(state["linear"]["w"]) + np.mean(member_outputs, axis=0)
    np.testing.assert_allclose(np.asarray(SurrogateNet(spec, state).raw(jnp.asarray(x))), want,
                               rtol=1e-4, atol=1e-4)


def test_fitted_and_calibrated_quantiles_never_cross(fitted):
    quantile = fitted[0]
    archs = SPACE.sample(jax.random.key(4), 5000)
    q = np.asarray(predict(quantile.spec, quantile.state, encode(archs, SPACE, "onehot"),
                           "quantiles"))
    assert q.shape == (5000, 9)
    assert np.all(np.diff(q, axis=1) >= 0)


def test_cqr_corrects_a_miscalibrated_model_on_heteroscedastic_data():
    """Base quantiles deliberately too narrow; CQR must restore 50/80/90 % coverage."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, 120_000)
    y = np.sin(4 * x) + (0.1 + x) * rng.standard_normal(x.size)
    levels = (0.1, 0.5, 0.9)
    narrow = np.sin(4 * x)[:, None] + 0.3 * (0.1 + x)[:, None] * np.array([-1.28, 0, 1.28])
    calib, fresh = slice(0, 40_000), slice(40_000, None)
    corrections = calibrate(narrow[calib], levels, y[calib, None], (0.5, 0.8, 0.9))
    for level in (0.5, 0.8, 0.9):
        taus = ((1 - level) / 2, 0.5, (1 + level) / 2)
        q = np.asarray(calibrated_quantiles(jnp.asarray(narrow[fresh]), levels,
                                            jnp.asarray(corrections), (0.5, 0.8, 0.9), taus))
        covered = np.mean((y[fresh] >= q[:, 0]) & (y[fresh] <= q[:, 2]))
        assert abs(covered - level) < 0.01, (level, covered)


def brute_force_conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The smallest pooled score t with #{scores <= t} / #scores >= level (n + 1) / n, n archs
    (rows with a valid score), found by trying every candidate."""
    n = int((~np.isnan(scores)).any(axis=1).sum())
    pooled = scores[~np.isnan(scores)]
    for t in np.sort(pooled):
        if np.mean(pooled <= t) >= level * (n + 1) / n - 1e-12:
            return float(t)
    return float("inf")


def test_conformal_quantile_is_the_rank_rule_with_one_observation_per_arch():
    scores = np.random.default_rng(10).normal(size=37)
    ordered = np.sort(scores)
    for level in (0.1, 0.5, 0.8, 0.9, 0.95, 0.97, 0.99):
        rank = int(np.ceil((37 + 1) * level))  # ceil((n + 1) c) / n, Romano et al. 2019
        expected = float("inf") if rank > 37 else ordered[rank - 1]
        assert conformal_quantile(scores, level) == expected
        assert conformal_quantile(scores[:, None], level) == expected


def test_conformal_quantile_pools_repeats_but_counts_archs():
    rng = np.random.default_rng(11)
    scores = rng.normal(size=(23, 6))
    scores[rng.uniform(size=scores.shape) < 0.3] = np.nan  # ragged repeats
    scores[4] = np.nan  # an arch without any observation does not count
    for level in (0.3, 0.5, 0.8, 0.9, 0.95):
        assert conformal_quantile(scores, level) == brute_force_conformal_quantile(scores, level)
    with pytest.raises(ValueError, match="no calibration observations"):
        conformal_quantile(np.full((3, 2), np.nan), 0.9)


def test_few_archs_with_correlated_repeats_keep_per_observation_coverage():
    """15 calibration archs x 10 near-identical repeats (the arch effect dominates): counting
    archs keeps >= 90 %; counting the 150 observations would give 14 / 16 = 87.5 %."""
    rng = np.random.default_rng(12)
    n_archs, repeats, trials, level = 15, 10, 20_000, 0.9
    scores = (rng.standard_normal((trials, n_archs + 1, 1))
              + 1e-3 * rng.standard_normal((trials, n_archs + 1, repeats)))
    calib, fresh = scores[:, :n_archs], scores[:, n_archs]
    by_arch = np.array([conformal_quantile(c, level) for c in calib])
    by_observation = np.sort(calib.reshape(trials, -1), axis=1)[
        :, int(np.ceil((n_archs * repeats + 1) * level)) - 1]
    covered = np.mean(fresh <= by_arch[:, None])
    assert 0.9 <= covered <= 0.9 + 1 / (n_archs + 1) + 0.005  # conformal bounds, MC error
    assert np.mean(fresh <= by_observation[:, None]) < 0.885


def test_cqr_with_repeated_heteroscedastic_observations_covers_per_observation():
    """Several observations per input, with an arch-level model error and a within-arch noise
    that both grow with x: calibrated per-observation coverage of fresh archs is nominal."""
    rng = np.random.default_rng(13)

    def draw(n: int, repeats: int = 5) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(0, 1, n)
        arch_effect = 0.5 * (0.1 + x) * rng.standard_normal(n)  # shared by the repeats
        noise = (0.05 + 0.3 * x)[:, None] * rng.standard_normal((n, repeats))
        y = np.sin(4 * x)[:, None] + arch_effect[:, None] + noise
        y[rng.uniform(size=y.shape) < 0.1] = np.nan  # a few missing repeats
        return x, y

    levels = (0.1, 0.5, 0.9)
    base = lambda x: np.sin(4 * x)[:, None] + 0.2 * (0.1 + x)[:, None] * np.array(  # noqa: E731
        [-1.28, 0.0, 1.28])  # too narrow and blind to the arch effect
    (x_cal, y_cal), (x_new, y_new) = draw(20_000), draw(20_000)
    central = (0.5, 0.8, 0.9)
    corrections = calibrate(base(x_cal), levels, y_cal, central)
    valid = ~np.isnan(y_new)
    for level in central:
        taus = ((1 - level) / 2, 0.5, (1 + level) / 2)
        q = np.asarray(calibrated_quantiles(jnp.asarray(base(x_new)), levels,
                                            jnp.asarray(corrections), central, taus))
        inside = (y_new >= q[:, :1]) & (y_new <= q[:, 2:])
        assert abs(inside[valid].mean() - level) < 0.02, (level, inside[valid].mean())
    uncalibrated = (y_new >= base(x_new)[:, :1]) & (y_new <= base(x_new)[:, 2:])
    assert uncalibrated[valid].mean() < 0.5  # calibration had work to do


def test_corrections_come_from_the_calibration_split_only(fitted):
    """Recompute E_c from the calibration archs' per-observation scores (NumPy oracle)."""
    quantile, _, _, _ = fitted
    data = synthetic(seed=0, n=8000, repeats=4)[0].subset(np.arange(4500))
    config = SurrogateConfig(kind="quantile", calib_fraction=0.4, encoding="onehot",
                             transform="log", family="mlp", calibration="split", **SMALL)
    calib = split_archs(len(data), config)["calib"]
    assert quantile.spec.fit_report["n_calib"] == len(calib) == 1800
    state = quantile.state
    z = (np.log(data.observations[calib]) - float(state["target_mean"])) / float(
        state["target_std"])
    features = jnp.asarray(encode(data.archs[calib], SPACE, "onehot"))
    base = np.asarray(base_quantiles(quantile.spec, state, features), np.float64)
    for i, level in enumerate(quantile.spec.central_levels):
        weights = interpolation_matrix(quantile.spec.levels, [(1 - level) / 2, (1 + level) / 2])
        ends = base @ weights.astype(np.float64)
        scores = cqr_scores(ends[:, 0], ends[:, 1], z)
        expected = brute_force_conformal_quantile(scores, level)
        assert float(state["corrections"][i]) == pytest.approx(expected, abs=1e-5)


def test_cross_calibrate_scores_each_arch_out_of_fold_with_the_pooled_rank_rule():
    """NumPy oracle: every held arch is scored by a model that did not see it, each arch
    exactly once (but the n mod K left over), and E_c is the rank rule on the pooled scores."""
    rng = np.random.default_rng(3)
    n, folds, levels = 103, 5, (0.1, 0.5, 0.9)
    x = rng.normal(size=n)
    y = (2 * x)[:, None] + rng.normal(size=(n, 2))
    seen, scored = [], []

    def fold_base(train, held):
        assert not set(train) & set(held) and len(set(train) | set(held)) == n
        slope = np.polyfit(x[train], y[train].mean(1), 1)[0]  # the fold's model
        seen.append(slope)
        scored.append(held)
        median = slope * x[held]
        return np.stack([median - 1.0, median, median + 1.0], axis=1)

    corrections = cross_calibrate(fold_base, y, folds, levels, (0.5, 0.8), seed=1)
    held = np.concatenate(scored)
    assert len(held) == len(set(held)) == n - n % folds and len(seen) == folds
    base = np.concatenate([np.stack([s * x[h] - 1, s * x[h], s * x[h] + 1], 1)
                           for s, h in zip(seen, scored, strict=True)])
    for i, level in enumerate((0.5, 0.8)):
        ends = base @ interpolation_matrix(levels, [(1 - level) / 2, (1 + level) / 2])
        expected = brute_force_conformal_quantile(cqr_scores(ends[:, 0], ends[:, 1], y[held]),
                                                  level)
        assert corrections[i] == pytest.approx(expected, abs=1e-5)


def test_cross_conformal_fit_covers_fresh_archs_and_trains_on_every_non_validation_arch():
    """Known truth (log-normal, arch-dependent noise): the cross-conformal intervals of a
    ridge model and of a short ensemble cover fresh archs at nominal, and all archs but the
    validation ones are training archs and calibration archs at once."""
    latency = synthetic(seed=12, n=6000, repeats=3)[0]
    train, fresh = latency.subset(np.arange(3000)), latency.subset(np.arange(3000, 6000))
    for family in ("linear", "ensemble"):
        config = SurrogateConfig(family=family, transform="log", calibration="cv",
                                 calib_folds=4, **{**SMALL, "max_steps": 200})
        surrogate = fit_surrogate(train, config)
        report = surrogate.spec.fit_report
        assert (report["calibration"], report["n_train"], report["n_calib"]) == ("cv", 2700, 2700)
        for level in (0.5, 0.8, 0.9):
            assert abs(coverage(surrogate, fresh, level) - level) < 0.025, (family, level)


def test_conformal_coverage_of_a_fitted_quantile_mlp_on_fresh_archs(fitted):
    quantile, _, fresh, _ = fitted
    assert 0.88 <= coverage(quantile, fresh, 0.9) <= 0.92
    assert 0.77 <= coverage(quantile, fresh, 0.8) <= 0.83
    assert 0.47 <= coverage(quantile, fresh, 0.5) <= 0.53


def test_point_mlp_ranks_fresh_archs_and_has_split_conformal_intervals(fitted):
    _, point, _, fresh = fitted
    features = encode(fresh.archs, SPACE, point.spec.encoding)
    median = np.asarray(predict(point.spec, point.state, features, "median"))
    truth = 20 + 400 / np.sqrt(param_count(fresh.archs, SPACE) / 1e5)  # noise-free ppl
    assert kendalltau(median, truth)[0] > 0.9
    assert 0.86 <= coverage(point, fresh, 0.9) <= 0.94


def test_samples_follow_the_calibrated_quantiles(fitted):
    quantile, _, fresh, _ = fitted
    features = encode(fresh.archs[:200], SPACE, quantile.spec.encoding)
    q = np.asarray(predict(quantile.spec, quantile.state, features, "quantiles"))
    keys = jax.random.split(jax.random.key(6), 400)
    draw = lambda k: predict(quantile.spec, quantile.state, features, "sample", key=k)  # noqa: E731
    draws = np.asarray(jax.vmap(draw)(keys))  # (400, 200)
    below = np.mean(draws <= q[None, :, 0]), np.mean(draws <= q[None, :, 4])
    assert abs(below[0] - 0.1) < 0.01 and abs(below[1] - 0.5) < 0.015


def test_log_transform_for_positive_targets_and_identity_otherwise(fitted):
    assert fitted[0].spec.transform == "log"
    # 'auto' cross-validates both transforms for a positive metric and records them
    tried = {c["transform"] for c in fitted[1].spec.fit_report["selection"]["linear_candidates"]}
    assert tried == {"log", "identity"}
    data = MetricData("tiny", "delta", "", "", fitted[2].archs[:400],
                      np.random.default_rng(7).normal(size=400))
    config = SurrogateConfig(kind="mlp", family="linear", **SMALL)
    assert fit_surrogate(data, config).spec.transform == "identity"
    with pytest.raises(ValueError, match="strictly positive"):
        fit_surrogate(data, SurrogateConfig(kind="mlp", transform="log", **SMALL))


def test_fit_is_reproducible_for_a_seed():
    data = synthetic(seed=8, n=600, repeats=2)[0]
    config = SurrogateConfig(family="ensemble", **{**SMALL, "max_steps": 100})
    a, b = fit_surrogate(data, config), fit_surrogate(data, config)
    for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_from_table_groups_long_rows_per_metric_and_device():
    latency, ppl = synthetic(seed=9, n=50, repeats=3)
    ids = SPACE.arch_ids(latency.archs)
    rows = [{"arch_id": ids[i], "scale": "tiny", "metric": "latency", "device": "cpu",
             "value": latency.observations[i, r], "unit": "ms", "repeat": r}
            for i in range(50) for r in range(3 if i % 2 else 2)]  # ragged repeats
    rows += [{"arch_id": ids[i], "scale": "tiny", "metric": "perplexity", "device": None,
              "value": ppl.observations[i, 0], "unit": ""} for i in range(50)]
    tables = {t.key: t for t in from_table(pd.DataFrame(rows[::-1]))}
    assert sorted(tables) == ["latency:cpu", "perplexity"]
    got = tables["latency:cpu"]
    position = {a: i for i, a in enumerate(SPACE.arch_ids(got.archs))}
    for i, arch_id in enumerate(ids):
        expected = np.sort(latency.observations[i, : 3 if i % 2 else 2])
        row = got.observations[position[arch_id]]
        np.testing.assert_allclose(np.sort(row[~np.isnan(row)]), expected)
    with pytest.raises(ValueError, match=r"not in the table; it has \['latency:cpu'"):
        from_table(pd.DataFrame(rows), metrics=["energy"])
    with pytest.raises(ValueError, match="lacks column"):
        from_table(pd.DataFrame(rows).drop(columns=["unit"]))


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="kind='gauss'"):
        SurrogateConfig(kind="gauss")
    with pytest.raises(ValueError, match="contain 0.5"):
        SurrogateConfig(levels=(0.1, 0.9))
    with pytest.raises(ValueError, match="calibration='jackknife'"):
        SurrogateConfig(calibration="jackknife")
    with pytest.raises(ValueError, match="calib_folds=1"):
        SurrogateConfig(calib_folds=1)


def test_default_presets_file_equals_default_config():
    from hwgpt_jax.presets import find_preset
    from hwgpt_jax.surrogates import default_config, load_presets

    presets = load_presets(find_preset("surrogates", "default"))
    assert presets["quality"] == default_config("perplexity")
    assert presets["hardware"] == default_config("latency")


def test_too_few_archs_to_cross_validate_fit_the_linear_model_and_say_so():
    latency = synthetic(seed=10, n=12, repeats=3)[0]
    surrogate = fit_surrogate(latency, SurrogateConfig())  # the default: family "auto"
    assert (surrogate.spec.family, surrogate.spec.members) == ("linear", 0)
    assert "too few to cross-validate" in surrogate.spec.fit_report["selection"]["note"]
    assert surrogate.spec.fit_report["cost_features"].startswith("analytic")
    median = predict(surrogate.spec, surrogate.state, encode(latency.archs, SPACE, "costs"),
                     "median")
    assert np.all(np.isfinite(np.asarray(median)))


def test_gp_family_fits_saves_and_loads(tmp_path):
    """A small key fitted with the GP candidate: its residual GP moves the median toward the
    data, the calibrated intervals cover fresh archs, and a saved folder loads equal."""
    latency, _ = synthetic(seed=11, n=600, repeats=2)
    train, fresh = latency.subset(np.arange(400)), latency.subset(np.arange(400, 600))
    gp = fit_surrogate(train, SurrogateConfig(family="gp", calibration="split", **SMALL))
    assert gp.spec.family == "linear+gp" and gp.spec.gp_points == gp.spec.fit_report["n_train"]
    features = encode(fresh.archs, SPACE, "costs")
    median = np.asarray(predict(gp.spec, gp.state, features, "median"))
    truth = forward_flops(fresh.archs, SPACE, 1, 256)  # the noise-free median, up to 1e-8
    tau = kendalltau(median, truth)[0]
    assert tau > 0.85, tau
    assert abs(coverage(gp, fresh, 0.8) - 0.8) < 0.1
    save_benchmark([gp], [], tmp_path / "b")
    (loaded,), _ = load_benchmark(tmp_path / "b")
    np.testing.assert_array_equal(np.asarray(predict(loaded.spec, loaded.state, features,
                                                     "median")), median)
