"""Shared fixtures: tiny configurations and the optional published HW-GPT-Bench data."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# One XLA compilation cache for the whole run (both xdist workers and the subprocesses the
# tests start): the tiny programs that several test files compile are compiled once.
# The controller (or the only process) sets it before any worker starts; workers inherit it.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="hwgpt-jax-tests-xla-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# The tests' programs are tiny and compiled once each, so LLVM's optimization of the generated
# code costs more than it saves: the suite compiles at XLA's backend optimization level 0 (about
# 40 % less compile time; same HLO passes, so the same numerics up to float rounding).
# `HWGPT_TEST_XLA_OPT=default` keeps XLA's default level. The flag reaches the subprocesses.
TEST_XLA_FLAG = "--xla_backend_optimization_level=0"
if os.environ.get("HWGPT_TEST_XLA_OPT", "0") != "default":
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in _flags:
        os.environ["XLA_FLAGS"] = f"{_flags} {TEST_XLA_FLAG}".strip()


def pytest_sessionfinish(session):
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hwgpt-bench"


@pytest.fixture(scope="session")
def published():
    """Loader of the published arrays of one scale; skips when the data is absent."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def load(scale: str) -> dict[str, np.ndarray]:
        path = REFERENCE_DIR / f"hwgpt_{scale}_full.npz"
        if not path.exists():
            pytest.skip(f"published HW-GPT-Bench data not found at {path}")
        if scale not in cache:
            with np.load(path, allow_pickle=False) as data:
                cache[scale] = {k: data[k] for k in data.files}
        return cache[scale]

    return load


@pytest.fixture(scope="session")
def published_path():
    """Path of the published npz of one scale; skips when the data is absent."""

    def path(scale: str) -> Path:
        file = REFERENCE_DIR / f"hwgpt_{scale}_full.npz"
        if not file.exists():
            pytest.skip(f"published HW-GPT-Bench data not found at {file}")
        return file

    return path


# `--dist loadfile` hands whole files to the workers in collection order; the longest files go
# first so that the workers finish together instead of one running a long file alone at the end.
LONGEST_FIRST = ("test_accelerator_check.py", "test_train.py", "test_pipeline.py",
                 "test_surrogates.py", "test_search_evosax.py", "test_bench.py", "test_model.py",
                 "test_search_bench.py", "test_install.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file
