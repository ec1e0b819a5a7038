"""The evaluate stage: perplexity and next-token accuracy of sub-networks of a trained run,
into a parquet quality table (one row per arch), plus the long form the surrogate fitter reads.

The kernels (`Evaluator`, `window_sums`) are `hwgpt_jax.measure.quality`'s; this stage reads
the run's checkpoint (parameters only, `model.checkpoints.load_trained_params`) and its fixed
validation windows, and owns the table's file and metadata. `run(EvaluateConfig, out)` is
what `hwgpt evaluate` calls; `evaluate_checkpoint` is the same for archs already in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from hwgpt_jax.base.files import check_output, write_parquet_atomic
from hwgpt_jax.base.metadata import provenance
from hwgpt_jax.data.shards import load_shards
from hwgpt_jax.data.windows import validation_windows
from hwgpt_jax.measure.quality import Evaluator, QualityResult
from hwgpt_jax.space.arch import Arch, SearchSpace, get_space
from hwgpt_jax.space.arch_files import read_arch_file


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """What to evaluate: archs of an arch file, or `n` unique archs sampled with `seed`."""

    checkpoint: str = ""  # the run folder of `hwgpt train` (or its checkpoints/ subfolder)
    archs: str | None = None  # arch file (JSON/CSV of `hwgpt space sample`)
    n: int | None = None
    seed: int = 0
    windows: int = 16  # validation windows, evenly spaced over the val split
    seq: int | None = None  # window length (default: the training seq_len)
    batch_archs: int = 8  # archs evaluated together in one compiled call
    data_dir: str | None = None  # token shards (default: the run's data folder)

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ValueError("evaluate: checkpoint is empty; expected a run folder")
        if (self.archs is None) == (self.n is None):
            raise ValueError(f"evaluate: archs={self.archs!r}, n={self.n!r}; expected exactly "
                             f"one of an arch file or a number of archs to sample")
        for name in ("n", "windows", "batch_archs", "seq"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"evaluate: {name}={value!r}; expected a positive integer")


def run_validation_windows(run_dir: str | Path, meta: dict[str, Any], n_windows: int,
                           seq: int | None = None, data_dir: str | Path | None = None
                           ) -> np.ndarray:
    """The run's fixed validation windows (n_windows, seq + 1); seq defaults to the training
    sequence length of the checkpoint's config."""
    config = meta.get("config", {})
    seq = seq or int(config.get("train", {}).get("seq_len", 0)) or None
    if seq is None:
        raise ValueError("the checkpoint's config has no train.seq_len; pass seq")
    run_dir = Path(run_dir)
    if run_dir.name == "checkpoints":
        run_dir = run_dir.parent
    data_dir = Path(data_dir or config.get("data", {}).get("data_dir") or run_dir / "data")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"token shards of the run not found at {data_dir}; pass the "
                                f"data folder explicitly")
    return validation_windows(load_shards(data_dir), seq, max_windows=n_windows)


def quality_table(archs: Arch, space: SearchSpace, result: QualityResult,
                  **metadata: Any) -> pd.DataFrame:
    """One row per arch: arch columns, arch_id, perplexity, accuracy, loss, tokens, metadata.
    (Versions are the file's metadata, not columns: `evaluate_checkpoint` writes them.)"""
    records = space.to_records(archs)
    table = pd.DataFrame({
        "arch_id": space.arch_ids(archs), "scale": space.scale,
        **{field: [r[field] for r in records]
           for field in ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")},
        "perplexity": result.perplexity, "accuracy": result.accuracy, "loss": result.loss,
        "tokens": result.tokens,
    })
    return table.assign(**metadata)


def quality_observations(table: pd.DataFrame) -> pd.DataFrame:
    """The long form of a quality table (columns arch_id, scale, metric, device, value, unit)
    that the surrogate fitter reads; quality is device independent (device "")."""
    long = table.melt(id_vars=["arch_id", "scale"], value_vars=["perplexity", "accuracy"],
                      var_name="metric", value_name="value")
    return long.assign(device="", unit="")[["arch_id", "scale", "metric", "device", "value",
                                            "unit"]]


def evaluate_checkpoint(checkpoint: str | Path, archs: Arch | None, out: str | Path, *,
                        n: int | None = None, seed: int = 0, windows: int = 16,
                        batch_archs: int = 8, seq: int | None = None,
                        data_dir: str | Path | None = None,
                        arch_file_scale: str | None = None,
                        on_chunk: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Evaluate archs (or n unique archs sampled with `seed`) of a trained run into `out`.

    Args:
        checkpoint: the run folder of `hwgpt train` (or its `checkpoints/` subfolder).
        archs: archs to evaluate, or None to sample `n` with `seed`.
        arch_file_scale: the scale the archs were read for (must equal the checkpoint's).
    """
    from hwgpt_jax.model.checkpoints import load_trained_params  # imports orbax: only here

    out = Path(out)
    check_output(out, overwrite=True, flag="output path")
    params, meta = load_trained_params(checkpoint)
    space = get_space(meta["scale"])
    if arch_file_scale is not None and arch_file_scale != space.scale:
        raise ValueError(f"archs are of scale {arch_file_scale!r} but the checkpoint in "
                         f"{checkpoint} is of scale {space.scale!r}")
    sampled = archs is None
    if sampled:
        if n is None or n < 1:
            raise ValueError(f"n={n!r}; expected a positive number of archs to sample")
        archs = space.sample_unique(jax.random.key(seed), n)
    archs = space.validate(archs)
    tokens = run_validation_windows(checkpoint, meta, windows, seq, data_dir)
    evaluator = Evaluator(params, space, tokens, batch_archs=batch_archs)
    result = evaluator.evaluate(archs, on_chunk=on_chunk)
    table = quality_table(
        archs, space, result, checkpoint=str(Path(checkpoint).resolve()),
        checkpoint_step=int(meta["step"]), seq=evaluator.seq, windows=len(tokens),
        eval_platform=jax.devices()[0].platform,
        arch_seed=seed if sampled else None)
    write_parquet_atomic(table, out, metadata={
        "scale": space.scale, "checkpoint_step": int(meta["step"]), "seq": evaluator.seq,
        "windows": len(tokens), "batch_archs": batch_archs, "compiles": evaluator.compiles,
        "train_config": meta.get("config"), **provenance()})
    return table


def run(config: EvaluateConfig, out: str | Path,
        on_chunk: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Evaluate the archs `config` names into the parquet table `out`; returns a summary
    (table path, arch count, scale, step, tokens per arch, perplexity range, best arch).
    `on_chunk(n_archs_done)` reports progress."""
    archs, scale = None, None
    if config.archs is not None:
        scale, archs = read_arch_file(config.archs)
    table = evaluate_checkpoint(
        config.checkpoint, archs, out, n=config.n, seed=config.seed, windows=config.windows,
        batch_archs=config.batch_archs, seq=config.seq, data_dir=config.data_dir,
        arch_file_scale=scale, on_chunk=on_chunk)
    best = table.loc[table["perplexity"].idxmin()]
    return {"out": str(out), "archs": len(table), "scale": str(table["scale"].iloc[0]),
            "checkpoint_step": int(table["checkpoint_step"].iloc[0]),
            "tokens": int(table["tokens"].iloc[0]),
            "perplexity_min": float(table["perplexity"].min()),
            "perplexity_max": float(table["perplexity"].max()), "best": str(best["arch_id"])}


__all__ = ["EvaluateConfig", "evaluate_checkpoint", "quality_observations", "quality_table",
           "run", "run_validation_windows"]
