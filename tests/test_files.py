"""hwgpt_jax/base/files.py: checksummed tables and sidecars, the output policy, output locks."""

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from hwgpt_jax.base.files import (
    check_output,
    check_sidecar_seal,
    output_lock,
    read_parquet_checked,
    seal_sidecar,
    write_parquet_atomic,
)


def frame():
    return pd.DataFrame({"arch_id": ["a", "b"], "value": [1.5, np.nan],
                         "n_head": [[2, 4], [8]], "bias": [True, False]})


def test_table_round_trip_and_edits_are_detected(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet_atomic(frame(), path, {"scale": "tiny"})
    back = read_parquet_checked(path)
    assert back["arch_id"].tolist() == ["a", "b"] and back["value"].isna().tolist() == [0, 1]
    table = pq.read_table(path)  # another valid value, the metadata kept
    edited = table.set_column(1, "value", __import__("pyarrow").array([1.6, None]))
    pq.write_table(edited.replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(ValueError, match=f"{path} does not match its content_sha256"):
        read_parquet_checked(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{path} cannot be read as parquet"):
        read_parquet_checked(path)
    frame().to_parquet(tmp_path / "plain.parquet")  # tables of other tools carry no checksum
    assert len(read_parquet_checked(tmp_path / "plain.parquet")) == 2


def test_sidecar_seal(tmp_path):
    info = seal_sidecar({"format": "x", "transform": "log"})
    check_sidecar_seal("s.json", info)
    with pytest.raises(ValueError, match="s.json does not match its sidecar_sha256"):
        check_sidecar_seal("s.json", {**info, "transform": "identity"})
    with pytest.raises(ValueError, match="s.json has no sidecar_sha256"):
        check_sidecar_seal("s.json", {"format": "x"})


def test_check_output(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--out .*f.txt exists; pass --overwrite"):
        check_output(tmp_path / "f.txt")
    assert check_output(tmp_path / "f.txt", overwrite=True) == tmp_path / "f.txt"
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        check_output(tmp_path / "f.txt", folder=True, overwrite=True)
    with pytest.raises(ValueError, match="is a folder; expected a file path"):
        check_output(tmp_path, overwrite=True)
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", folder=True)  # nothing to lose
    check_output(tmp_path / "new" / "deeper" / "t.parquet")  # parents are created later
    with pytest.raises(ValueError, match="f.txt is not a folder"):
        check_output(tmp_path / "f.txt" / "t.parquet")
    assert not list(tmp_path.glob(".hwgpt-probe-*"))


def test_output_lock(tmp_path):
    out = tmp_path / "t.parquet"
    with output_lock(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(FileExistsError, match=f"another run \\(pid {os.getpid()}"), \
                output_lock(out):
            pass
    assert not lock.exists()
    lock.write_text("garbage")  # a crash while writing the lock: stale
    with output_lock(out):
        pass
    assert not lock.exists()
