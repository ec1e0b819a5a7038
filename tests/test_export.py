"""Export of sub-networks as standalone dense checkpoints (hwgpt_jax.model.dense, the export
stage hwgpt_jax.stages.export, `hwgpt export`,
`hwgpt search --export`)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from supernet_run import supernet_run

from hwgpt_jax.cli import main
from hwgpt_jax.model import supernet as model
from hwgpt_jax.model.checkpoints import load_trained_params
from hwgpt_jax.model.dense import export_dense, load_dense
from hwgpt_jax.search.pareto import non_dominated_mask
from hwgpt_jax.space import costs
from hwgpt_jax.space.arch import Arch, get_space
from hwgpt_jax.stages.evaluate import run_validation_windows
from hwgpt_jax.stages.export import evenly_spaced, export_pareto

SPACE = get_space("tiny")
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, SPACE.vocab_size, (2, 16)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run_dir = supernet_run(tmp_path_factory)
    params, meta = load_trained_params(run_dir)
    return run_dir, jax.device_get(params), meta


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    """Two archs (with and without biases, depths 4 and 2) exported from the supernet checkpoint."""
    run_dir, params, meta = checkpoint
    archs = SPACE.from_records([
        {"embed_dim": 128, "n_layer": 4, "n_head": [8, 2, 4, 8], "mlp_ratio": [2, 4, 3, 2],
         "bias": True},
        {"embed_dim": 64, "n_layer": 2, "n_head": [4, 2], "mlp_ratio": [3, 4], "bias": False}])
    out = tmp_path_factory.mktemp("export")
    folders = [export_dense(params, archs[i], SPACE, out / f"m{i}", source_checkpoint=run_dir,
                            source_step=meta["step"], metrics={"perplexity": np.float32(12.5),
                                                               "latency:cpu": float("nan")},
                            metadata={"note": ("a", 1)})
               for i in range(len(archs))]
    return archs, folders


def test_loaded_model_equals_the_masked_supernet(checkpoint, exported):
    _, params, _ = checkpoint
    archs, folders = exported
    for i, folder in enumerate(folders):
        dense, _ = load_dense(folder)
        reference = model.extract(params, archs[i], SPACE)
        assert jax.tree.structure(dense) == jax.tree.structure(reference)
        for got, want in zip(jax.tree.leaves(dense), jax.tree.leaves(reference), strict=True):
            assert np.array_equal(np.asarray(got), want)  # bit-exact round trip
        logits = model.dense_forward(dense, TOKENS)
        np.testing.assert_allclose(logits, model.forward(params, TOKENS, archs[i], SPACE),
                                   atol=1e-4, rtol=0)


def test_sidecar_describes_the_model(checkpoint, exported):
    run_dir, _, meta = checkpoint
    archs, folders = exported
    _, info = load_dense(folders[0])
    on_disk = json.loads((folders[0] / "model.json").read_text())
    assert info == on_disk
    assert info["scale"] == "tiny" and info["arch_id"] == SPACE.arch_ids(archs[0])[0]
    assert info["arch"] == SPACE.to_hwgpt(archs[0])[0]
    assert info["arch"]["sample_intermediate_size"] == [256, 512, 384, 256]
    assert info["param_count"] == int(costs.param_count(archs[0], SPACE))  # analytic count
    assert info["dtype"] == "float32"
    assert info["source"] == {"checkpoint": str(run_dir.resolve()), "step": meta["step"]}
    assert info["metrics"] == {"perplexity": 12.5, "latency:cpu": None}  # NaN -> null
    assert info["metadata"] == {"note": ["a", 1]}
    assert {"jax", "orbax-checkpoint", "hwgpt-jax"} <= set(info["versions"])
    assert not [p for p in folders[0].parent.iterdir() if p.name.startswith(".")]


def test_export_does_not_overwrite_unless_asked(checkpoint, exported):
    _, params, _ = checkpoint
    archs, folders = exported
    with pytest.raises(FileExistsError, match="exists"):
        export_dense(params, archs[1], SPACE, folders[0])
    with pytest.raises(ValueError, match="one arch"):
        export_dense(params, archs, SPACE, folders[0].parent / "batch")


def _corrupt(folder, how):
    sidecar = folder / "model.json"
    info = json.loads(sidecar.read_text())
    if how == "no sidecar":
        sidecar.unlink()
    elif how == "bad json":
        sidecar.write_text("{not json")
    elif how == "other format":
        sidecar.write_text(json.dumps(info | {"format": "something-else"}))
    elif how == "edited arrays":
        sidecar.write_text(json.dumps(info | {"params_sha256": "0" * 64}))
    elif how == "wrong arch id":
        sidecar.write_text(json.dumps(info | {"arch_id": "tiny:e64-l2-h2.2-r2.2-b0"}))
    elif how == "no params":
        import shutil

        shutil.rmtree(folder / "params")
    elif how == "flipped params":
        path = max((p for p in (folder / "params").rglob("*") if p.is_file()),
                   key=lambda p: p.stat().st_size)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(("how", "message"), [
    ("no sidecar", "has no model.json"), ("bad json", "is not valid JSON"),
    ("other format", "is not a hwgpt-jax-dense-model sidecar"),
    ("edited arrays", "model.json does not match its sidecar_sha256"),
    ("wrong arch id", "model.json does not match its sidecar_sha256: a field was edited"),
    ("no params", r"params/.* is missing; the folder is damaged"),
    ("flipped params", "does not match its recorded sha256")])
def test_loading_a_corrupt_folder_fails_clearly(exported, tmp_path, how, message):
    import shutil

    _, folders = exported
    copy = tmp_path / "copy"
    shutil.copytree(folders[1], copy)
    _corrupt(copy, how)
    with pytest.raises(ValueError, match=message) as error:
        load_dense(copy)
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dense(tmp_path / "missing")


def test_evenly_spaced_keeps_both_ends_and_distinct_ranks():
    assert evenly_spaced(10, 3).tolist() == [0, 4, 9] or evenly_spaced(10, 3).tolist() == [
        0, 5, 9]
    assert evenly_spaced(5, None).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(3, 7).tolist() == [0, 1, 2]
    assert evenly_spaced(8, 1).tolist() == [0]
    for n in range(1, 30):
        for k in range(1, n + 1):
            chosen = evenly_spaced(n, k)
            assert len(set(chosen.tolist())) == k and chosen[0] == 0
            assert k == 1 or chosen[-1] == n - 1
            gaps = np.diff(chosen)  # as even as integers allow
            assert k < 3 or gaps.max() - gaps.min() <= 1


def test_export_pareto_picks_evenly_along_the_pooled_front(checkpoint, tmp_path):
    run_dir, _, _ = checkpoint
    archs = SPACE.sample_unique(jax.random.key(7), 12)
    rng = np.random.default_rng(3)
    # two runs' tables pooled: random objectives, one duplicated arch, dominated rows
    table = pd.DataFrame({"arch_id": SPACE.arch_ids(archs), "algorithm": "nsga2",
                          "seed": np.arange(12) % 2, "error": rng.uniform(0, 1, 12),
                          "latency": rng.uniform(0, 1, 12)})
    table = pd.concat([table, table.iloc[[3]]], ignore_index=True)
    front = table.drop_duplicates("arch_id")
    values = front[["error", "latency"]].to_numpy()
    dominated = [any(np.all(o <= v) and np.any(o < v) for o in values) for v in values]
    front = front[~np.asarray(dominated)].sort_values("error")  # brute-force oracle
    assert np.array_equal(~np.asarray(dominated), np.asarray(non_dominated_mask(values)))
    limit = min(3, len(front))
    folders = export_pareto(run_dir, table, tmp_path / "out", limit=limit,
                            objectives=["error", "latency"])
    expected = front.iloc[evenly_spaced(len(front), limit)]
    assert [f.name for f in folders] == [i.replace(":", "_") for i in expected["arch_id"]]
    for folder, (_, row) in zip(folders, expected.iterrows(), strict=True):
        info = json.loads((folder / "model.json").read_text())
        assert info["metrics"] == {"error": row["error"], "latency": row["latency"]}
        assert info["metadata"]["found_by"] == {"algorithm": "nsga2", "seed": row["seed"]}
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [m["arch_id"] for m in index["models"]] == expected["arch_id"].tolist()
    assert index["candidates"] == len(front) and index["limit"] == limit
    with pytest.raises(ValueError, match=r"objective column\(s\) \['nope'\]"):
        export_pareto(run_dir, table, tmp_path / "o2", objectives=["nope"])
    with pytest.raises(ValueError, match="limit=0"):
        export_pareto(run_dir, table, tmp_path / "o2", limit=0)


def test_cli_search_exports_loadable_models(checkpoint, tmp_path):
    """`hwgpt search --checkpoint --export 2` on the supernet objective: the exported dense
    models' own perplexity equals the supernet_perplexity the search recorded."""
    run_dir, _, meta = checkpoint
    out = tmp_path / "search"
    code = main(["search", "--checkpoint", str(run_dir), "--objectives",
                 "supernet_perplexity,params", "--algorithm", "random_search", "--budget", "8",
                 "--population", "8", "--val-windows", "2", "--export", "2", "--out", str(out)])
    assert code == 0
    index = json.loads((out / "export" / "index.json").read_text())
    folders = [out / "export" / m["folder"] for m in index["models"]]
    assert len(folders) == 2 and index["objectives"] == ["supernet_perplexity", "params"]
    pareto = pd.read_parquet(out / "pareto.parquet").set_index("arch_id")
    windows = jnp.asarray(run_validation_windows(run_dir, meta, 2))
    for folder in folders:
        dense, info = load_dense(folder)
        row = pareto.loc[info["arch_id"]]
        assert info["metrics"]["supernet_perplexity"] == pytest.approx(
            row["supernet_perplexity"])
        assert info["param_count"] == row["params"]
        logits = np.asarray(model.dense_forward(dense, windows[:, :-1]), np.float64)
        top = logits.max(-1, keepdims=True)
        log_z = (top + np.log(np.exp(logits - top).sum(-1, keepdims=True)))[..., 0]
        target = np.take_along_axis(logits, np.asarray(windows[:, 1:])[..., None], -1)[..., 0]
        assert np.exp((log_z - target).mean()) == pytest.approx(row["supernet_perplexity"],
                                                                rel=1e-4)
    # the two ends of the front: lowest perplexity first, then the fewest parameters
    assert index["models"][0]["metrics"]["supernet_perplexity"] == pytest.approx(
        pareto["supernet_perplexity"].min())
    assert index["models"][1]["param_count"] == pareto["params"].min()


def test_cli_export_from_an_arch_file(checkpoint, tmp_path, capsys):
    run_dir, _, _ = checkpoint
    archs = Arch.concatenate([SPACE.smallest(), SPACE.mid(), SPACE.smallest(), SPACE.largest()])
    arch_file = tmp_path / "archs.json"
    arch_file.write_text(SPACE.to_json(archs))
    args = ["export", "--checkpoint", str(run_dir), "--archs", str(arch_file), "--limit", "2",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    # duplicates dropped (3 distinct archs, in file order), then ranks 0 and 2
    expected = SPACE.arch_ids(Arch.concatenate([SPACE.smallest(), SPACE.largest()]))
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert names == sorted(i.replace(":", "_") for i in expected)
    capsys.readouterr()
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize(("source", "message"), [
    ("--pareto archs.json", "expected a .parquet table"),
    ("--archs s_archs.json", "scale 's', expected 'tiny'"),
    ("--archs missing.json", "does not exist"),
])
def test_cli_export_bad_input_exits_2(checkpoint, tmp_path, capsys, source, message):
    run_dir, _, _ = checkpoint
    (tmp_path / "archs.json").write_text(SPACE.to_json(SPACE.smallest()))
    s_space = get_space("s")
    (tmp_path / "s_archs.json").write_text(s_space.to_json(s_space.smallest()))
    flag, name = source.split()
    code = main(["export", "--checkpoint", str(run_dir), flag, str(tmp_path / name),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.strip().count("\n") == 0
