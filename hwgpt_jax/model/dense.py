"""The dense model folder: one sub-network of a supernet as a standalone checkpoint.

With weight inheritance (one-shot NAS, Bender et al. 2018; AutoFormer, Chen et al., arXiv
2107.00651) each architecture is a slice of the supernet's weights. `export_dense` writes that
slice (`model.supernet.extract`) as a dense model that needs no supernet:

    <folder>/params/   orbax StandardCheckpointer checkpoint of the dense parameter pytree
    <folder>/model.json  sidecar: format, scale, arch (HW-GPT-Bench dict, record and id),
                         model constants, parameter count and dtype, sha256 of the arrays and
                         of every file, source checkpoint and step, metrics of the arch,
                         provenance (creation time, versions, host)

`load_dense` restores it (shapes come from the arch, so no supernet is built) and checks the
sidecar and the sha256s; `model.supernet.dense_forward(params, tokens)` runs it. Choosing
which archs to export is the export stage's (`hwgpt_jax.stages.export`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hwgpt_jax.base.files import (
    atomic_folder,
    check_folder_sha256s,
    check_sidecar_seal,
    folder_sha256s,
    read_sidecar,
    seal_sidecar,
)
from hwgpt_jax.base.metadata import provenance
from hwgpt_jax.model.supernet import Params, extract, init_params, param_count
from hwgpt_jax.space.arch import Arch, SearchSpace, get_space

FORMAT = "hwgpt-jax-dense-model"
FORMAT_VERSION = 2  # 2: sidecar_sha256 and a sha256 per file of params/
SIDECAR = "model.json"


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
        "params_sha256": sha256_tree(dense),
        "source": {"checkpoint": None if source_checkpoint is None
                   else str(Path(source_checkpoint).resolve()),
                   "step": None if source_step is None else int(source_step)},
        "metrics": jsonable(dict(metrics or {})),
        "metadata": jsonable(dict(metadata or {})),
        **provenance(),
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
    info = read_dense_sidecar(directory)
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
    if sha256_tree(params) != info["params_sha256"]:
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


def read_dense_sidecar(directory: Path) -> dict[str, Any]:
    """The checked sidecar of a dense model folder (format, fields, seal, file sha256s)."""
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


def sha256_tree(tree: Any) -> str:
    """sha256 over every leaf's path, shape, dtype and bytes, in tree order."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """Plain JSON values: NumPy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


__all__ = ["FORMAT", "FORMAT_VERSION", "SIDECAR", "dense_shapes", "export_dense", "jsonable",
           "load_dense", "read_dense_sidecar", "sha256_tree"]
