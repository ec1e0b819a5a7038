"""Export sub-networks of a trained supernet as standalone dense checkpoints.

HW-GPT-Bench (Sukthanker et al., arXiv 2405.10299) ends a hardware-aware search with a few
Pareto-optimal architectures; with weight inheritance (one-shot NAS, Bender et al. 2018;
AutoFormer, Chen et al., arXiv 2107.00651) each of them is a slice of the supernet's weights.
`export_dense` writes that slice (`model.extract`) as a dense model that needs no supernet:

    <folder>/params/   orbax StandardCheckpointer checkpoint of the dense parameter pytree
    <folder>/model.json  sidecar: format, scale, arch (HW-GPT-Bench dict, record and id),
                         model constants, parameter count and dtype, sha256 of the arrays,
                         source checkpoint and step, metrics of the arch, versions

`load_dense` restores it (shapes come from the arch, so no supernet is built) and checks the
sidecar and the sha256; `model.dense_forward(params, tokens)` runs it. `export_pareto` exports
K archs of a Pareto table (or an arch list) into `<out>/<arch id>/` plus `<out>/index.json`.

Choosing K of a front (when K is smaller than the front): the table's rows are deduplicated
by arch id, reduced to the non-dominated rows in the objective columns (a table pooling
several runs holds several fronts), sorted by the first objective (ties by the next ones), and
the K rows at ranks round(linspace(0, F - 1, K)) are exported: both extremes of the front and
evenly spaced ranks between them. Without known objectives the table's order is used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from hwgpt_jax.base.files import (
    atomic_folder,
    check_folder_sha256s,
    check_sidecar_seal,
    folder_sha256s,
    read_sidecar,
    seal_sidecar,
    write_json_atomic,
)
from hwgpt_jax.model.supernet import Params, extract, init_params, param_count
from hwgpt_jax.space.arch import ARCH_FIELDS, Arch, SearchSpace, get_space

FORMAT = "hwgpt-jax-dense-model"
FORMAT_VERSION = 2  # 2: sidecar_sha256 and a sha256 per file of params/
SIDECAR = "model.json"
INDEX = "index.json"
# Table columns that describe where a row came from, not a metric of the arch.
_NOT_METRICS = {*ARCH_FIELDS, "arch_id", "scale", "algorithm", "seed", "evaluation", "step",
                "feasible"}


# ---------------------------------------------------------------------------- one model
def export_dense(params: Params, arch: Arch, space: SearchSpace, out_dir: str | Path, *,
                 source_checkpoint: str | Path | None = None, source_step: int | None = None,
                 metrics: Mapping[str, Any] | None = None,
                 metadata: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write the dense sub-network `arch` of supernet `params` to the folder `out_dir`.

    The folder is written under a temporary sibling name and renamed into place, so a reader
    never sees a half-written export.

    Args:
      params: supernet parameters of `space` (NumPy arrays slice fastest).
      arch: one architecture (batch shape ()).
      source_checkpoint, source_step: where the weights come from (stored in the sidecar).
      metrics: the arch's metrics (e.g. its row of a Pareto table), stored as given.
      metadata: anything else JSON-serializable to keep in the sidecar (under "metadata").
      overwrite: replace an existing folder (otherwise FileExistsError).

    Returns:
      The folder.
    """
    arch = space.validate(arch)
    if arch.batch_shape:
        raise ValueError(f"export_dense takes one arch (batch shape ()), got batch shape "
                         f"{arch.batch_shape}")
    dense = jax.tree.map(np.asarray, extract(params, arch, space))
    sidecar = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "scale": space.scale,
        "arch_id": space.arch_ids(arch)[0], "arch": space.to_hwgpt(arch)[0],
        "arch_record": space.to_records(arch)[0],
        "model": {"head_size": space.head_size, "block_size": space.block_size,
                  "vocab_size": space.vocab_size, "padded_vocab_size": space.padded_vocab_size,
                  "forward": "hwgpt_jax.model.supernet.dense_forward(params, tokens)"},
        "param_count": param_count(dense),
        "dtype": str(jax.tree.leaves(dense)[0].dtype),
        "params_sha256": _sha256_tree(dense),
        "source": {"checkpoint": None if source_checkpoint is None
                   else str(Path(source_checkpoint).resolve()),
                   "step": None if source_step is None else int(source_step)},
        "metrics": _jsonable(dict(metrics or {})),
        "metadata": _jsonable(dict(metadata or {})),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    json.dumps(sidecar, allow_nan=False)  # fail before writing anything

    def write(tmp: Path) -> None:
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save((tmp / "params").absolute(), dense)
            checkpointer.wait_until_finished()
        sealed = seal_sidecar({**sidecar, "files_sha256": folder_sha256s(tmp)})
        (tmp / SIDECAR).write_text(json.dumps(sealed, indent=1, allow_nan=False) + "\n")

    return atomic_folder(Path(out_dir), overwrite, write)


def load_dense(directory: str | Path) -> tuple[Params, dict[str, Any]]:
    """Restore a folder written by `export_dense`: (dense params, sidecar dict).

    The params are jax arrays on the default device, in `model.extract`'s layout, ready for
    `model.dense_forward(params, tokens)`.

    Raises FileNotFoundError for a missing folder and ValueError naming the folder and the
    problem for anything malformed: no or corrupt sidecar, unknown format, an arch that does
    not fit its scale, unreadable arrays, arrays whose sha256 or count differ from the
    sidecar's.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory)
    info = _read_sidecar(directory)
    space = get_space(info["scale"])
    try:
        arch = space.from_hwgpt([info["arch"]])[0]
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{directory / SIDECAR}: its arch does not fit the {space.scale} "
                         f"space ({err})") from None
    if space.arch_ids(arch)[0] != info["arch_id"]:
        raise ValueError(f"{directory / SIDECAR}: arch_id {info['arch_id']!r} does not match "
                         f"its arch {space.arch_ids(arch)[0]!r}")
    target = dense_shapes(arch, space, np.dtype(info["dtype"]))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            params = checkpointer.restore((directory / "params").absolute(), target)
    except Exception as err:  # orbax raises many types; the user needs one clear message
        first = (str(err).splitlines() or [""])[0][:200]
        raise ValueError(f"{directory}: cannot restore the dense parameters in params/ "
                         f"({type(err).__name__}: {first})") from err
    if _sha256_tree(params) != info["params_sha256"]:
        raise ValueError(f"{directory}: the arrays in params/ do not match the sha256 in "
                         f"{SIDECAR}; the folder is corrupted or was edited")
    if param_count(params) != info["param_count"]:
        raise ValueError(f"{directory}: params/ holds {param_count(params)} parameters, "
                         f"{SIDECAR} says {info['param_count']}")
    return jax.tree.map(jax.numpy.asarray, params), info


def dense_shapes(arch: Arch, space: SearchSpace, dtype: Any = np.float32) -> Any:
    """The dense parameter pytree of `arch` as `jax.ShapeDtypeStruct`s (nothing computed)."""
    supernet = jax.eval_shape(lambda key: init_params(key, space), jax.random.key(0))
    shapes = jax.eval_shape(lambda p: extract(p, arch, space), supernet)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, dtype), shapes)


# ---------------------------------------------------------------------------- many models
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
    from hwgpt_jax.model.checkpoints import load_trained_params

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
            from hwgpt_jax.space.arch_files import read_arch_file

            archs = _unique(read_arch_file(path, space)[1], space)
            return archs, [{} for _ in range(len(archs))], []
        from hwgpt_jax.base.files import read_parquet_checked, read_table_metadata

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
        from hwgpt_jax.search.pareto import non_dominated_mask

        values = table[objectives].to_numpy(np.float64)
        table = table[np.asarray(non_dominated_mask(values))]
        table = table.sort_values(objectives, kind="stable").reset_index(drop=True)
    archs = space.from_ids(table["arch_id"].astype(str).tolist())
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
             "versions": _versions()}
    write_json_atomic(out / INDEX, index)


# ---------------------------------------------------------------------------- helpers
def _read_sidecar(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise FileNotFoundError(f"exported model folder {str(directory)!r} does not exist")
    path = directory / SIDECAR
    info = read_sidecar(path, FORMAT, FORMAT_VERSION,
                        "a folder written by export_dense / hwgpt export")
    missing = [k for k in ("scale", "arch", "arch_id", "dtype", "param_count",
                           "params_sha256", "files_sha256") if k not in info]
    if missing:
        raise ValueError(f"{path} lacks field(s) {missing}")
    check_sidecar_seal(path, info)
    check_folder_sha256s(directory, info["files_sha256"])  # before orbax opens them
    get_space(info["scale"])  # a clear error for an unknown scale
    return info


def _sha256_tree(tree: Any) -> str:
    """sha256 over every leaf's path, shape, dtype and bytes, in tree order."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NumPy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _versions() -> dict[str, str]:
    out = {}
    for package in ("hwgpt-jax", "jax", "jaxlib", "orbax-checkpoint", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


__all__ = ["dense_shapes", "evenly_spaced", "export_dense", "export_pareto", "load_dense"]
