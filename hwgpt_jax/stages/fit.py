"""The fit stage: surrogates fitted on measured tables or published arrays, saved as a folder.

`run(config, out)` reads every (metric, device) of the data files, fits one surrogate per key
(`Benchmark.fit`) and saves the benchmark folder `out`. With `test_fraction > 0` a random part
of each key's archs is held out first; the stage then writes the held-out scores
(`surrogates.validation`) to `<out>/validation.json` and, for quantile surrogates, a
calibration plot `<out>/calibration_<metric>.png`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwgpt_jax.base.files import read_parquet_checked, write_text_atomic
from hwgpt_jax.presets import resolve_preset
from hwgpt_jax.stages.plots import calibration_plot
from hwgpt_jax.surrogates import MetricData, SurrogateConfig, from_table, load_presets
from hwgpt_jax.surrogates.benchmark import Benchmark
from hwgpt_jax.surrogates.fit import default_config
from hwgpt_jax.surrogates.published import load_published
from hwgpt_jax.surrogates.validation import split_held_out, validate_surrogate

DEFAULT_METRICS = ("perplexity", "accuracy", "latency", "energy", "memory")
VALIDATION_NAME = "validation.json"


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Which data and metrics, the surrogate presets and overrides, and the held-out part."""

    data: tuple[str, ...] = ()  # .parquet / .csv long-form tables or published .npz archives
    metrics: tuple[str, ...] = ()  # names or keys like latency:a100; () = DEFAULT_METRICS
    presets: str = ""  # surrogate preset name or TOML file; "" = the defaults per group
    seed: int | None = None  # overrides every preset's seed
    max_steps: int | None = None  # overrides every preset's max_steps
    keep_tables: bool = True  # store the measurements (ground_truth queries)
    test_fraction: float = 0.0  # > 0: hold out this part of each key's archs and validate
    split_seed: int = 0  # the held-out split

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(self.data))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps}; expected a positive integer")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction={self.test_fraction}; expected a number in [0, 1)")


def read_data(paths: tuple[str, ...], metrics: tuple[str, ...] = ()) -> list[MetricData]:
    """Every (metric, device) of every file, or those named in `metrics` (names or keys,
    each found in some file); a key may appear in one file only."""
    data: dict[str, MetricData] = {}
    for name in paths:
        items = read_file(name, metrics)
        for item in items if metrics else [d for d in items if d.metric in DEFAULT_METRICS]:
            if item.key in data:
                raise ValueError(f"{item.key} appears in more than one data file; merge them")
            data[item.key] = item
    found = {m for item in data.values() for m in (item.metric, item.key)}
    missing = [m for m in metrics if m not in found]
    if missing:
        raise ValueError(f"metric(s) {missing} not in the data files {list(paths)}; they have "
                         f"{sorted(data)}")
    if not data:
        raise ValueError(f"no metric to fit in {list(paths)} (metrics={list(metrics)})")
    return list(data.values())


def read_file(path: str | Path, metrics: Sequence[str] = ()) -> list[MetricData]:
    """The observations of a long-form table (.parquet, .csv) or a published .npz archive:
    every (metric, device), or those whose metric or key is in `metrics`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    if path.suffix == ".npz":
        return load_published(path, list(metrics) or None)
    if path.suffix not in (".parquet", ".csv"):
        raise ValueError(f"data file {str(path)!r} has suffix {path.suffix!r}; expected .npz, "
                         f".parquet or .csv")
    table = read_parquet_checked(path) if path.suffix == ".parquet" else pd.read_csv(path)
    try:
        items = from_table(table)
    except ValueError as err:
        raise ValueError(f"data file {path}: {err}") from None
    return [d for d in items if d.metric in metrics or d.key in metrics] if metrics else items


def surrogate_configs(config: FitConfig) -> dict[str, SurrogateConfig]:
    """The surrogate presets (per key, metric or group) with the config's overrides."""
    presets = load_presets(resolve_preset("surrogates", config.presets)) if config.presets else {
        "quality": default_config("perplexity"), "hardware": default_config("latency")}
    overrides = {k: v for k, v in (("seed", config.seed), ("max_steps", config.max_steps))
                 if v is not None}
    configs = {}
    for name, preset in presets.items():
        preset = dataclasses.replace(preset, **overrides)
        # Training runs in chunks of eval_every steps (validation between chunks): a smaller
        # max_steps shrinks the chunk, a larger one must be a whole number of chunks.
        if preset.max_steps < preset.eval_every:
            preset = dataclasses.replace(preset, eval_every=preset.max_steps)
        elif preset.max_steps % preset.eval_every:
            raise ValueError(f"max_steps {preset.max_steps} ({name}): expected at most or a "
                             f"multiple of eval_every {preset.eval_every} (steps between "
                             f"validations)")
        configs[name] = preset
    return configs


def run(config: FitConfig, out: str | Path, *, overwrite: bool = False,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit, save the folder `out` (replacing it when `overwrite`) and validate on the held-out
    archs; returns {"scale", "surrogates": {key: spec summary}, "validation": {key: scores}}.
    `progress(key)` is called after each surrogate."""
    data = read_data(config.data, config.metrics)
    configs = surrogate_configs(config)
    test: list[MetricData] = []
    if config.test_fraction > 0:
        data, test = split_held_out(data, config.test_fraction, config.split_seed)
    bench = Benchmark.fit(data, configs, keep_tables=config.keep_tables, progress=progress)
    out = bench.save(out, overwrite=overwrite)
    validation = {item.key: validate_surrogate(bench, item) for item in test}
    for item in test:
        if bench.spec(item.key).kind == "quantile":
            predicted = bench.query(item.archs, [item.key], mode="quantiles")[item.key]
            calibration_plot(bench.spec(item.key).levels, np.asarray(predicted),
                             item.observations, Path(out) / f"calibration_{item.metric}.png",
                             title=f"{item.key}: held-out calibration")
    if test:
        write_text_atomic(Path(out) / VALIDATION_NAME, json.dumps(validation, indent=2))
    return {"scale": bench.space.scale, "surrogates": {
        key: _spec_summary(s) for key, s in bench.surrogates.items()}, "validation": validation}


def _spec_summary(surrogate: Any) -> dict[str, Any]:
    spec = surrogate.spec
    row = {"unit": spec.unit, "archs": spec.n_archs, "observations": spec.n_observations,
           "best_step": spec.fit_report["best_step"]}
    if 0.9 in spec.central_levels:
        row["e90"] = float(surrogate.state["corrections"][spec.central_levels.index(0.9)])
    return row


__all__ = ["DEFAULT_METRICS", "VALIDATION_NAME", "FitConfig", "read_data", "read_file", "run",
           "surrogate_configs"]
