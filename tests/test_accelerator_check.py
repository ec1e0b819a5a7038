"""The prepared accelerator check (benchmarks/accelerator_check.py) at tiny scale on two
simulated CPU devices: one command, every check present and passed, its figures written as
JSON lines. Its `data_parallel` check is the suite's oracle that data-parallel training over
two devices equals training on one (and its training checks run sampled sandwiches with a
different arch per device). On CPU, `train_float32` is left out (`--skip`): its function runs
in `train_bfloat16`, and `data_parallel` trains in float32 over the same two devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ["masked_dense", "train_float32", "train_bfloat16", "data_parallel", "evaluate",
          "profile", "pmap", "query_search", "summary"]


def test_accelerator_check_runs_every_check_at_tiny_scale(tmp_path):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accelerator_check.py"),
                           str(tmp_path / "out"), "--scale", "tiny", "--skip", "train_float32"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in
            (tmp_path / "out" / "accelerator_check.jsonl").read_text().splitlines()]
    assert [row["check"] for row in rows] == CHECKS
    assert all(row["ok"] for row in rows), [r for r in rows if not r["ok"]]
    by_name = {row["check"]: row for row in rows}
    assert [row["check"] for row in rows if "skipped" in row] == ["train_float32"]
    masked = by_name["masked_dense"]
    assert max(masked["largest_max_abs_diff"], masked["smallest_max_abs_diff"]) <= 1e-4
    assert {row["devices"] for row in rows} == {2}
    parallel = by_name["data_parallel"]
    assert "skipped" not in parallel and parallel["steps"] == 2
    assert parallel["max_rel_loss_diff"] <= 1e-5
    assert by_name["pmap"]["devices"] == 2
    train = by_name["train_bfloat16"]
    assert train["tokens_per_s"] > 0 and train["devices"] == 2 and train["dtype"] == "bfloat16"
    assert train["gradient_programs"] <= train["gradient_programs_max"]
    assert by_name["evaluate"]["compiles"] == by_name["evaluate"]["embed_dims"]
    assert len(by_name["profile"]["latency_ms"]) == 5
    assert by_name["query_search"]["query_archs_per_s"] > 0
