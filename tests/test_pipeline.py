"""End-to-end `hwgpt run` at micro settings: every artifact exists and is consistent."""

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest

from hwgpt_jax.stages.run import Pipeline, RunConfig, choose_archs

STAGES = ["train", "evaluate", "profile", "fit", "search", "verify", "report"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    events = []
    pipeline = Pipeline(RunConfig.micro(), out, progress=lambda s, i: events.append((s, i)))
    report = pipeline.run()
    return pipeline, out, report, events


def test_every_stage_ran_and_reported_progress(run):
    pipeline, _, report, events = run
    assert list(pipeline.timings) == STAGES
    assert report.exists()
    for stage in STAGES:
        assert (stage, {"started": True}) in events
    assert any(s == "train" and "loss" in i for s, i in events)
    assert any(s == "profile" and "latency_ms" in i for s, i in events)


def test_report_names_files_that_exist(run):
    _, out, report, _ = run
    text = report.read_text()
    linked = re.findall(r"\]\(([^)]+)\)", text)
    named = re.findall(r"`([\w/.\-]+\.(?:parquet|json|jsonl|png))`", text)
    assert len(linked) >= 8 and "quality.parquet" in named
    for name in linked + named:
        assert (out / name).exists(), name
    for heading in ("Supernet training", "Sub-network quality", "Hardware profile",
                    "Surrogates", "Multi-objective search", "Chosen architectures"):
        assert heading in text


def test_tables_are_consistent(run):
    pipeline, out, _, _ = run
    quality = pd.read_parquet(out / "quality.parquet")
    assert len(quality) == pipeline.config.n_evaluate == quality["arch_id"].nunique()
    assert np.all(quality["perplexity"] > 1)
    profile = pd.read_parquet(out / "profile.parquet")
    latency = profile[profile["metric"] == "latency"]
    assert latency.groupby("arch_id").size().eq(pipeline.config.profile_reps).all()
    assert latency["arch_id"].nunique() == pipeline.config.n_profile + 2  # + the extremes
    validation = json.loads((out / "surrogates" / "validation.json").read_text())
    assert set(validation) == {"perplexity", f"latency:{pipeline.device}"}
    assert "coverage_90" in validation[f"latency:{pipeline.device}"]
    for study, objectives in pipeline.studies.items():
        pareto = pd.read_parquet(out / "search" / study / "pareto.parquet")
        for _, group in pareto.groupby(["algorithm", "seed"]):
            values = group[objectives].to_numpy()
            # brute force: no point of a run's front dominates another
            dominates = (np.all(values[:, None] <= values[None], -1)
                         & np.any(values[:, None] < values[None], -1))
            assert not dominates.any(), (study, group)
    chosen = pd.read_parquet(out / "chosen.parquet")
    assert len(chosen) == pipeline.config.n_chosen
    assert chosen["measured_latency_ms"].gt(0).all()
    assert chosen["measured_perplexity"].gt(1).all()


def test_rerun_skips_matching_stages_and_reruns_changed_ones(run):
    pipeline, out, _, _ = run
    again = Pipeline(pipeline.config, out)
    again.run()
    assert again.skipped == STAGES and not again.timings
    changed = Pipeline(dataclasses.replace(pipeline.config, n_chosen=1), out)
    assert [s for s in STAGES if changed.is_done(s, [])] == STAGES[:5]
    fresh = Pipeline(pipeline.config, out, fresh=True)
    assert not any(fresh.is_done(s, []) for s in STAGES)


def test_choose_archs_picks_extremes_then_the_knee():
    pareto = pd.DataFrame({"arch_id": list("abcd"), "ppl": [1.0, 2.0, 3.0, 4.0],
                           "ms": [4.0, 1.9, 1.5, 1.0]})
    assert choose_archs(pareto, ["ppl", "ms"], 3)["arch_id"].tolist() == ["a", "d", "b"]


def test_plot_cli_on_run_outputs(run, tmp_path):
    from hwgpt_jax.cli import main

    pipeline, out, _, _ = run
    assert main(["plot", "search", "--results", str(out / "search" / "latency"),
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "pareto_front.png").stat().st_size > 2000
    assert main(["plot", "calibration", "--surrogates", str(out / "surrogates"), "--data",
                 str(out / "profile.parquet"), "--metric", f"latency:{pipeline.device}",
                 "--out", str(tmp_path / "cal.png")]) == 0
    assert main(["plot", "ecdf", "--data", str(out / "quality.parquet"), "--metric",
                 "perplexity", "--out", str(tmp_path / "ecdf.png")]) == 0
    assert (tmp_path / "ecdf.png").stat().st_size > 2000


def test_retraining_replaces_the_earlier_runs_checkpoints(run):
    """A re-run train stage (changed steps here; --fresh alike) starts over in `train/`: the
    earlier run's checkpoints are gone, so later stages read the new one (last test of the
    module: it replaces the shared run's checkpoint)."""
    pipeline, out, _, _ = run
    before = sorted(int(p.name) for p in (out / "train" / "checkpoints").iterdir())
    steps = max(before) - 1
    assert steps >= 1
    Pipeline(dataclasses.replace(pipeline.config, train_steps=steps), out).train()
    after = sorted(int(p.name) for p in (out / "train" / "checkpoints").iterdir())
    assert max(after) == steps
