"""The export stage: sub-networks chosen from a Pareto table exported as dense models.

HW-GPT-Bench (Sukthanker et al., arXiv 2405.10299) ends a hardware-aware search with a few
Pareto-optimal architectures. `export_pareto` exports K archs of a Pareto table (or an arch
file or `Arch` batch) of a trained run as dense model folders (`hwgpt_jax.model.dense`), into
`<out>/<arch id>/` plus `<out>/index.json`; `run(ExportConfig, out)` is what `hwgpt export`
calls.

Choosing K of a front (when K is smaller than the front): the table's rows are deduplicated
by arch id, reduced to the non-dominated rows in the objective columns (a table pooling
several runs holds several fronts), sorted by the first objective (ties by the next ones), and
the K rows at ranks round(linspace(0, F - 1, K)) are exported: both extremes of the front and
evenly spaced ranks between them. Without known objectives the table's order is used.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from hwgpt_jax.base.files import read_parquet_checked, read_table_metadata, write_json_atomic
from hwgpt_jax.base.metadata import provenance
from hwgpt_jax.model.checkpoints import load_trained_params
from hwgpt_jax.model.dense import FORMAT, FORMAT_VERSION, SIDECAR, export_dense
from hwgpt_jax.search.pareto import non_dominated_mask
from hwgpt_jax.space.arch import ARCH_FIELDS, Arch, SearchSpace, get_space
from hwgpt_jax.space.arch_files import parse_archs, read_arch_file

INDEX = "index.json"
# Table columns that describe where a row came from, not a metric of the arch.
_NOT_METRICS = {*ARCH_FIELDS, "arch_id", "scale", "algorithm", "seed", "evaluation", "step",
                "feasible"}


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Which archs of which run to export: `source` is a Pareto table (.parquet with an
    arch_id column) or an arch file; `limit` archs evenly along the front (None: all)."""

    checkpoint: str = ""  # the run folder of `hwgpt train`
    source: str = ""
    limit: int | None = None
    objectives: tuple[str, ...] | None = None  # default: the table's metadata
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.checkpoint or not self.source:
            raise ValueError(f"export: checkpoint={self.checkpoint!r}, source={self.source!r}; "
                             f"expected a run folder and a Pareto table or arch file")
        if self.limit is not None and (isinstance(self.limit, bool)
                                       or not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"export: limit={self.limit!r}; expected a positive integer")


def run(config: ExportConfig, out: str | Path,
        on_export: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Export the archs `config` chooses into the folder `out`; returns a summary (the folder,
    the exported model folders' names). `on_export(folder)` is called after each model."""
    folders = export_pareto(config.checkpoint, Path(config.source), out, limit=config.limit,
                            objectives=config.objectives, overwrite=config.overwrite,
                            on_export=on_export)
    return {"out": str(out), "models": [f.name for f in folders]}


def export_pareto(checkpoint_dir: str | Path,
                  source: pd.DataFrame | Arch | str | Path, out_dir: str | Path,
                  limit: int | None = None, *, objectives: Sequence[str] | None = None,
                  overwrite: bool = False,
                  on_export: Callable[[Path], None] | None = None) -> list[Path]:
    """Export archs chosen from `source` as dense models of the supernet in `checkpoint_dir`.

    Args:
      checkpoint_dir: a `hwgpt train` run folder (or its `checkpoints/` subfolder).
      source: a Pareto table (DataFrame or .parquet path, e.g. `hwgpt search`'s
        pareto.parquet; needs an `arch_id` column), an arch file (JSON/CSV of `hwgpt space
        sample`), or an `Arch` batch of the checkpoint's space.
      out_dir: each arch goes to `<out_dir>/<arch id with ':' as '_'>/`; `index.json` lists
        them.
      limit: export at most this many, chosen evenly along the front (module docstring);
        None exports all.
      objectives: the table's objective columns (default: the parquet's metadata, if any).
      on_export: called with each folder once written.

    Returns:
      The exported folders, in front order.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise ValueError(f"limit={limit!r}; expected a positive integer or None")
    params, meta = load_trained_params(checkpoint_dir)
    space = get_space(meta["scale"])
    archs, rows, objectives = _candidates(source, space, objectives)
    if len(archs) == 0:
        raise ValueError(f"no architectures to export in {_describe(source)}")
    chosen = evenly_spaced(len(archs), limit)
    out = Path(out_dir)
    folders = [out / _folder_name(space.arch_ids(archs[int(i)])[0]) for i in chosen]
    existing = [str(f) for f in folders if f.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass overwrite=True (CLI: --overwrite)")
    params = jax.device_get(params)  # slice on the host: no compile per arch
    written = []
    for index, folder in zip(chosen, folders, strict=True):
        row = rows[int(index)]
        metrics = {k: v for k, v in row.items() if k not in _NOT_METRICS}
        provenance = {k: row[k] for k in ("algorithm", "seed", "evaluation") if k in row}
        written.append(export_dense(
            params, archs[int(index)], space, folder, source_checkpoint=checkpoint_dir,
            source_step=int(meta["step"]), metrics=metrics,
            metadata={"found_by": provenance, "objectives": list(objectives or [])},
            overwrite=overwrite))
        if on_export is not None:
            on_export(folder)
    _write_index(out, written, checkpoint_dir, meta, source, objectives, len(archs), limit)
    return written


def evenly_spaced(n: int, limit: int | None) -> np.ndarray:
    """Indices of `limit` of n ranked items: round(linspace(0, n - 1, limit)), both ends
    included; all n when limit is None or >= n. Distinct, since the spacing is >= 1."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.round(np.linspace(0, n - 1, limit)).astype(int)


def _candidates(source: Any, space: SearchSpace, objectives: Sequence[str] | None
                ) -> tuple[Arch, list[dict[str, Any]], list[str]]:
    """(archs in front order, one metrics row per arch, objective columns used)."""
    if isinstance(source, Arch):
        archs = space.validate(source)
        archs = _unique(archs if archs.batch_shape else archs[None], space)
        return archs, [{} for _ in range(len(archs))], []
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        if path.suffix != ".parquet":
            archs = _unique(read_arch_file(path, space)[1], space)
            return archs, [{} for _ in range(len(archs))], []
        if objectives is None:
            objectives = read_table_metadata(path).get("objectives")
        source = read_parquet_checked(path)
    if not isinstance(source, pd.DataFrame):
        raise ValueError(f"source is a {type(source).__name__}; expected a DataFrame, a "
                         f".parquet or arch file path, or an Arch")
    if "arch_id" not in source.columns:
        raise ValueError(f"the table has no arch_id column (columns: {list(source.columns)})")
    table = source.drop_duplicates("arch_id").reset_index(drop=True)
    objectives = list(objectives or [])
    missing = [o for o in objectives if o not in table.columns]
    if missing:
        raise ValueError(f"objective column(s) {missing} are not in the table (columns: "
                         f"{list(table.columns)})")
    if objectives and len(table):
        values = table[objectives].to_numpy(np.float64)
        table = table[np.asarray(non_dominated_mask(values))]
        table = table.sort_values(objectives, kind="stable").reset_index(drop=True)
    archs = parse_archs(table["arch_id"].astype(str).tolist(), space) if len(table) else (
        space.from_ids([]))
    return archs, table.to_dict("records"), objectives


def _unique(archs: Arch, space: SearchSpace) -> Arch:
    _, first = np.unique(np.asarray(space.arch_ids(archs)), return_index=True)
    return archs[np.sort(first)]


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, str | Path) else f"the given {type(source).__name__}"


def _folder_name(arch_id: str) -> str:
    # ':' is not allowed in Windows paths and reads as a URL scheme to some path libraries.
    return arch_id.replace(":", "_")


def _write_index(out: Path, folders: list[Path], checkpoint_dir: Any, meta: dict[str, Any],
                 source: Any, objectives: Sequence[str], candidates: int,
                 limit: int | None) -> None:
    models = []
    for folder in folders:
        info = json.loads((folder / SIDECAR).read_text())
        models.append({"folder": folder.name, "arch_id": info["arch_id"],
                       "param_count": info["param_count"], "metrics": info["metrics"]})
    index = {"format": f"{FORMAT}-index", "format_version": FORMAT_VERSION,
             "scale": meta["scale"], "checkpoint": str(Path(checkpoint_dir).resolve()),
             "checkpoint_step": int(meta["step"]), "source": _describe(source),
             "objectives": list(objectives), "candidates": candidates, "limit": limit,
             "rule": "non-dominated rows sorted by the first objective; ranks "
                     "round(linspace(0, F - 1, K))", "models": models,
             **provenance()}
    write_json_atomic(out / INDEX, index)


__all__ = ["INDEX", "ExportConfig", "evenly_spaced", "export_pareto", "run"]
