"""Tests of hwgpt_jax/surrogates/benchmark.py: batched queries, modes, ground truth, save/load,
bad input."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.costs import forward_flops, param_count
from hwgpt_jax.surrogates import MetricData, SurrogateConfig, SurrogateSpec
from hwgpt_jax.surrogates.benchmark import QUERY_CHUNK, Benchmark

SPACE = get_space("tiny")
FAST = SurrogateConfig(hidden=(16, 16), max_steps=100, eval_every=50, batch_size=256,
                       cv_steps=50, ensemble_size=2)


def tables(n: int = 1500) -> list[MetricData]:
    archs = SPACE.sample_unique(jax.random.key(0), n)
    rng = np.random.default_rng(0)
    flops = forward_flops(archs, SPACE, 1, 256).astype(np.float64)[:, None]
    params = param_count(archs, SPACE).astype(np.float64)
    return [
        MetricData("tiny", "perplexity", "", "", archs,
                   20 + 400 / np.sqrt(params / 1e5) + 0.1 * rng.standard_normal(n)),
        MetricData("tiny", "latency", "cpu", "ms", archs,
                   1e-8 * flops * np.exp(0.05 * rng.standard_normal((n, 5)))),
        MetricData("tiny", "latency", "gpu", "ms", archs,
                   1e-10 * flops * np.exp(0.1 * rng.standard_normal((n, 3)))),
    ]


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    # perplexity on the one-hot encoding, latency on the cost features: one query, two
    # encodings; each model family once (ensemble, linear, and the cross-validated choice)
    configs = {"perplexity": SurrogateConfig(kind="mlp", hidden=(16, 16), max_steps=100,
                                             eval_every=50, batch_size=256, encoding="onehot",
                                             family="ensemble", ensemble_size=2),
               "latency:cpu": dataclasses.replace(FAST, family="linear"),
               "hardware": FAST}
    return Benchmark.fit(tables(), configs)


@pytest.fixture(scope="module")
def saved(bench, tmp_path_factory):
    return bench.save(tmp_path_factory.mktemp("bench") / "surrogates")


def test_listing(bench):
    assert bench.metrics() == ["latency", "perplexity"]
    assert bench.devices("latency") == ["cpu", "gpu"] and bench.devices("perplexity") == []
    assert bench.resolve(["perplexity", "latency"]) == ["perplexity", "latency:cpu",
                                                        "latency:gpu"]
    assert bench.resolve(["latency"], devices=["gpu"]) == ["latency:gpu"]


def test_one_batched_query_equals_single_arch_queries(bench):
    archs = SPACE.sample_unique(jax.random.key(1), 10_000)
    batched = bench.query(archs, ["perplexity", "latency"])
    assert set(batched) == {"perplexity", "latency:cpu", "latency:gpu"}
    single = {k: np.empty(10_000, np.float32) for k in batched}
    rows = archs.to_numpy()  # host copies: taking row i dispatches nothing to the device
    for i in range(10_000):  # every one of the 10,000 archs, one call each
        out = bench.query(rows[i], ["perplexity", "latency"])
        for k, v in out.items():
            single[k][i] = np.asarray(v)[0]
    for k in batched:
        np.testing.assert_allclose(np.asarray(batched[k]), single[k], rtol=2e-6)


def test_modes_shapes_and_order(bench):
    archs = SPACE.sample(jax.random.key(2), 64)
    median = bench.query(archs, ["latency:cpu"])["latency:cpu"]
    quantiles = bench.query(archs, ["latency:cpu"], mode="quantiles")["latency:cpu"]
    interval = bench.query(archs, ["latency:cpu"], mode="interval", level=0.8)["latency:cpu"]
    sample = bench.query(archs, ["latency:cpu"], mode="sample",
                         key=jax.random.key(3))["latency:cpu"]
    assert median.shape == (64,) and quantiles.shape == (64, 9) and interval.shape == (64, 2)
    assert np.all(np.diff(np.asarray(quantiles), axis=1) >= 0)
    assert np.all(interval[:, 0] <= median) and np.all(median <= interval[:, 1])
    again = bench.query(archs, ["latency:cpu"], mode="sample", key=jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(sample), np.asarray(again["latency:cpu"]))
    other = bench.query(archs, ["latency:cpu"], mode="sample", key=jax.random.key(4))
    assert not np.array_equal(np.asarray(sample), np.asarray(other["latency:cpu"]))


def test_objective_fn_is_pure_jittable_and_matches_query(bench):
    fn = jax.jit(bench.objective_fn(["perplexity", "latency:gpu"]))
    archs = SPACE.sample(jax.random.key(5), 300)
    values = fn(archs, jax.random.key(0))
    assert values.shape == (300, 2)
    expected = bench.query(archs, ["perplexity", "latency:gpu"])
    np.testing.assert_allclose(values[:, 0], expected["perplexity"], rtol=1e-6)
    np.testing.assert_allclose(values[:, 1], expected["latency:gpu"], rtol=1e-6)
    sampler = jax.jit(bench.objective_fn(["latency:gpu"], mode="sample"))
    a, b = sampler(archs, jax.random.key(1)), sampler(archs, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_ground_truth_replaces_predictions_where_measured(bench):
    data = tables()[1]
    measured = data.archs[:5]
    unseen = SPACE.sample_unique(jax.random.key(9), 5000)
    known = {g.tobytes() for g in SPACE.genes(data.archs)}
    unseen = unseen[np.array([g.tobytes() not in known for g in SPACE.genes(unseen)])][:5]
    both = type(measured).concatenate([measured, unseen])
    got = np.asarray(bench.query(both, ["latency:cpu"], ground_truth=True)["latency:cpu"])
    predicted = np.asarray(bench.query(both, ["latency:cpu"])["latency:cpu"])
    np.testing.assert_allclose(got[:5], np.median(data.observations[:5], axis=1), rtol=1e-6)
    np.testing.assert_array_equal(got[5:], predicted[5:])
    frame = bench.query_frame(both, ["latency:cpu"], ground_truth=True)
    assert frame["latency:cpu@measured"].tolist() == [True] * 5 + [False] * 5
    assert frame.attrs["units"] == {"latency:cpu": "ms"}


def test_save_load_round_trip_gives_identical_predictions(bench, saved):
    loaded = Benchmark.load(saved)
    archs = SPACE.sample(jax.random.key(6), 500)
    for mode, kwargs in [("median", {}), ("quantiles", {}), ("interval", {"level": 0.5}),
                         ("sample", {"key": jax.random.key(7)})]:
        a = bench.query(archs, ["perplexity", "latency"], mode=mode, **kwargs)
        b = loaded.query(archs, ["perplexity", "latency"], mode=mode, **kwargs)
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    assert loaded.spec("latency:gpu") == bench.spec("latency:gpu")
    assert (loaded.spec("perplexity").family, loaded.spec("perplexity").members) == (
        "linear+mlp", 2)
    assert loaded.spec("latency:cpu").family == "linear"
    report = loaded.spec("latency:gpu").fit_report
    assert report["selection"]["chosen"] in report["selection"]["candidates"]
    assert report["cost_features"].startswith("analytic")  # tiny: no published model
    assert set(loaded.tables) == set(bench.tables)
    sidecar = json.loads((saved / "benchmark.json").read_text())
    assert sidecar["scale"] == "tiny" and sidecar["surrogates"][1]["unit"] == "ms"
    with pytest.raises(FileExistsError, match="exists"):
        bench.save(saved)
    with pytest.raises(ValueError, match="scale 'tiny', expected 's'"):
        Benchmark.load(saved, scale="s")


def test_unknown_metric_device_and_level_errors_list_what_exists(bench):
    archs = SPACE.sample(jax.random.key(8), 4)
    with pytest.raises(ValueError, match=r"unknown metric 'energy'.*\['latency', 'perplexity'\]"):
        bench.query(archs, ["energy"])
    with pytest.raises(ValueError, match=r"unknown device 'tpu' for latency.*\['cpu', 'gpu'\]"):
        bench.query(archs, ["latency"], devices=["tpu"])
    with pytest.raises(ValueError, match="level=0.33 is not calibrated"):
        bench.query(archs, ["latency:cpu"], mode="interval", level=0.33)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        bench.query(archs, ["latency:cpu"], mode="sample")


def test_archs_of_another_scale_are_rejected(bench):
    other = get_space("s").sample(jax.random.key(10), 3)
    with pytest.raises(ValueError, match="Lmax=4 for the tiny space"):
        bench.query(other, ["perplexity"])


@pytest.mark.parametrize("field, row, value, match", [
    ("embed_dim", 3, 100, r"embed_dim=100 is not in the tiny space.*\[64, 128, 256\]"),
    ("n_layer", 0, 5, "n_layer=5 is not in the tiny space"),
    ("n_head", 7, 3, "n_head=3 is not in the tiny space"),
    ("mlp_ratio", 5, 9, "mlp_ratio=9 is not in the tiny space"),
    ("padding", 2, 4, "n_head has value 4 past n_layer; padding must be 0"),
])
def test_invalid_values_are_rejected_naming_the_field(bench, field, row, value, match):
    # Values are checked inside the jitted query; a bad batch gets the host-side message.
    archs = jax.tree.map(np.array, SPACE.sample(jax.random.key(11), 3000))  # > 1 chunk
    archs.n_layer[2] = 2  # row 2: two layers, so its last two entries are padding
    archs.n_head[2, 2:] = archs.mlp_ratio[2, 2:] = 0
    target = {"padding": archs.n_head[:, 3]}.get(field)
    if target is None:
        getattr(archs, field)[row] = value
    else:
        target[row] = value
    with pytest.raises(ValueError, match=match):
        bench.query(archs, ["perplexity"])
    with pytest.raises(ValueError, match=match):
        bench.query(archs[row], ["latency:cpu"])  # the single-arch path too


def test_chunked_query_equals_queries_of_the_parts(bench):
    # 2100 archs run in two chunks of QUERY_CHUNK (the last one padded), each half in one pass;
    # chunking touches only the base quantiles, which mode 'quantiles' returns whole.
    assert 1050 < QUERY_CHUNK < 2100
    archs = SPACE.sample(jax.random.key(12), 2100).to_numpy()
    keys = ["perplexity", "latency:cpu", "latency:gpu"]
    whole = bench.query(archs, keys, mode="quantiles")
    for part in (slice(0, 1050), slice(1050, 2100)):
        alone = bench.query(archs[part], keys, mode="quantiles")
        for k in keys:
            np.testing.assert_allclose(np.asarray(whole[k][part]), np.asarray(alone[k]),
                                       rtol=1e-6, err_msg=k)


@pytest.mark.parametrize("damage", ["no_sidecar", "bad_json", "wrong_encoding", "edited_hash",
                                    "edited_transform", "missing_state", "flipped_state",
                                    "truncated_tables", "old_format"])
def test_corrupted_folder_is_rejected_with_a_clear_message(saved, tmp_path, damage):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    sidecar = folder / "benchmark.json"
    if damage == "no_sidecar":
        sidecar.unlink()
        match = "no benchmark.json"
    elif damage == "bad_json":
        sidecar.write_text(sidecar.read_text()[:50])
        match = "not valid JSON"
    elif damage == "wrong_encoding":
        data = json.loads(sidecar.read_text())
        data["encoding_version"] = 999
        sidecar.write_text(json.dumps(data))
        match = "encoding version 999"
    elif damage == "edited_hash":
        data = json.loads(sidecar.read_text())
        data["state_sha256"] = "0" * 64
        sidecar.write_text(json.dumps(data))
        match = "benchmark.json does not match its sidecar_sha256"
    elif damage == "edited_transform":  # another valid value: answers would change silently
        data = json.loads(sidecar.read_text())
        spec = data["surrogates"][0]
        assert "transform" in spec
        spec["transform"] = "identity" if spec["transform"] != "identity" else "log"
        sidecar.write_text(json.dumps(data))
        match = "benchmark.json does not match its sidecar_sha256: a field was edited"
    elif damage == "missing_state":
        shutil.rmtree(folder / "state")
        match = r"state/.* is missing; the folder is damaged"
    elif damage == "flipped_state":
        path = max((p for p in (folder / "state").rglob("*") if p.is_file()),
                   key=lambda p: p.stat().st_size)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        match = f"{path.name} does not match its recorded sha256"
    elif damage == "old_format":
        data = json.loads(sidecar.read_text())
        data["format_version"] = 1
        sidecar.write_text(json.dumps(data))
        match = "has format_version 1; this version reads 2"
    else:
        path = folder / "tables.npz"
        path.write_bytes(path.read_bytes()[:1000])
        match = "tables.npz does not match its recorded sha256"
    with pytest.raises(ValueError, match=match):
        Benchmark.load(folder)


def test_cli_fit_then_query(tmp_path, capsys):
    import pandas as pd
    import pyarrow.parquet as pq

    from hwgpt_jax.cli import main

    rows = []
    for data in tables(400)[:2]:
        ids = SPACE.arch_ids(data.archs)
        for i in range(len(data)):
            rows += [{"arch_id": ids[i], "scale": "tiny", "metric": data.metric,
                      "device": data.device, "value": v, "unit": data.unit}
                     for v in data.observations[i]]
    pd.DataFrame(rows).to_parquet(tmp_path / "table.parquet")
    out = tmp_path / "surrogates"
    small = "hidden = [16, 16]\nensemble_size = 2\nfolds = 2\ncv_steps = 50\ncalib_folds = 3\n"
    presets = tmp_path / "small.toml"  # the default preset's keys, CI-sized
    presets.write_text(f'[quality]\nkind = "mlp"\n{small}[hardware]\nkind = "quantile"\n{small}')
    assert main(["fit", "--data", str(tmp_path / "table.parquet"), "--out", str(out),
                 "--max-steps", "50", "--config", str(presets)]) == 0
    assert main(["query", "--surrogates", str(out), "-n", "100", "--seed", "1", "--metrics",
                 "perplexity", "latency", "--mode", "interval", "--level", "0.8",
                 "--out", str(tmp_path / "q.parquet")]) == 0
    table = pq.read_table(tmp_path / "q.parquet")
    metadata = json.loads(table.schema.metadata[b"hwgpt"])
    assert metadata["metrics"] == ["perplexity", "latency:cpu"] and metadata["scale"] == "tiny"
    frame = table.to_pandas()
    assert len(frame) == 100 and {"latency:cpu@lo0.8", "latency:cpu@hi0.8"} <= set(frame)
    assert np.all(frame["latency:cpu@lo0.8"] <= frame["latency:cpu@hi0.8"])
    capsys.readouterr()
    assert main(["query", "--surrogates", str(out), "-n", "5", "--metrics", "energy",
                 "--out", str(tmp_path / "bad.csv")]) == 2
    assert "unknown metric 'energy'" in capsys.readouterr().err


def test_a_spec_written_before_model_selection_reads_as_a_plain_mlp(bench):
    old = bench.spec("latency:gpu").to_json()
    del old["family"], old["members"]
    spec = SurrogateSpec.from_json(old)
    assert (spec.family, spec.members) == ("mlp", 1)
    assert "linear" not in spec.state_shapes(10) and len(spec.state_shapes(10)["params"]) == 3


def test_damaged_state_gives_one_line_and_no_stray_traceback(saved, tmp_path):
    """orbax reads arrays in threads: a damaged file must be caught before it opens them, or
    'RuntimeError: Event loop is closed' tracebacks follow the error at exit."""
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    (folder / "state" / "manifest.ocdbt").unlink()
    proc = subprocess.run([sys.executable, "-m", "hwgpt_jax.cli", "query", "--surrogates",
                           str(folder), "-n", "2", "--metrics", "perplexity", "--out",
                           str(tmp_path / "q.parquet")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"hwgpt query: error: {folder}/state/manifest.ocdbt is missing; the folder is damaged"]
