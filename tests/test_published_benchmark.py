"""The packaged published HW-GPT-Bench benchmark and HW-GPT-Bench's own API on top of it."""

import json
import shutil

import jax
import numpy as np
import pandas as pd
import pytest

from hwgpt_jax.surrogates.api import HWGPT
from hwgpt_jax.surrogates.benchmark import Benchmark
from hwgpt_jax.surrogates.packaged import PACKAGED_ROOT, SCALES, load_packaged
from hwgpt_jax.surrogates.published import PUBLISHED_METRICS, load_published

PACKAGED = [s for s in SCALES if (PACKAGED_ROOT / s / "benchmark.json").is_file()]


@pytest.fixture(scope="module")
def bench_s():
    return Benchmark.published("s")


@pytest.fixture(scope="module")
def api():
    return HWGPT(search_space="s", seed=0)


def test_every_scale_ships_with_its_licence():
    assert list(SCALES) == PACKAGED
    assert "Apache License" in (PACKAGED_ROOT / "LICENSE").read_text()
    assert "HW-GPT-Bench" in (PACKAGED_ROOT / "NOTICE.md").read_text()


@pytest.mark.parametrize("scale", PACKAGED)
def test_every_published_key_is_present(scale):
    surrogates, tables = load_packaged(scale)
    assert [s.spec.key for s in surrogates] == list(PUBLISHED_METRICS)
    assert {t.key for t in tables} == set(PUBLISHED_METRICS)
    assert all(s.spec.scale == scale for s in surrogates)


def test_every_mode_answers_a_batch(bench_s):
    archs = bench_s.space.sample(jax.random.key(0), 7)
    keys = ["perplexity", "latency:rtx2080", "energy:a6000", "memory:a100"]
    median = bench_s.query(archs, keys)
    assert all(v.shape == (7,) and np.all(np.isfinite(v)) for v in median.values())
    quantiles = bench_s.query(archs, keys[1:], mode="quantiles")
    assert all(np.all(np.diff(v, axis=1) >= 0) for v in quantiles.values())
    interval = bench_s.query(archs, keys[1:], mode="interval", level=0.9)
    for k, v in interval.items():
        assert np.all(v[:, 0] <= median[k]) and np.all(median[k] <= v[:, 1])
    sample = bench_s.query(archs, keys, mode="sample", key=jax.random.key(1))
    assert all(v.shape == (7,) for v in sample.values())


def test_batches_of_nearby_sizes_share_a_program_and_rows_do_not_depend_on_the_size(bench_s):
    archs = bench_s.space.sample(jax.random.key(3), 120)
    key = jax.random.key(4)
    whole = bench_s.query(archs, ["perplexity", "energy:a100"], mode="sample", key=key)
    compiles = bench_s.compiles
    part = bench_s.query(jax.tree.map(lambda x: x[:70], archs), ["perplexity", "energy:a100"],
                         mode="sample", key=key)  # 70 and 120 archs: one 128-row program
    assert bench_s.compiles == compiles
    for name, values in part.items():
        assert values.shape == (70,)
        np.testing.assert_array_equal(values, np.asarray(whole[name])[:70])


def test_ground_truth_equals_the_archive_for_measured_archs(bench_s, published_path):
    data = {d.key: d for d in load_published(published_path("s"))}
    picks = np.array([0, 17, 4242, 9999])
    for key in ("latency:a100", "energy:rtx2080", "perplexity", "energy:cpu_amd_7502"):
        archs = data[key].archs[picks]
        measured = np.nanmedian(data[key].observations[picks], axis=1)
        got = bench_s.query(archs, [key], ground_truth=True)[key]
        np.testing.assert_allclose(got, measured, rtol=1e-6)


def test_ground_truth_in_other_modes_says_what_is_kept(bench_s):
    archs = bench_s.space.sample(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="one measured median per arch"):
        bench_s.query(archs, ["latency:a100"], mode="quantiles", ground_truth=True)


def test_a_damaged_file_is_refused_by_its_checksum(tmp_path):
    shutil.copytree(PACKAGED_ROOT / "s", tmp_path / "s")
    shutil.copy(PACKAGED_ROOT / "MANIFEST.json", tmp_path / "MANIFEST.json")
    path = tmp_path / "s" / "surrogates.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"surrogates.npz .*checksum mismatch"):
        load_packaged("s", tmp_path)


def test_an_edited_sidecar_field_is_refused(tmp_path):
    shutil.copytree(PACKAGED_ROOT / "s", tmp_path / "s")
    shutil.copy(PACKAGED_ROOT / "MANIFEST.json", tmp_path / "MANIFEST.json")
    sidecar = tmp_path / "s" / "benchmark.json"
    sidecar.write_text(sidecar.read_text().replace('"transform": "log"',
                                                   '"transform": "identity"', 1))
    with pytest.raises(ValueError, match=r"benchmark.json does not match .*checksum mismatch"):
        load_packaged("s", tmp_path)


def test_unknown_scale_names_the_choices():
    with pytest.raises(ValueError, match=r"scale 'tiny'.*\['s', 'm', 'l'\]"):
        Benchmark.published("tiny")


def test_hwgpt_bench_readme_example(api):
    arch = api.sample_arch()
    api.set_arch(arch)
    results = api.query()
    assert set(results) == {"perplexity", "accuracy", "latencies", "energies",
                            "float16_memory", "bfloat16_memory", "flops", "params"}
    assert isinstance(results["params"], int) and isinstance(results["flops"], int)
    assert len(results["latencies"]) == 13 and len(results["energies"]) == 13
    energy = api.query(metric="energies")
    assert set(energy) == {"energies"} and energy["energies"] == results["energies"]
    rtx2080 = api.query(device="rtx2080")
    assert rtx2080["latencies"] == {"rtx2080": results["latencies"]["rtx2080"]}
    perplexity = api.query(metric="perplexity", predictor="mlp")["perplexity"]
    assert isinstance(perplexity, float) and perplexity == results["perplexity"]
    expected = api.benchmark.query(api.space.from_hwgpt([arch]), ["latency:rtx2080"])
    assert results["latencies"]["rtx2080"] == pytest.approx(float(expected["latency:rtx2080"][0]))


def test_query_many_equals_one_query_per_config(api):
    configs = [api.sample_arch() for _ in range(3)]
    many = api.query_many(configs, metric="latencies", device="a100")
    for i, config in enumerate(configs):
        api.set_arch(config)
        one = api.query(metric="latencies", device="a100")
        assert one["latencies"]["a100"] == pytest.approx(float(many["latencies"]["a100"][i]))


def test_conformal_quantile_predictor_gives_ordered_quantiles(api):
    api.set_arch(api.sample_arch())
    quantiles = api.query(metric="latencies", device="h100",
                          predictor="conformal_quantile")["latencies"]["h100"]
    assert len(quantiles) == 9 and quantiles == sorted(quantiles)


@pytest.mark.parametrize(("call", "match"), [
    (lambda a: a.query(metric="latency"), r"unknown metric 'latency'.*'latencies'"),
    (lambda a: a.query(device="tpu"), r"unknown device 'tpu'.*'a100'"),
    (lambda a: a.query(predictor="xgb"), r"unknown predictor 'xgb'.*'mlp'"),
    (lambda a: a.set_arch({"sample_embed_dim": 700, "sample_n_layer": 10,
                           "sample_n_head": [4] * 10, "sample_mlp_ratio": [2] * 10,
                           "sample_bias": True}), r"embed_dim.*700.*192"),
    (lambda a: a.set_arch({"sample_embed_dim": 192}), r"sample_n_layer"),
])
def test_bad_input_gets_a_one_line_error(api, call, match):
    with pytest.raises(ValueError, match=match) as err:
        call(api)
    assert "\n" not in str(err.value)


def test_query_before_set_arch_is_an_error():
    fresh = HWGPT(search_space="s")
    with pytest.raises(ValueError, match=r"set_arch"):
        fresh.query()


def test_flops_and_params_equal_the_published_counts(api, published):
    arrays = published("s")
    archs = api.space.from_published({k: arrays[k] for k in
                                      ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")})
    configs = api.space.to_hwgpt(archs[:50])
    counts = api.query_many(configs, metric="params") | api.query_many(configs, metric="flops")
    np.testing.assert_array_equal(counts["params"], arrays["params"][:50])
    np.testing.assert_array_equal(counts["flops"], arrays["flops"][:50])


def test_cli_query_and_search_on_the_published_benchmark(tmp_path, capsys):
    from hwgpt_jax.cli import main

    archs = tmp_path / "archs.json"
    space = Benchmark.published("m").space
    archs.write_text(json.dumps(space.to_hwgpt(space.sample(jax.random.key(3), 4))))
    out = tmp_path / "q.csv"
    assert main(["query", "--published", "m", "--archs", str(archs), "--metrics",
                 "perplexity", "energy:a6000", "--out", str(out)]) == 0
    table = pd.read_csv(out, comment="#")
    assert len(table) == 4 and {"perplexity", "energy:a6000"} <= set(table.columns)
    assert main(["search", "--published", "s", "--objectives", "perplexity,energy:a6000",
                 "--algorithm", "random_search", "--budget", "32", "--population", "16",
                 "--out", str(tmp_path / "search")]) == 0
    pareto = pd.read_parquet(tmp_path / "search" / "pareto.parquet")
    assert len(pareto) >= 1 and pareto["energy:a6000"].gt(0).all()
    assert main(["search", "--published", "s", "--surrogates", str(tmp_path), "--objectives",
                 "perplexity", "--out", str(tmp_path / "x")]) == 2
    assert "give one" in capsys.readouterr().err
