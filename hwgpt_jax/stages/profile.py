"""The profile stage: measure dense sub-networks on this device into one long-form table.

`run(config, out)` samples (or reads) the archs and profiles each with
`hwgpt_jax.measure.profiler.Profiler` (the table layout is described there).

Restart safety: each arch's rows go to one parquet part in `<out>.parts/`, written to a temp
file and renamed; a rerun skips archs whose part exists, so a killed run loses at most the arch
in progress and never duplicates rows. `merge_parts` writes `<out>` atomically when all archs
are done and removes the parts folder. While a run writes, it holds `<out>.lock` (its pid and
host): a second run on the same output fails at once; a lock left by a dead process (same
host) is taken over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import pandas as pd

from hwgpt_jax.base.config import load_config
from hwgpt_jax.base.files import check_output, output_lock, write_parquet_atomic, write_text_atomic
from hwgpt_jax.measure.profiler import Profiler, ProfileSettings, check_config
from hwgpt_jax.presets import find_preset
from hwgpt_jax.space.arch import Arch, SearchSpace, get_space
from hwgpt_jax.space.arch_files import read_arch_file

PARTS_SUFFIX = ".parts"
CONFIG_NAME = "config.json"  # the settings of the run that owns a parts folder

ArchCallback = Callable[[str, float | None], None]


@dataclasses.dataclass(frozen=True)
class ProfileConfig(ProfileSettings):
    """The measurement settings (the preset keys) plus which archs: `n` sampled with
    `sample_seed` on `scale`, or those of the arch file `archs`."""

    scale: str = "tiny"
    archs: str = ""
    n: int = 0
    sample_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        get_space(self.scale)  # an unknown scale names the known ones
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ValueError(f"n={self.n!r}; expected a non-negative number of archs")

    @classmethod
    def preset(cls, name: str, **changes: Any) -> ProfileConfig:
        """The packaged (or $HWGPT_PRESETS) preset `name`, with `changes` applied."""
        return load_config(cls, find_preset("profile", name), **changes)


def parts_dir(out: str | Path) -> Path:
    """The folder of per-arch part files of an output table: `<out>.parts/`."""
    out = Path(out)
    return out.with_name(out.name + PARTS_SUFFIX)


def part_path(parts: Path, arch_id: str) -> Path:
    """The part file of one arch in a parts folder."""
    return parts / f"{hashlib.sha1(arch_id.encode()).hexdigest()[:16]}.parquet"


def check_output_path(out: str | Path) -> None:
    """Raise a one-line error unless the table `out` can be written (library callers may
    replace it; the CLI refuses an existing one first)."""
    check_output(out, overwrite=True, flag="output path")


def _open_parts(parts: Path, fingerprint: dict[str, Any]) -> None:
    """Create the parts folder, or check that an existing one belongs to this configuration."""
    parts.mkdir(exist_ok=True)
    config_path = parts / CONFIG_NAME
    if config_path.exists():
        stored = json.loads(config_path.read_text())
        if stored != fingerprint:
            changed = sorted(k for k in set(stored) | set(fingerprint)
                             if stored.get(k) != fingerprint.get(k))
            raise ValueError(f"{parts} holds a run with other settings ({changed} differ); "
                             f"remove it or choose another output path")
    else:
        write_text_atomic(config_path, json.dumps(fingerprint, sort_keys=True))
    for stale in parts.glob(".*.tmp"):  # a temp file of a killed run
        stale.unlink()


def profile_archs(archs: Arch, space: SearchSpace, config: ProfileSettings, out: str | Path, *,
                  device: Any = None, on_arch: ArchCallback | None = None) -> pd.DataFrame:
    """Profile archs (batch shape (N,)) into the table `out`, resumable (module docstring).

    Duplicate archs are profiled once. `on_arch(arch_id, median_latency_ms)` is called after
    each arch (latency None when its part already existed). Returns the merged table.
    """
    archs = space.validate(archs)
    if len(archs.batch_shape) != 1:
        raise ValueError(f"profile_archs takes archs of batch shape (N,), got "
                         f"{archs.batch_shape}")
    if len(archs) == 0:
        raise ValueError("no archs to profile; expected at least one")
    out = Path(out)
    check_output_path(out)
    with output_lock(out):  # a second run on the same `out` fails at once
        return _profile_locked(archs, space, config.settings(), out, device, on_arch)


def _profile_locked(archs: Arch, space: SearchSpace, config: ProfileSettings, out: Path,
                    device: Any, on_arch: ArchCallback | None) -> pd.DataFrame:
    all_ids = space.arch_ids(archs)
    ids = list(dict.fromkeys(all_ids))  # unique, in order of first appearance
    first = {arch_id: all_ids.index(arch_id) for arch_id in ids}
    profiler = Profiler(space, config, device)
    parts = parts_dir(out)
    fingerprint = {"scale": space.scale, "config": dataclasses.asdict(config),
                   "device": profiler.metadata["device"],
                   "device_kind": profiler.metadata["device_kind"]}
    _open_parts(parts, fingerprint)
    for arch_id in ids:
        part = part_path(parts, arch_id)
        if part.exists():
            if on_arch is not None:
                on_arch(arch_id, None)
            continue
        rows = profiler.measure(archs[first[arch_id]])
        write_parquet_atomic(rows, part)
        if on_arch is not None:
            latency = rows.loc[rows["metric"] == "latency", "value"]
            on_arch(arch_id, float(latency.median()))
    return merge_parts(out, ids, metadata={"scale": space.scale, **fingerprint,
                                           **profiler.metadata})


def merge_parts(out: str | Path, arch_ids: Sequence[str],
                metadata: dict[str, Any] | None = None) -> pd.DataFrame:
    """Concatenate the parts of `arch_ids` (in order) into `out`, then remove the parts."""
    out = Path(out)
    parts = parts_dir(out)
    missing = [a for a in arch_ids if not part_path(parts, a).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} arch(s) have no part in {parts}, e.g. "
                                f"{missing[0]!r}")
    table = pd.concat([pd.read_parquet(part_path(parts, a)) for a in arch_ids],
                      ignore_index=True)
    write_parquet_atomic(table, out, metadata)
    for path in parts.iterdir():
        path.unlink()
    parts.rmdir()
    return table


def choose(config: ProfileConfig) -> Arch:
    """The archs of a config: those of its arch file, else `n` unique sampled ones."""
    space = get_space(config.scale)
    if bool(config.archs) == bool(config.n):
        raise ValueError(f"give an arch file or a number of archs n, not both or neither "
                         f"(archs={config.archs!r}, n={config.n})")
    if config.archs:
        return read_arch_file(config.archs, space)[1]
    return space.sample_unique(jax.random.key(config.sample_seed), config.n)


def run(config: ProfileConfig, out: str | Path, *,
        on_arch: ArchCallback | None = None) -> dict[str, Any]:
    """Profile the config's archs into the table `out`; returns a summary (counts, device,
    median latency, whether an interrupted run was resumed)."""
    space = get_space(config.scale)
    check_config(space, config)
    archs = choose(config)
    unique = len(set(space.arch_ids(archs)))
    resumed = parts_dir(out).is_dir()
    table = profile_archs(archs, space, config, out, on_arch=on_arch)
    latency = table.loc[table["metric"] == "latency", "value"]
    return {"out": str(out), "rows": len(table), "archs": unique,
            "duplicates": len(archs) - unique, "device": str(table["device"].iloc[0]),
            "latency_median_ms": float(latency.median()), "resumed": resumed}


__all__ = ["CONFIG_NAME", "PARTS_SUFFIX", "ProfileConfig", "check_output_path", "choose",
           "merge_parts", "part_path", "parts_dir", "profile_archs", "run"]
