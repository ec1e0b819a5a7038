"""Arch files: the one reader every command uses for `--archs`.

Accepted: JSON, either `{"scale": ..., "archs": [...]}` (`hwgpt space sample` output) or a
bare list; the list holds arch records (`SearchSpace.to_records`), HW-GPT-Bench config dicts
(`sample_embed_dim`, ...) or arch ids (`tiny:e64-l2-...`). Tables (.csv, .parquet) and text
files (.txt, one id per line) give arch ids in an `arch_id` column / per line. Records are
checked strictly (`SearchSpace.check_record`); an empty list is an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from hwgpt_jax.base.files import read_parquet_checked
from hwgpt_jax.space.arch import ARCH_FIELDS, SPACES, Arch, SearchSpace, get_space

TABLE_SUFFIXES = (".csv", ".parquet")


def _check_list(items: Any) -> None:
    """The scale-independent checks: a non-empty list of records or ids."""
    if not isinstance(items, list):
        raise ValueError(f"expected a list of arch records, got {type(items).__name__}")
    if not items:
        raise ValueError("the arch list is empty; expected at least one arch")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping | str):
            raise ValueError(f"arch record {i} is {item!r:.40}, expected an object with fields "
                             f"{list(ARCH_FIELDS)}")


def parse_archs(items: Any, space: SearchSpace) -> Arch:
    """Archs of `space` from a decoded JSON list (records, HW-GPT-Bench dicts or ids)."""
    _check_list(items)
    if all(isinstance(item, str) for item in items):
        return space.from_ids(items)
    first = items[0]
    if isinstance(first, Mapping) and any(str(k).startswith("sample_") for k in first):
        return space.from_hwgpt(items)
    return space.from_records(items)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number; expected integers")


def _load(path: Path) -> tuple[str | None, Any]:
    """(scale named by the file or None, list of records / ids) of an arch file."""
    if not path.is_file():
        raise FileNotFoundError(f"arch file {path} does not exist")
    if path.suffix in TABLE_SUFFIXES:
        table = read_parquet_checked(path) if path.suffix == ".parquet" else pd.read_csv(path)
        if "arch_id" not in table.columns:
            raise ValueError(f"arch file {path} has no arch_id column")
        ids = table["arch_id"].astype(str).tolist()
        return (ids[0].partition(":")[0] if ids else None), ids
    text = path.read_text()
    if path.suffix != ".json" and not text.lstrip().startswith(("{", "[")):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines and lines[0] == "arch_id":  # a one-column CSV without the suffix
            lines = lines[1:]
        return (lines[0].partition(":")[0] if lines else None), lines
    try:  # NaN / Infinity literals are refused; 1e400 decodes to inf and fails as a float
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"arch file {path} is not valid JSON: {err}") from None
    except ValueError as err:
        raise ValueError(f"arch file {path}: {err}") from None
    if isinstance(data, dict):
        if "archs" not in data:
            raise ValueError(f"arch file {path} has no 'archs' list")
        scale = data.get("scale")
        return (str(scale) if scale is not None else None), data["archs"]
    if isinstance(data, list) and data and all(isinstance(x, str) for x in data):
        return data[0].partition(":")[0], data
    return None, data


def _space_of_embed_dim(record: Any) -> SearchSpace | None:
    """The one space whose embed dims hold a record's integer embed dim, else None (256 is
    both tiny's and m's)."""
    if not isinstance(record, Mapping):
        return None
    value = record.get("embed_dim", record.get("sample_embed_dim"))
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    holding = [s for s in SPACES.values() if value in s.embed_dims]
    return holding[0] if len(holding) == 1 else None


def read_arch_file(path: str | Path, space: SearchSpace | None = None) -> tuple[str, Arch]:
    """(scale, archs) of an arch file. With `space`, the file's archs must be of its scale;
    without, the scale the file names is used, else every space is tried in turn."""
    path = Path(path)
    scale, items = _load(path)
    if space is not None and scale is not None and scale != space.scale:
        raise ValueError(f"arch file {path} holds archs of scale {scale!r}, expected "
                         f"{space.scale!r}")
    if space is None and scale is not None:
        space = get_space(scale) if scale in SPACES else None
        if space is None:
            raise ValueError(f"arch file {path} names scale {scale!r}; expected one of "
                             f"{list(SPACES)}")
    try:
        _check_list(items)
        guess = space or _space_of_embed_dim(items[0])
        if guess is not None:
            return guess.scale, parse_archs(items, guess)
    except ValueError as err:
        raise ValueError(f"arch file {path}: {err}") from None
    errors = []
    for candidate in SPACES.values():
        try:
            return candidate.scale, parse_archs(items, candidate)
        except ValueError as err:
            errors.append(f"{candidate.scale}: {err}")
    raise ValueError(f"archs in {path} fit no search space ({'; '.join(errors)})")
