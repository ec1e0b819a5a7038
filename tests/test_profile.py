import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import pandas as pd
import pytest

from hwgpt_jax.base.files import read_table_metadata
from hwgpt_jax.cli import main
from hwgpt_jax.measure.energy import EnergySensor
from hwgpt_jax.measure.profiler import Profiler
from hwgpt_jax.space import costs
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.arch_files import read_arch_file
from hwgpt_jax.stages.profile import ProfileConfig, parts_dir, profile_archs

SPACE = get_space("tiny")
CONFIG = ProfileConfig(batch=2, seq=16, reps=3, warmup=1)


@pytest.fixture(scope="module")
def archs():
    return SPACE.sample_unique(jax.random.key(3), 3)


@pytest.fixture(scope="module")
def profiled(archs, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "profile.parquet"
    seen = []
    table = profile_archs(archs, SPACE, CONFIG, out, on_arch=lambda a, ms: seen.append((a, ms)))
    return table, out, seen


def by_metric(table, metric):
    return table[table["metric"] == metric].set_index("arch_id")


def test_rows_are_archs_times_reps(profiled, archs):
    table, out, seen = profiled
    ids = SPACE.arch_ids(archs)
    assert [a for a, _ in seen] == ids and all(ms > 0 for _, ms in seen)
    on_disk = pd.read_parquet(out)
    pd.testing.assert_frame_equal(on_disk, table)
    for metric in ("latency", "energy"):
        rows = table[table["metric"] == metric]
        assert len(rows) == len(ids) * CONFIG.reps
        for arch_id in ids:
            assert sorted(rows.loc[rows["arch_id"] == arch_id, "repeat"]) == [0, 1, 2]
    latency = table[table["metric"] == "latency"]
    assert (latency["value"] > 0).all() and (latency["unit"] == "ms").all()
    for metric in ("flops_xla", "flops_analytic", "params", "memory", "compile_time"):
        assert list(by_metric(table, metric).index) == ids  # one scalar per arch
    assert not parts_dir(out).exists()  # parts are merged and removed


def test_flops_and_params_match_the_analytic_counts(profiled, archs):
    table, _, _ = profiled
    xla, analytic = by_metric(table, "flops_xla")["value"], by_metric(table, "flops_analytic")
    params = by_metric(table, "params")["value"]
    for i, arch_id in enumerate(SPACE.arch_ids(archs)):
        arch = archs[i]
        expected = costs.forward_flops(arch, SPACE, CONFIG.batch, CONFIG.seq)
        assert analytic.loc[arch_id, "value"] == expected
        assert abs(xla[arch_id] - expected) / expected < 0.15
        assert params[arch_id] == costs.param_count(arch, SPACE)


def test_memory_analysis_counts_the_weights(profiled, archs):
    table, _, _ = profiled
    params = by_metric(table, "params")["value"]
    argument = by_metric(table, "memory_argument")["value"]
    output = by_metric(table, "memory_output")["value"]
    total = by_metric(table, "memory")["value"]
    for arch_id in SPACE.arch_ids(archs):
        tokens_bytes = CONFIG.batch * CONFIG.seq * 4
        # arguments are the float32 weights and the int32 tokens; the output is the logits
        assert argument[arch_id] * 1e6 == pytest.approx(params[arch_id] * 4 + tokens_bytes)
        logits_bytes = CONFIG.batch * CONFIG.seq * SPACE.padded_vocab_size * 4
        assert output[arch_id] * 1e6 == pytest.approx(logits_bytes)
        assert total[arch_id] >= argument[arch_id] + output[arch_id]


def test_energy_is_missing_with_a_reason_or_measured(profiled):
    table, _, _ = profiled
    energy = table[table["metric"] == "energy"]
    sensor = EnergySensor(jax.devices()[0])
    assert (energy["unit"] == "J").all()
    if sensor.available:
        assert (energy["value"] >= 0).all() and (energy["note"] == sensor.source).all()
    else:
        assert energy["value"].isna().all()
        assert (energy["note"] == sensor.reason).all() and sensor.reason
        if jax.devices()[0].platform == "cpu":
            assert sensor.reason.startswith(("no energy sensor on cpu", "RAPL not readable"))


def test_rapl_counters_are_summed_over_packages_across_wraparound(tmp_path):
    cpu = jax.devices("cpu")[0]
    for name, start in (("intel-rapl:0", 999_990), ("intel-rapl:1", 100), ("intel-rapl:0:0", 7)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "max_energy_range_uj").write_text("1000000\n")
        (tmp_path / name / "energy_uj").write_text(f"{start}\n")
    sensor = EnergySensor(cpu, powercap_root=tmp_path)
    assert sensor.available and sensor.read() == 0.0
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("5\n")  # wrapped: +16 uJ
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("2100\n")  # +2000 uJ
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("9000\n")  # a sub-zone: ignored
    assert sensor.read() == pytest.approx(2016e-6)
    (tmp_path / "intel-rapl:1" / "energy_uj").unlink()
    unreadable = EnergySensor(cpu, powercap_root=tmp_path)
    assert not unreadable.available and unreadable.reason.startswith("RAPL not readable")
    missing = EnergySensor(cpu, powercap_root=tmp_path / "absent")
    assert missing.reason.startswith("no energy sensor on cpu") and missing.read() is None


def test_metadata_on_every_row(profiled):
    table, out, _ = profiled
    expected = {"platform": jax.devices()[0].platform, "batch": 2, "seq": 16,
                "dtype": "float32", "weights": "random init (seed 0)", "scale": "tiny",
                "jax_version": jax.__version__, "reps": 3, "warmup": 1,
                "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
    for column, value in expected.items():
        assert (table[column] == value).all(), column
    for column in ("device", "device_kind", "host_cpu", "profiled_at", "hwgpt_jax_version"):
        assert table[column].notna().all() and (table[column].astype(str) != "").all()
    meta = read_table_metadata(out)
    assert meta["config"] == {"batch": 2, "seq": 16, "reps": 3, "warmup": 1,
                              "dtype": "float32", "seed": 0}


def test_compiled_forward_is_cached_by_shape():
    profiler = Profiler(SPACE, ProfileConfig(batch=1, seq=8, reps=1, warmup=0))
    arch = SPACE.smallest()
    first, second = profiler.measure(arch), profiler.measure(arch)
    assert profiler.compiles == 1
    assert by_metric(second, "compile_time")["value"].iloc[0] == 0.0
    assert by_metric(first, "compile_time")["value"].iloc[0] > 0.0


def test_parts_of_another_configuration_are_refused(tmp_path):
    out = tmp_path / "p.parquet"
    parts_dir(out).mkdir()
    (parts_dir(out) / "config.json").write_text(json.dumps({"scale": "tiny", "config": {}}))
    with pytest.raises(ValueError, match="holds a run with other settings"):
        profile_archs(SPACE.smallest()[None], SPACE, CONFIG, out)


PROFILE_ARGS = ["profile", "--scale", "tiny", "--seq", "16", "--batch", "1", "--reps", "2",
                "--warmup", "0"]


def test_kill_and_restart_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "killed.parquet"
    args = PROFILE_ARGS + ["-n", "3", "--seed", "5", "--out", str(out)]
    command = [sys.executable, "-m", "hwgpt_jax.cli", *args]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:  # a file, not a pipe: a full pipe would block the child
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    parts = parts_dir(out)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and list(parts.glob("*.parquet")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    done = [pd.read_parquet(p) for p in parts.glob("*.parquet")]
    assert 1 <= len(done) < 3 and not out.exists()
    assert main(args) == 0  # restart in-process
    table = pd.read_parquet(out)
    ids = SPACE.arch_ids(SPACE.sample_unique(jax.random.key(5), 3))
    latency = table[table["metric"] == "latency"]
    assert sorted(latency["arch_id"].unique()) == sorted(ids)
    assert latency.groupby("arch_id").size().to_dict() == dict.fromkeys(ids, 2)
    assert not latency.duplicated(["arch_id", "repeat"]).any()
    assert not table.duplicated(["arch_id", "metric", "repeat"]).any()
    assert not parts.exists()
    for part in done:  # archs measured before the kill were kept, not measured again
        kept = table[table["arch_id"] == part["arch_id"].iloc[0]].reset_index(drop=True)
        pd.testing.assert_frame_equal(kept, part)


def test_cli_profiles_an_arch_file(tmp_path, capsys):
    archs_path = tmp_path / "archs.csv"
    assert main(["space", "sample", "--scale", "tiny", "-n", "2", "--seed", "1",
                 "--format", "csv"]) == 0
    archs_path.write_text(capsys.readouterr().out)
    out = tmp_path / "cli.parquet"
    assert main(PROFILE_ARGS + ["--archs", str(archs_path), "--out", str(out)]) == 0
    expected = read_arch_file(archs_path, SPACE)[1]
    table = pd.read_parquet(out)
    assert sorted(table["arch_id"].unique()) == sorted(set(SPACE.arch_ids(expected)))
    assert "latency median" in capsys.readouterr().out


def test_presets_load():
    for scale in ("tiny", "s", "m", "l"):
        config = ProfileConfig.preset(scale)
        assert config.seq <= get_space(scale).block_size and config.reps >= 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--reps", "0", "-n", "1"], "reps=0; expected an integer >= 1"),
    (["-n", "1", "--out", "/dev/null/x.parquet"], "/dev/null is not a folder"),
    (["-n", "1", "--seq", "999"], "seq=999 exceeds the tiny block size 256"),
])
def test_cli_bad_input(extra, message, tmp_path, capsys):
    args = PROFILE_ARGS + extra
    if "--out" not in extra:
        args += ["--out", str(tmp_path / "bad.parquet")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad.parquet").exists()


def test_cli_rejects_archs_of_another_scale(tmp_path, capsys):
    path = tmp_path / "s_archs.json"
    path.write_text(get_space("s").to_json(get_space("s").sample_unique(jax.random.key(0), 2)))
    assert main(PROFILE_ARGS + ["--archs", str(path), "--out", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err.strip()
    assert "scale 's', expected 'tiny'" in err and len(err.splitlines()) == 1


def test_reps_must_be_positive():
    with pytest.raises(ValueError, match="reps=0"):
        ProfileConfig(reps=0)
    with pytest.raises(ValueError, match="dtype='float64'"):
        ProfileConfig(dtype="float64")


def test_a_second_run_on_the_same_out_fails_at_once(tmp_path, capsys):
    out = tmp_path / "p.parquet"
    lock = tmp_path / "p.parquet.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert main(PROFILE_ARGS + ["-n", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"is being written by another run (pid {os.getpid()}" in err and str(lock) in err
    assert len(err.strip().splitlines()) == 1 and not parts_dir(out).exists()


def test_a_stale_lock_is_taken_over_and_released(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now (reuse within the test is vanishingly unlikely)
    out = tmp_path / "p.parquet"
    lock = tmp_path / "p.parquet.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert main(PROFILE_ARGS + ["-n", "1", "--out", str(out)]) == 0
    assert out.is_file() and not lock.exists()


def test_empty_arch_list_fails_before_any_work(tmp_path, capsys):
    archs = tmp_path / "a.json"
    archs.write_text('{"scale": "tiny", "archs": []}')
    out = tmp_path / "p.parquet"
    assert main(PROFILE_ARGS + ["--archs", str(archs), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "the arch list is empty" in captured.err and "profiling" not in captured.err
    assert not parts_dir(out).exists() and not out.exists()
    with pytest.raises(ValueError, match="no archs to profile"):
        profile_archs(SPACE.from_records([]), SPACE, ProfileConfig(), out)


def test_ctrl_c_keeps_finished_parts(tmp_path, capsys, monkeypatch):
    calls = []
    real = Profiler.measure

    def measure(self, arch):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, arch)

    monkeypatch.setattr(Profiler, "measure", measure)
    out = tmp_path / "p.parquet"
    assert main(PROFILE_ARGS + ["-n", "3", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("hwgpt profile: interrupted; finished archs are kept; rerun the same "
                       "command to continue")
    assert len(list(parts_dir(out).glob("*.parquet"))) == 1
    assert not (tmp_path / "p.parquet.lock").exists()


def test_stage_config_refuses_unknown_keys_and_needs_one_arch_source(tmp_path):
    from hwgpt_jax.base.config import config_from_mapping
    from hwgpt_jax.stages.profile import run

    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['rep'\]"):
        config_from_mapping(ProfileConfig, {"rep": 3})
    with pytest.raises(ValueError, match="not both or neither"):
        run(ProfileConfig(seq=8), tmp_path / "p.parquet")
