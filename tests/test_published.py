"""Tests of hwgpt_jax/surrogates/published.py on the published HW-GPT-Bench archives (skipped if
absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwgpt_jax.space.arch import get_space
from hwgpt_jax.surrogates.published import CPUS, DEVICES, GPUS, PUBLISHED_METRICS, load_published

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hwgpt-bench"


def archive(scale: str) -> Path:
    path = REFERENCE / f"hwgpt_{scale}_full.npz"
    if not path.is_file():
        pytest.skip(f"published HW-GPT-Bench data not found at {path} (reference data is not "
                    f"shipped with the project)")
    return path


def test_every_metric_of_the_s_archive_is_loaded_with_units_and_repeats():
    data = {d.key: d for d in load_published(archive("s"))}
    assert list(data) == list(PUBLISHED_METRICS)
    assert len([k for k in data if k.startswith("latency:")]) == 13
    assert len([k for k in data if k.startswith("energy:")]) == 13
    raw = np.load(archive("s"), allow_pickle=False)
    for device in DEVICES:
        np.testing.assert_array_equal(data[f"latency:{device}"].observations,
                                      raw[f"lat_ms__{device}"].astype(np.float64))
        assert data[f"latency:{device}"].unit == "ms"
    for gpu in GPUS:
        assert data[f"energy:{gpu}"].observations.shape == (10000, 50)
    for cpu in CPUS:  # only the mean over 10 runs is published for CPUs
        np.testing.assert_array_equal(data[f"energy:{cpu}"].observations[:, 0],
                                      raw[f"energy_Wh_mean__{cpu}"])
    assert data["memory:a100"].unit == "MB" and data["perplexity"].scale == "s"


def test_archs_follow_the_space_with_canonical_padding():
    ppl = load_published(archive("s"), metrics=["perplexity"])[0]
    raw = np.load(archive("s"), allow_pickle=False)
    space = get_space("s")
    assert np.all((ppl.archs.n_head == 0) == (raw["n_head"] == -1))
    assert np.array_equal(np.where(ppl.archs.n_head == 0, -1, ppl.archs.n_head), raw["n_head"])
    space.validate(ppl.archs)


def test_m_archive_has_missing_perplexity_rows_dropped_by_dropna():
    ppl = load_published(archive("m"), metrics=["perplexity"])[0]
    assert ppl.scale == "m" and len(ppl) == 10000
    assert len(ppl.dropna()) == 5245


def test_metric_selection_and_bad_inputs(tmp_path):
    keys = [d.key for d in load_published(archive("s"), metrics=["latency:a100", "energy"])]
    assert keys == ["latency:a100"] + [f"energy:{d}" for d in DEVICES]
    with pytest.raises(ValueError, match="unknown published metric 'speed'"):
        load_published(archive("s"), metrics=["speed"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_published(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="lacks the arch array"):
        load_published(tmp_path / "other.npz")
