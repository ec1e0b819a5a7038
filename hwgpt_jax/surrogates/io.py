"""Saving and loading a set of surrogates (and measured tables) as one folder.

Layout: `benchmark.json` (sidecar: format, scale, encoding version, package versions, every
surrogate's spec with metric, device, unit, encoding and data hash, a sha256 of all arrays,
a sha256 per file of `state/` and `tables.npz`, and `sidecar_sha256` over all of its own
fields),
`state/` (an orbax StandardCheckpointer checkpoint of every surrogate's arrays) and, if tables
are kept, `tables.npz` (genes and observations per key; read with allow_pickle=False).
The folder is written under a temporary sibling name and renamed into place, so a reader
never sees a half-written benchmark. Loading checks every field and hash and raises a
`ValueError` that names the folder and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from hwgpt_jax.base.files import (
    atomic_folder,
    check_folder_sha256s,
    check_sidecar_seal,
    folder_sha256s,
    read_sidecar,
    seal_sidecar,
)
from hwgpt_jax.base.metadata import provenance
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.encoding import ENCODING_VERSION, ENCODINGS
from hwgpt_jax.surrogates.data import MetricData
from hwgpt_jax.surrogates.model import Surrogate, SurrogateSpec

FORMAT = "hwgpt-jax-benchmark"
FORMAT_VERSION = 2  # 2: the sidecar carries its own sha256 (files.seal_sidecar)
SIDECAR = "benchmark.json"


def save_benchmark(surrogates: Iterable[Surrogate], tables: Sequence[MetricData],
                   directory: Path, overwrite: bool = False) -> Path:
    """Write surrogates (+ tables) to `directory` atomically; returns the folder."""
    surrogates = list(surrogates)
    states = {f"surrogate_{i:03d}": s.state for i, s in enumerate(surrogates)}

    def write(tmp: Path) -> None:
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save((tmp / "state").absolute(), states)
            checkpointer.wait_until_finished()
        if tables:
            arrays = {}
            for i, table in enumerate(tables):
                arrays[f"genes_{i}"] = get_space(table.scale).genes(table.archs).astype(np.int8)
                arrays[f"observations_{i}"] = table.observations
            np.savez(tmp / "tables.npz", **arrays)
        # every file written so far (state/, tables.npz), checked before a load opens them
        files = folder_sha256s(tmp)
        sidecar = seal_sidecar({**_sidecar(surrogates, tables, states), "files_sha256": files})
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1) + "\n")

    return atomic_folder(Path(directory), overwrite, write)


def load_benchmark(directory: Path) -> tuple[list[Surrogate], list[MetricData]]:
    """Read and verify a folder written by `save_benchmark`."""
    directory = Path(directory)
    sidecar = _read_sidecar(directory)
    space = get_space(sidecar["scale"])
    specs = [SurrogateSpec.from_json(s) for s in sidecar["surrogates"]]
    for spec in specs:
        if spec.encoding not in ENCODINGS:
            raise ValueError(f"{directory}: surrogate {spec.key} uses encoding "
                             f"{spec.encoding!r}; this version has {list(ENCODINGS)}")
        if (spec.scale, spec.encoding_version) != (space.scale, ENCODING_VERSION):
            raise ValueError(f"{directory}: surrogate {spec.key} has scale {spec.scale!r} / "
                             f"encoding version {spec.encoding_version}, expected "
                             f"{space.scale!r} / {ENCODING_VERSION}")
    check_folder_sha256s(directory, sidecar["files_sha256"])  # before orbax opens them
    target = {f"surrogate_{i:03d}": _abstract_state(
        spec.state_shapes(ENCODINGS[spec.encoding][1](space))) for i, spec in enumerate(specs)}
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            states = checkpointer.restore((directory / "state").absolute(), target)
    except Exception as err:  # orbax raises many types; the user needs one clear message
        raise ValueError(f"{directory}: cannot restore the surrogate checkpoint in state/ "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    if _sha256_tree(states) != sidecar["state_sha256"]:
        raise ValueError(f"{directory}: the arrays in state/ do not match the sha256 recorded "
                         f"in {SIDECAR}; the folder is corrupted or was edited")
    surrogates = [Surrogate(spec, jax.tree_util.tree_map(jax.numpy.asarray, states[name]))
                  for spec, name in zip(specs, target, strict=True)]
    return surrogates, _load_tables(directory, sidecar)


def _read_sidecar(directory: Path) -> dict[str, Any]:
    path = directory / SIDECAR
    if not directory.is_dir():
        raise FileNotFoundError(f"surrogate folder {str(directory)!r} does not exist")
    sidecar = read_sidecar(path, FORMAT, FORMAT_VERSION, "a saved Benchmark folder")
    if sidecar.get("encoding_version") != ENCODING_VERSION:
        raise ValueError(f"{path} was written with encoding version "
                         f"{sidecar.get('encoding_version')}, this version uses "
                         f"{ENCODING_VERSION}: refit the surrogates")
    missing = [k for k in ("scale", "surrogates", "state_sha256", "tables", "files_sha256")
               if k not in sidecar]
    if missing:
        raise ValueError(f"{path} lacks field(s) {missing}")
    check_sidecar_seal(path, sidecar)
    return sidecar


def _load_tables(directory: Path, sidecar: dict[str, Any]) -> list[MetricData]:
    entries = sidecar["tables"]
    if not entries:
        return []
    path = directory / "tables.npz"
    if not path.is_file():
        raise ValueError(f"{directory}: {SIDECAR} lists {len(entries)} tables but tables.npz "
                         f"is missing")
    space = get_space(sidecar["scale"])
    tables = []
    try:
        with np.load(path, allow_pickle=False) as archive:
            for i, entry in enumerate(entries):
                metric, _, device = entry["key"].partition(":")
                archs = space.from_genes(archive[f"genes_{i}"].astype(np.int32)).to_numpy()
                tables.append(MetricData(space.scale, metric, device, entry["unit"], archs,
                                         archive[f"observations_{i}"], source=str(path)))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} cannot be read ({err}); the folder is corrupted") from err
    for table, entry in zip(tables, entries, strict=True):
        if table.data_hash() != entry["data_hash"]:
            raise ValueError(f"{path}: table {entry['key']} does not match its recorded data "
                             f"hash; the folder is corrupted")
    return tables


def _abstract_state(shapes: Any) -> Any:
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s, np.float32), shapes,
                                  is_leaf=lambda x: isinstance(x, tuple))


def _sha256_tree(tree: Any) -> str:
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        array = np.ascontiguousarray(np.asarray(leaf, np.float32))
        digest.update(str(array.shape).encode() + array.tobytes())
    return digest.hexdigest()


def _sidecar(surrogates: Sequence[Surrogate], tables: Sequence[MetricData],
             states: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "scale": surrogates[0].spec.scale,
        "encoding_version": ENCODING_VERSION,
        **provenance(),
        "surrogates": [s.spec.to_json() for s in surrogates],
        "state_sha256": _sha256_tree(states),
        "tables": [{"key": t.key, "unit": t.unit, "n_archs": len(t),
                    "data_hash": t.data_hash()} for t in tables],
    }

