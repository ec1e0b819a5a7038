"""Tests for `hwgpt search` and hwgpt_jax.stages.search (analytic objectives, tiny space)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hwgpt_jax.cli import main

ARGS = ["search", "--objectives", "params,flops", "--scale", "tiny", "--population", "32"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    code = main(ARGS + ["--algorithm", "random_search,nsga2", "--budget", "96", "--seeds", "2",
                        "--constraint", "params<=9e6", "--out", str(out)])
    return code, out


def test_search_writes_tables_plots_and_summary(run):
    code, out = run
    assert code == 0
    for name in ("trajectory.parquet", "hypervolume.parquet", "pareto.parquet", "summary.json",
                 "pareto_front.png", "hypervolume.png"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temp files
    trajectory = pd.read_parquet(out / "trajectory.parquet")
    assert len(trajectory) == 2 * 2 * 96  # 2 algorithms x 2 seeds x budget
    assert {"arch_id", "params", "flops", "feasible", "n_head"} <= set(trajectory.columns)
    assert (trajectory["feasible"] == (trajectory["params"] <= 9e6)).all()
    metadata = json.loads(pq.read_schema(out / "pareto.parquet").metadata[b"hwgpt"])
    assert metadata["scale"] == "tiny" and metadata["constraints"] == ["params<=9e6"]
    assert metadata["normalization"]["rule"].startswith("min-max")


def test_pareto_table_is_the_feasible_front_of_each_run(run):
    _, out = run
    trajectory = pd.read_parquet(out / "trajectory.parquet")
    pareto = pd.read_parquet(out / "pareto.parquet")
    for (algorithm, seed), front in pareto.groupby(["algorithm", "seed"]):
        evaluated = trajectory[(trajectory.algorithm == algorithm) & (trajectory.seed == seed)
                               & trajectory.feasible]
        values = evaluated[["params", "flops"]].to_numpy()
        for point in front[["params", "flops"]].to_numpy():
            better = np.all(values <= point, 1) & np.any(values < point, 1)
            assert not better.any()
        assert front["arch_id"].is_unique and front["feasible"].all()


def test_hypervolume_table_is_monotone_and_summarized(run):
    _, out = run
    curves = pd.read_parquet(out / "hypervolume.parquet")
    for _, curve in curves.groupby(["algorithm", "seed"]):
        assert np.all(np.diff(curve["hypervolume"].to_numpy()) >= -1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["hypervolume"]) == {"random_search", "nsga2"}
    for name, row in summary["hypervolume"].items():
        finals = curves[curves.algorithm == name].groupby("seed")["hypervolume"].last()
        assert row["final_hypervolume_mean"] == pytest.approx(finals.mean())
        assert 0 < row["final_hypervolume_max"] <= 1


def test_preset_file_supplies_defaults(tmp_path, capsys):
    preset = tmp_path / "p.toml"
    preset.write_text('algorithms = "random_search"\nobjectives = "params,flops"\n'
                      'scale = "tiny"\nbudget = 64\npopulation_size = 64\n')
    assert main(["search", "--preset", str(preset), "--out", str(tmp_path / "o")]) == 0
    assert len(pd.read_parquet(tmp_path / "o" / "trajectory.parquet")) == 64
    preset.write_text('algoritm = "nsga2"\n')
    assert main(["search", "--preset", str(preset), "--out", str(tmp_path / "o")]) == 2
    assert "unknown config key(s) ['algoritm']" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--algorithm", "nope", "--budget", "64"], "unknown algorithm(s) ['nope']"),
    (["--algorithm", "nsga2", "--budget", "10"], "budget 10 is smaller"),
    (["--algorithm", "nsga2", "--budget", "64", "--objectives", "perplexity"],
     "unknown objective(s) ['perplexity']"),
    (["--algorithm", "random_search", "--budget", "64", "--constraint", "params<=1"],
     "no evaluated architecture satisfies the constraints"),
    (["--algorithm", "random_search", "--budget", "64", "--constraint", "params=1"],
     "not of the form"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, message):
    code = main(ARGS + extra + ["--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.strip().count("\n") == 0 or "error" in err.strip().splitlines()[-1]


def test_a_search_larger_than_memory_exits_2_before_running(tmp_path, capsys, monkeypatch):
    from hwgpt_jax.search import runner

    monkeypatch.setattr(runner, "available_memory_bytes", lambda device: 1000)
    code = main(["search", "--objectives", "params,flops", "--scale", "tiny", "--population",
                 "24", "--algorithm", "random_search", "--budget", "48",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "use a smaller population or budget" in err, err
    assert err.strip().count("\n") == 0
    assert not (tmp_path / "o" / "trajectory.parquet").exists()
