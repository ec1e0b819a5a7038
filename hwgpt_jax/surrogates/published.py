"""Loader for the published HW-GPT-Bench measurements (arXiv 2405.10299) in the npz layout.

The archive (see `../shared/reference/hwgpt-bench/README.md`) holds 10,000 architectures of one
scale with quality metrics and repeated hardware measurements on 13 devices. This module turns
it into one `MetricData` per (metric, device), named like the project's own tables:

| key | source array | unit | observations per arch |
|---|---|---|---|
| `perplexity`, `accuracy` | `perplexity`, `accuracy` | -, fraction | 1 (NaN rows dropped at fit) |
| `latency:<device>` | `lat_ms__<device>` | ms | 10 (1 for cpu_amd_7513 in s) |
| `energy:<gpu>` | `energy_Wh__<gpu>` | Wh | 50 |
| `energy:<cpu>` | `energy_Wh_mean__<cpu>` | Wh | 1: only the mean over 10 runs is published |
| `memory:a100`, `memory:rtx2080` | `mem_MB_bfloat16_a100`, `mem_MB_float16_rtx2080` | MB | 1 |

The empty `cpu_p100_unused` column is skipped. The file is read with `allow_pickle=False`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hwgpt_jax.space.arch import SPACES, get_space
from hwgpt_jax.surrogates.data import MetricData

GPUS = ("a100", "a40", "h100", "rtx2080", "rtx3080", "a6000", "v100", "P100")
CPUS = ("cpu_xeon_silver", "cpu_xeon_gold", "cpu_amd_7502", "cpu_amd_7513", "cpu_amd_7452")
DEVICES = GPUS + CPUS
ARCH_KEYS = ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")


def _sources() -> dict[str, tuple[str, str]]:
    """Metric key -> (array name, unit)."""
    out = {"perplexity": ("perplexity", ""), "accuracy": ("accuracy", "fraction")}
    for device in DEVICES:
        out[f"latency:{device}"] = (f"lat_ms__{device}", "ms")
    for device in GPUS:
        out[f"energy:{device}"] = (f"energy_Wh__{device}", "Wh")
    for device in CPUS:
        out[f"energy:{device}"] = (f"energy_Wh_mean__{device}", "Wh")
    out["memory:a100"] = ("mem_MB_bfloat16_a100", "MB")
    out["memory:rtx2080"] = ("mem_MB_float16_rtx2080", "MB")
    return out


PUBLISHED_METRICS = tuple(_sources())


def _scale_of(n_layers: int) -> str:
    for scale, space in SPACES.items():
        if space.max_layers == n_layers:
            return scale
    raise ValueError(f"published n_head has {n_layers} layer columns; no scale has that Lmax "
                     f"(expected one of {[s.max_layers for s in SPACES.values()]})")


def load_published(path: str | Path, metrics: Sequence[str] | None = None) -> list[MetricData]:
    """Read a published HW-GPT-Bench npz into `MetricData` (all of `PUBLISHED_METRICS` if
    `metrics` is None; a metric name like 'latency' selects every device)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"published HW-GPT-Bench file {str(path)!r} does not exist")
    sources = _sources()
    wanted = list(sources) if metrics is None else _select(metrics, sources)
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in ARCH_KEYS if k not in archive.files]
        if missing:
            raise ValueError(f"{path} lacks the arch array(s) {missing}; is it a published "
                             f"HW-GPT-Bench npz?")
        space = get_space(_scale_of(archive["n_head"].shape[-1]))
        archs = space.from_published({k: archive[k] for k in ARCH_KEYS})
        out = []
        for key in wanted:
            array_name, unit = sources[key]
            if array_name not in archive.files:
                raise ValueError(f"{path} lacks the array {array_name!r} needed for {key}")
            metric, _, device = key.partition(":")
            out.append(MetricData(space.scale, metric, device, unit, archs,
                                  np.asarray(archive[array_name], np.float64),
                                  source=f"published:{path.name}:{array_name}"))
    return out


def _select(metrics: Sequence[str], sources: dict[str, tuple[str, str]]) -> list[str]:
    keys = []
    for name in metrics:
        match = [k for k in sources if k == name or k.partition(":")[0] == name]
        if not match:
            raise ValueError(f"unknown published metric {name!r}; expected a name in "
                             f"{sorted({k.partition(':')[0] for k in sources})} or a key in "
                             f"{list(sources)}")
        keys += [k for k in match if k not in keys]
    return keys
