"""The published HW-GPT-Bench benchmark shipped with the package: s, m and l, 13 devices.

Built by `surrogates/build_published.py` from the published measurements (Sukthanker et al.,
arXiv 2405.10299; automl/HW-GPT-Bench, Apache-2.0: `assets/published/LICENSE` and `NOTICE.md`).
One folder per scale under `hwgpt_jax/assets/published/`:

- `benchmark.json`: format, scale, encoding version, every surrogate's spec (with its fit
  report), the sha256 of each file of the folder and of the build's inputs;
- `surrogates.npz`: every surrogate's arrays, flattened (`s<i>/<path>`);
- `measured.npz`: the measured archs' genes and, per key, the median of the repeated
  observations of each arch (NaN where the arch was not measured), for `ground_truth=True`.

`MANIFEST.json` beside the folders records the sha256 of every file, the sidecars included.

Plain npz (no orbax) keeps the folder byte-deterministic and its cold load fast; every file
is checked against its sha256 before use, and arrays are read with `allow_pickle=False`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hwgpt_jax.base.files import atomic_folder, file_sha256
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.encoding import ENCODING_VERSION, ENCODINGS
from hwgpt_jax.surrogates.data import MetricData, split_key
from hwgpt_jax.surrogates.model import Surrogate, SurrogateSpec

PACKAGED_ROOT = Path(__file__).resolve().parents[1] / "assets" / "published"
FORMAT = "hwgpt-jax-published-benchmark"
FORMAT_VERSION = 1
SIDECAR = "benchmark.json"
MANIFEST = "MANIFEST.json"  # beside the scale folders: each file's sha256, the sidecar's too
SCALES = ("s", "m", "l")
FILES = ("surrogates.npz", "measured.npz")


def median_table(data: MetricData) -> np.ndarray:
    """(N,) per-arch median of the repeats; NaN where an arch has none."""
    obs = data.observations
    out = np.full(len(obs), np.nan)
    seen = ~np.isnan(obs).all(axis=1)
    out[seen] = np.nanmedian(obs[seen], axis=1)
    return out


def save_packaged(surrogates: Sequence[Surrogate], measured: Sequence[MetricData],
                  directory: Path, inputs: dict[str, str], overwrite: bool = False) -> Path:
    """Write one scale's packaged benchmark folder atomically.

    Args:
        surrogates: the fitted surrogates of one scale.
        measured: the measurements (all sharing one arch list) whose medians ship.
        directory: the output folder.
        inputs: file name -> sha256 of the build's inputs (recorded in the sidecar).
    """
    scale = surrogates[0].spec.scale
    space = get_space(scale)
    archs = measured[0].archs
    for data in measured:
        if not np.array_equal(space.genes(data.archs), space.genes(archs)):
            raise ValueError(f"measured table {data.key} has another arch list than "
                             f"{measured[0].key}; the packaged format shares one")
    arrays = {f"s{i}/{name}": np.asarray(leaf, np.float32)
              for i, s in enumerate(surrogates) for name, leaf in _flatten(s.state)}
    medians = {d.key: median_table(d).astype(np.float32) for d in measured}
    tables = {"genes": space.genes(archs).astype(np.int8)}
    tables |= {f"median/{key}": values for key, values in medians.items()}

    def write(tmp: Path) -> None:
        np.savez(tmp / "surrogates.npz", **arrays)
        np.savez(tmp / "measured.npz", **tables)
        sidecar = {"format": FORMAT, "format_version": FORMAT_VERSION, "scale": scale,
                   "encoding_version": ENCODING_VERSION, "inputs": inputs,
                   "surrogates": [s.spec.to_json() for s in surrogates],
                   "measured": [{"key": d.key, "unit": d.unit,
                                 "n_measured": int((~np.isnan(medians[d.key])).sum())}
                                for d in measured],
                   "sha256": {name: file_sha256(tmp / name) for name in FILES}}
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1, sort_keys=True) + "\n")

    return atomic_folder(directory, overwrite, write)


def load_packaged(scale: str, root: Path = PACKAGED_ROOT
                  ) -> tuple[list[Surrogate], list[MetricData]]:
    """The surrogates and the per-arch measured medians of one packaged scale."""
    if scale not in SCALES:
        raise ValueError(f"no published benchmark for scale {scale!r}; expected one of "
                         f"{list(SCALES)}")
    directory = Path(root) / scale
    sidecar = _read_checked(directory)
    space = get_space(scale)
    specs = [SurrogateSpec.from_json(s) for s in sidecar["surrogates"]]
    with np.load(directory / "surrogates.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    surrogates = []
    for i, spec in enumerate(specs):
        shapes = spec.state_shapes(ENCODINGS[spec.encoding][1](space))
        surrogates.append(Surrogate(spec, _unflatten(shapes, arrays, f"s{i}", directory)))
    with np.load(directory / "measured.npz", allow_pickle=False) as archive:
        archs = space.from_genes(archive["genes"].astype(np.int32)).to_numpy()
        medians = {entry["key"]: archive[f"median/{entry['key']}"]
                   for entry in sidecar["measured"]}
    tables = []
    for entry in sidecar["measured"]:
        metric, device = split_key(entry["key"])
        seen = np.flatnonzero(~np.isnan(medians[entry["key"]]))
        tables.append(MetricData(scale, metric, device, entry["unit"], archs[seen],
                                 medians[entry["key"]][seen, None].astype(np.float64),
                                 source=f"packaged:{scale}:median"))
    return surrogates, tables


def _read_checked(directory: Path) -> dict[str, Any]:
    path = directory / SIDECAR
    if not path.is_file():
        raise FileNotFoundError(f"the packaged published benchmark is missing {path}; "
                                f"reinstall hwgpt-jax")
    manifest = directory.parent / MANIFEST
    try:
        recorded = json.loads(manifest.read_text())[directory.name][SIDECAR]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        raise ValueError(f"{manifest} is missing or does not list {directory.name}/{SIDECAR}; "
                         f"reinstall hwgpt-jax") from None
    if file_sha256(path) != recorded:
        raise ValueError(f"{path} does not match the sha256 recorded in {manifest} (checksum "
                         f"mismatch: a field was edited or the file is damaged); reinstall "
                         f"hwgpt-jax")
    try:
        sidecar = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); reinstall hwgpt-jax") from None
    if (sidecar.get("format"), sidecar.get("format_version")) != (FORMAT, FORMAT_VERSION):
        raise ValueError(f"{path} has format {sidecar.get('format')!r} version "
                         f"{sidecar.get('format_version')!r}, expected {FORMAT!r} version "
                         f"{FORMAT_VERSION}")
    if sidecar.get("encoding_version") != ENCODING_VERSION:
        raise ValueError(f"{path} was built with encoding version "
                         f"{sidecar.get('encoding_version')}, this version uses "
                         f"{ENCODING_VERSION}: rebuild it (surrogates/build_published.py)")
    for name in FILES:
        file = directory / name
        if not file.is_file() or file_sha256(file) != sidecar["sha256"].get(name):
            raise ValueError(f"{file} is missing or does not match the sha256 recorded in "
                             f"{path} (checksum mismatch); reinstall hwgpt-jax")
    return sidecar


def _flatten(tree: Any) -> list[tuple[str, Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path, simple=True, separator="/"), leaf)
            for path, leaf in leaves]


def _unflatten(shapes: Any, arrays: dict[str, np.ndarray], prefix: str, where: Path) -> Any:
    def leaf(path: Any, shape: tuple) -> jax.Array:
        name = f"{prefix}/{jax.tree_util.keystr(path, simple=True, separator='/')}"
        if name not in arrays or arrays[name].shape != tuple(shape):
            raise ValueError(f"{where / 'surrogates.npz'}: array {name} is missing or not of "
                             f"shape {tuple(shape)}")
        return arrays[name]  # NumPy: jit takes it as is, and no device transfer at load

    return jax.tree_util.tree_map_with_path(leaf, shapes,
                                            is_leaf=lambda x: isinstance(x, tuple))
