"""Training data of one surrogate, and the adapter from the pipeline's long-form tables.

A `MetricData` holds one metric on one device for N architectures, with every repeated
observation: `observations` is (N, R), NaN-padded where an arch has fewer than R repeats.

Table layout (what `hwgpt evaluate` and `hwgpt profile` write, one row per observation):

| column | type | meaning |
|---|---|---|
| `arch_id` | str | `SearchSpace.arch_ids` format, e.g. `s:e768-l12-h12...-r4...-b1` |
| `scale` | str | search-space scale (`tiny`, `s`, `m`, `l`); must match the arch id prefix |
| `metric` | str | `perplexity`, `accuracy`, `latency`, `energy`, `memory`, ... |
| `device` | str | device name (`a100`, `cpu`, ...); empty string or null if device independent |
| `value` | float | one observation (repeats are separate rows) |
| `unit` | str | e.g. `ms`, `Wh`, `MB`, `` for ppl; must be constant per (metric, device) |

Other columns (batch, seq, dtype, repeat, versions, ...) are carried as metadata and ignored
here; rows whose value is NaN (a missing measurement) are dropped. A wide quality table (one
row per arch with `arch_id`, `scale` and `perplexity` / `accuracy` columns, as `hwgpt evaluate`
writes) is melted into this layout with device "" and unit "".
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from hwgpt_jax.space.arch import Arch, get_space

TABLE_COLUMNS = ("arch_id", "scale", "metric", "device", "value", "unit")
WIDE_QUALITY_COLUMNS = ("perplexity", "accuracy")


def metric_key(metric: str, device: str) -> str:
    """'perplexity' for device-independent metrics, 'latency:a100' otherwise."""
    return f"{metric}:{device}" if device else metric


def split_key(key: str) -> tuple[str, str]:
    """Inverse of `metric_key`: 'latency:a100' -> ('latency', 'a100')."""
    metric, _, device = key.partition(":")
    return metric, device


@dataclasses.dataclass(frozen=True)
class MetricData:
    """One metric on one device: archs (N,) and observations (N, R), NaN where missing."""

    scale: str
    metric: str
    device: str
    unit: str
    archs: Arch
    observations: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        space = get_space(self.scale)
        object.__setattr__(self, "archs", space.validate(self.archs))
        obs = np.asarray(self.observations, np.float64)
        if obs.ndim == 1:
            obs = obs[:, None]
        if obs.ndim != 2 or obs.shape[0] != len(self.archs):
            raise ValueError(f"observations of {self.key} have shape {obs.shape}, expected "
                             f"({len(self.archs)}, repeats)")
        if np.all(np.isnan(obs).all(axis=1)):
            raise ValueError(f"{self.key} has no observation for any arch")
        object.__setattr__(self, "observations", obs)

    @property
    def key(self) -> str:
        return metric_key(self.metric, self.device)

    def __len__(self) -> int:
        return len(self.archs)

    def subset(self, index: np.ndarray) -> MetricData:
        return dataclasses.replace(self, archs=self.archs[index],
                                   observations=self.observations[index])

    def dropna(self) -> MetricData:
        """Drop archs without any observation."""
        return self.subset(np.flatnonzero(~np.isnan(self.observations).all(axis=1)))

    def data_hash(self) -> str:
        """sha256 of the genes and observations (identifies the training data)."""
        digest = hashlib.sha256()
        digest.update(f"{self.scale}|{self.key}|{self.unit}".encode())
        digest.update(np.ascontiguousarray(get_space(self.scale).genes(self.archs)).tobytes())
        digest.update(np.ascontiguousarray(self.observations).tobytes())
        return digest.hexdigest()


def from_table(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> list[MetricData]:
    """Group a long-form table (module docstring) into one `MetricData` per (metric, device).

    Args:
        table: rows of observations with at least the columns `TABLE_COLUMNS`.
        metrics: keep only these metrics (names like 'latency' or keys like 'latency:a100').
    """
    wide = [c for c in WIDE_QUALITY_COLUMNS if c in table.columns]
    if "metric" not in table.columns and wide and {"arch_id", "scale"} <= set(table.columns):
        table = table.melt(id_vars=["arch_id", "scale"], value_vars=wide, var_name="metric",
                           value_name="value").assign(device="", unit="")
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; expected {list(TABLE_COLUMNS)}")
    table = table.assign(device=table["device"].fillna("").astype(str),
                         unit=table["unit"].fillna("").astype(str))
    if table.empty:
        raise ValueError(f"table has no rows; expected observations with columns "
                         f"{list(TABLE_COLUMNS)}")
    values = pd.to_numeric(table["value"], errors="coerce")
    infinite = np.isinf(values.to_numpy(np.float64))
    if infinite.any():
        row = table[infinite].iloc[0]
        raise ValueError(f"table has {int(infinite.sum())} infinite value(s), e.g. "
                         f"{row['value']} for {metric_key(row['metric'], row['device'])} of "
                         f"{row['arch_id']}; expected finite measurements (NaN for missing)")
    if values.isna().all():
        raise ValueError(f"all {len(table)} values of the table are missing (NaN); nothing "
                         f"to fit")
    table = table[values.notna()]
    scales = sorted(table["scale"].astype(str).unique())
    if len(scales) != 1:
        raise ValueError(f"table mixes scales {scales}; fit one scale at a time")
    space = get_space(scales[0])
    out, available = [], []
    for (metric, device), group in table.groupby(["metric", "device"], sort=True):
        available.append(metric_key(metric, device))
        if metrics and metric not in metrics and metric_key(metric, device) not in metrics:
            continue
        units = sorted(group["unit"].unique())
        if len(units) != 1:
            raise ValueError(f"{metric_key(metric, device)} has mixed units {units}")
        ids, rows = np.unique(group["arch_id"].astype(str).to_numpy(), return_inverse=True)
        repeat = group.groupby("arch_id").cumcount().to_numpy()
        obs = np.full((len(ids), int(repeat.max()) + 1), np.nan)
        obs[rows, repeat] = group["value"].to_numpy(np.float64)
        out.append(MetricData(space.scale, str(metric), device, units[0],
                              space.from_ids(list(ids)), obs, source="table"))
    if metrics:
        found = {m for d in out for m in (d.metric, d.key)}
        unknown = [m for m in metrics if m not in found]
        if unknown:
            raise ValueError(f"metric(s) {unknown} not in the table; it has {available}")
    return out
