"""Training checkpoints that prove their integrity and the run they belong to.

Each checkpoint step (orbax, items `state`, `data`, `meta`) records in its meta:
- `sha256`: a digest of every array of the state (path, dtype, shape, bytes), the data
  iterator's state and the meta itself (without this field). Readers recompute it after
  restoring, so flipped bytes, an edited meta field or a mixed-up item fail with a one-line
  error naming the checkpoint folder instead of giving NaN tables;
- `params_sha256`: the same digest over the parameters and the meta only (without both
  digests), so evaluation can restore and verify the parameters alone, without the optimizer
  state or an optimizer to give its shapes;
- `data_fingerprint`: what identifies the token stream (corpus description and content hash,
  tokenizer hash, split seed and fraction) and the sha256 of the token shards.
`check_resume` compares a new configuration with the recorded one: only `RESUMABLE` fields
(the length of the run and its logging cadence) may differ.

The `state` item holds the supernet's `nnx.state` as a plain dict (`model.Supernet.params`)
and the optimizer state; `format_version` in the meta names that layout, and a checkpoint of
another format is refused with a one-line error. `load_trained_params` is what evaluation,
export and search read a trained supernet with: a partial orbax restore of the `params`
subtree. Checkpoints saved before `params_sha256` existed are restored whole (their digest
covers the optimizer state, whose shapes come from rebuilding the recorded optimizer).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from hwgpt_jax.model.supernet import Params, Supernet
from hwgpt_jax.space.arch import get_space

# Fields a resumed run may change: they do not alter the training trajectory.
# The layout of the `state` item: 2 = `{"params": Supernet nnx.state as a dict, "opt_state"}`.
# Checkpoints without the field were written before the NNX supernet (format 1).
FORMAT_VERSION = 2

RESUMABLE = ("train.steps", "train.log_every", "train.checkpoint_every",
             "train.keep_checkpoints", "train.eval_every")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or fails its checksum (one-line message)."""


def state_digest(state: Any, data_state: Any, meta: dict[str, Any]) -> str:
    """sha256 of the state arrays, the data iterator state and meta (less `sha256`)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    rest = {"data": data_state, "meta": {k: v for k, v in meta.items() if k != "sha256"}}
    digest.update(json.dumps(rest, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def params_digest(params: Params, meta: dict[str, Any]) -> str:
    """sha256 of the parameter arrays and meta (less `sha256` and `params_sha256`)."""
    rest = {k: v for k, v in meta.items() if k != "params_sha256"}
    return state_digest({"params": params}, None, rest)


def seal_meta(tree: dict[str, Any], data_state: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` as it reads back from JSON, with `params_sha256` and `sha256` added: the
    digests of the state `tree` ({"params", "opt_state"}) that readers verify."""
    meta = json.loads(json.dumps(meta))  # tuples become lists, as on reading
    meta["params_sha256"] = params_digest(tree["params"], meta)
    meta["sha256"] = state_digest(tree, data_state, meta)
    return meta


def shards_sha256(shards: Any) -> str:
    """sha256 of the token shard files of a `data.CorpusShards` (train then val)."""
    digest = hashlib.sha256()
    for split in ("train", "val"):
        with open(shards.path(split), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def restore_meta(manager: ocp.CheckpointManager, folder: Path, step: int) -> dict[str, Any]:
    """The meta item of checkpoint `step`, or a CheckpointError naming its file."""
    path = folder / str(step) / "meta"
    try:
        meta = manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
    except Exception as err:  # orbax raises many types; the user needs one clear message
        raise CheckpointError(f"checkpoint meta {path} cannot be read "
                              f"({_first_line(err)}); the checkpoint is damaged") from None
    missing = [k for k in ("scale", "step", "config", "sha256") if not isinstance(meta, dict)
               or k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint meta {path} lacks {missing}; it is damaged or was "
                              f"written by an older version without checksums")
    version = meta.get("format_version", 1)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {folder / str(step)} has format version {version}; "
                              f"this version of hwgpt-jax reads format {FORMAT_VERSION} (NNX "
                              f"supernet state): retrain, or evaluate it with the version that "
                              f"wrote it")
    return meta


def restore_verified(manager: ocp.CheckpointManager, folder: Path, step: int,
                     abstract_state: Any, meta: dict[str, Any]) -> tuple[Any, Any]:
    """(state, data iterator state) of checkpoint `step`, checked against `meta['sha256']`."""
    where = folder / str(step)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        state, data_state = restored["state"], restored["data"]
    except Exception as err:
        raise CheckpointError(f"checkpoint {where} cannot be restored ({_first_line(err)}); "
                              f"the checkpoint is damaged") from None
    if state_digest(jax.device_get(state), data_state, meta) != meta["sha256"]:
        raise CheckpointError(f"checkpoint {where}: its arrays or metadata do not match the "
                              f"sha256 recorded at save; the checkpoint is damaged or was edited")
    return state, data_state


def load_trained_params(checkpoint_dir: str | Path) -> tuple[Params, dict[str, Any]]:
    """Supernet parameters (`Supernet.params` layout) and metadata of the latest checkpoint in
    `checkpoint_dir` (a run folder or its `checkpoints/` subfolder), checksum verified.

    Only the `params` subtree is read (no optimizer state, no optimizer built)."""
    path = Path(checkpoint_dir).resolve()
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder {path} does not exist")
    manager = ocp.CheckpointManager(path, item_names=("state", "data", "meta"))
    try:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {path}")
        meta = restore_meta(manager, path, step)
        space = get_space(meta["scale"])
        abstract = jax.eval_shape(lambda: Supernet(space, rngs=nnx.Rngs(0)).params())
        if "params_sha256" not in meta:  # saved before the params digest existed
            return _restore_whole(manager, path, step, abstract, meta)["params"], meta
        params = _restore_params(manager, path / str(step), step, abstract)
    finally:
        manager.close()
    if params_digest(jax.device_get(params), meta) != meta["params_sha256"]:
        raise CheckpointError(f"checkpoint {path / str(step)}: its parameters or metadata do "
                              f"not match the sha256 recorded at save; the checkpoint is "
                              f"damaged or was edited")
    return params, meta


def _restore_params(manager: ocp.CheckpointManager, where: Path, step: int,
                    abstract: Params) -> Params:
    """The `params` subtree of the `state` item (an orbax partial restore)."""
    try:
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item={"params": abstract}, partial_restore=True)))
    except Exception as err:  # orbax raises many types; the user needs one clear message
        raise CheckpointError(f"checkpoint {where} cannot be restored ({_first_line(err)}); "
                              f"the checkpoint is damaged") from None
    return restored["state"]["params"]


def _restore_whole(manager: ocp.CheckpointManager, path: Path, step: int, abstract: Params,
                   meta: dict[str, Any]) -> dict[str, Any]:
    """Params and optimizer state of a checkpoint whose only digest covers both: the state's
    shapes come from the optimizer its recorded config builds."""
    from hwgpt_jax.model.optim import OptimConfig, make_optimizer

    config = meta["config"]
    optimizer = make_optimizer(OptimConfig(**config.get("optim", {})),
                               int(config["train"]["steps"]))
    target = {"params": abstract, "opt_state": jax.eval_shape(optimizer.init, abstract)}
    return restore_verified(manager, path, step, target, meta)[0]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'field: recorded -> current' for every config field that differs (lists compared as
    lists: JSON turns tuples into lists), `RESUMABLE` fields excepted."""
    old = _flatten(json.loads(json.dumps(recorded, default=str)))
    new = _flatten(json.loads(json.dumps(current, default=str)))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if k not in RESUMABLE and old.get(k) != new.get(k)]


def check_resume(meta: dict[str, Any], config: dict[str, Any], data_key: dict[str, Any],
                 where: Path) -> None:
    """Refuse to resume the run of `meta` with another configuration or other data."""
    changed = config_differences(meta["config"], config)
    if changed:
        raise ValueError(f"--resume: the run in {where} was made with other settings "
                         f"({'; '.join(changed)}); resume with the same settings or train "
                         f"into another --out")
    recorded = meta.get("data_fingerprint", {}).get("key")
    if recorded is not None and json.loads(json.dumps(data_key)) != recorded:
        changed = sorted(k for k in set(recorded) | set(data_key)
                         if recorded.get(k) != json.loads(json.dumps(data_key)).get(k))
        raise ValueError(f"--resume: the corpus of the run in {where} changed since the "
                         f"checkpoint ({changed} differ); its token shards are left as they are")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}"
