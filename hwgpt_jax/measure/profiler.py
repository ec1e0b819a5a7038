"""On-device hardware profiling of dense sub-networks -> a long-form observation table.

HW-GPT-Bench (Sukthanker et al., arXiv 2405.10299, Sec. 3) profiles every sub-network of the
supernet on real hardware for latency, energy, memory, FLOPs and parameters. Here each arch is
the DENSE model `model.extract` slices from randomly initialised supernet parameters (weights do
not change the cost of a forward pass; every row says `weights="random init (seed K)"`); its
forward `dense_forward` on (batch, seq) token ids is jit-compiled once per shape signature and:

- latency (ms): `reps` wall-clock observations of one call each, after `warmup` calls, timed
  with `time.perf_counter` around the call and `block_until_ready` (inference only);
- energy (J): a real sensor read before and after each timed call: NVML's total energy counter
  (`nvmlDeviceGetTotalEnergyConsumption`, mJ) on NVIDIA GPUs, or the package counters of Linux
  RAPL powercap (`/sys/class/powercap/intel-rapl:N/energy_uj`) on CPUs where readable. RAPL
  counts the whole CPU package (other processes included). Otherwise the value is NaN and the
  `note` column says why ("no energy sensor on cpu: ..."); energy is never estimated. The NVML
  counter updates every few ms, so short calls can read 0 or one tick: raise the batch or seq;
- flops_xla: XLA's cost analysis of the compiled forward (`compiled.cost_analysis()["flops"]`)
  and flops_analytic: `costs.forward_flops` (2 FLOPs per multiply-accumulate of every matrix
  product). XLA also counts element-wise work (LayerNorm, GELU, softmax, RoPE, bias adds,
  masking) and backends fuse or count differently, so the two differ slightly (tested within
  15 %; measured ratios: docs/performance.md);
- params: the exact number of scalars of the dense pytree (equal to `costs.param_count`);
- memory (MB = 1e6 bytes): XLA's memory analysis of the compiled forward, argument + output +
  temp - alias bytes (`memory`), with the parts as `memory_argument`, `memory_output`,
  `memory_temp`; on GPUs also `memory_allocator_peak`, the allocator's `peak_bytes_in_use`
  after the arch ran. JAX cannot reset that peak, so it is the process's peak so far: an upper
  bound for this arch (exact when archs run one per process or in ascending size);
- compile_time (s): lowering + compilation of the forward (one per shape signature).

Weights are held in the profiled dtype (float32 or bfloat16); LayerNorm and softmax run in
float32 inside the model and the logits are float32.

Table layout (long form, one row per observation; the surrogate fitter reads the first six):

- `arch_id`, `scale`: the `SearchSpace.arch_ids` id and its scale;
- `metric`, `value`, `unit`: latency ms, energy J, flops_xla and flops_analytic FLOPs, params
  count, memory / memory_argument / memory_output / memory_temp / memory_allocator_peak MB,
  compile_time s;
- `device`: a short slug of the device: `cpu`, or the lower-cased device kind with
  non-alphanumerics as dashes (`nvidia-h100-80gb-hbm3`, `tpu-v5-lite`);
- `repeat`: observation index 0..reps-1 for latency and energy, 0 for per-arch scalars;
- `note`: why a value is missing (NaN), or what it measures;
- metadata on every row: `platform`, `device_kind`, `host_cpu`, `batch`, `seq`, `dtype`,
  `weights`, `warmup`, `reps`, `jax_version`, `jaxlib_version`, `hwgpt_jax_version`,
  `glibc_tunables` (the allocator settings the process ran with, see `hwgpt_jax.cli.runtime`;
  empty where none), `profiled_at` (UTC); the parquet key-value metadata `hwgpt` holds the
  configuration as JSON.

The resumable table files (parts folder, lock, merge) are the profile stage's:
`hwgpt_jax.stages.profile`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hwgpt_jax.base.metadata import versions
from hwgpt_jax.measure.energy import EnergySensor
from hwgpt_jax.model.supernet import dense_forward, extract, init_params, param_count
from hwgpt_jax.space import costs
from hwgpt_jax.space.arch import Arch, SearchSpace

DTYPES = ("float32", "bfloat16")
MEGABYTE = 1e6


# ---------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    """What to measure: input shape, repetitions, dtype and the random-init seed (the keys of
    the profile presets; the profile stage's `ProfileConfig` extends it)."""

    batch: int = 1
    seq: int = 256
    reps: int = 10
    warmup: int = 3
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("batch", 1), ("seq", 1), ("reps", 1), ("warmup", 0),
                              ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}; expected one of {list(DTYPES)}")

    def settings(self) -> ProfileSettings:
        """Only the measurement settings (what a table's rows depend on)."""
        return ProfileSettings(**{f.name: getattr(self, f.name)
                                  for f in dataclasses.fields(ProfileSettings)})


# ---------------------------------------------------------------------------- device facts
def device_slug(device: Any) -> str:
    """Short device name for the `device` column: 'cpu', or the lower-cased device kind."""
    if device.platform == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", str(device.device_kind).lower()).strip("-")


def host_cpu_model() -> str:
    """The host CPU model from /proc/cpuinfo (Linux), else `platform.processor()`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version_columns() -> dict[str, str]:
    """The version columns of every measurement table (profile and quality rows)."""
    known = versions()
    return {"jax_version": known["jax"], "jaxlib_version": known["jaxlib"],
            "hwgpt_jax_version": known["hwgpt-jax"]}


# ---------------------------------------------------------------------------- measuring
def _shape_signature(tree: Any, tokens: Any) -> tuple[Any, ...]:
    leaves = tuple((np.shape(x), str(x.dtype)) for x in jax.tree.leaves(tree))
    return (str(jax.tree.structure(tree)), leaves, np.shape(tokens))


def _xla_flops(compiled: Any) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", math.nan))


def check_config(space: SearchSpace, config: ProfileSettings) -> None:
    """Raise ValueError unless the config's sequence fits the space's block size."""
    if config.seq > space.block_size:
        raise ValueError(f"seq={config.seq} exceeds the {space.scale} block size "
                         f"{space.block_size}")


class Profiler:
    """Measures dense sub-networks of one space on one device.

    Compiled forwards are cached by shape signature (at most `cache_size`, least recently used
    first out), so a repeated arch is not compiled again.
    """

    def __init__(self, space: SearchSpace, config: ProfileSettings, device: Any = None,
                 cache_size: int = 32) -> None:
        check_config(space, config)
        self.space, self.config = space, config
        self.device = device or jax.devices()[0]
        self.energy = EnergySensor(self.device)
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._cache_size = cache_size
        self.compiles = 0
        # Host (NumPy) parameters: extraction is then a slice on the host, with no compile.
        key = jax.random.key(config.seed)
        self.params = jax.device_get(init_params(key, space))
        rng = np.random.default_rng(config.seed)
        tokens = rng.integers(0, space.vocab_size, (config.batch, config.seq), dtype=np.int32)
        self.tokens = jax.device_put(tokens, self.device)
        self.metadata = {
            "device": device_slug(self.device), "platform": self.device.platform,
            "device_kind": str(self.device.device_kind), "host_cpu": host_cpu_model(),
            "batch": config.batch, "seq": config.seq, "dtype": config.dtype,
            "weights": f"random init (seed {config.seed})", "warmup": config.warmup,
            "reps": config.reps, **version_columns(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}

    def _compiled(self, dense: Any) -> tuple[Any, float]:
        signature = _shape_signature(dense, self.tokens)
        if signature in self._cache:
            self._cache.move_to_end(signature)
            return self._cache[signature], 0.0
        start = time.perf_counter()
        compiled = jax.jit(dense_forward).lower(dense, self.tokens).compile()
        seconds = time.perf_counter() - start
        self.compiles += 1
        self._cache[signature] = compiled
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return compiled, seconds

    def measure(self, arch: Arch) -> pd.DataFrame:
        """All observation rows of one arch (batch shape ()), in the module's layout."""
        space, cfg = self.space, self.config
        arch = space.validate(arch)
        arch_id = space.arch_ids(arch)[0]
        # Weights are stored in the compute dtype, as a deployed model would hold them (a cast
        # inside the forward would add its memory traffic to the latency).
        dtype = jnp.dtype(cfg.dtype)
        dense = jax.tree.map(lambda x: np.asarray(x).astype(dtype),
                             extract(self.params, arch, space))
        dense = jax.device_put(dense, self.device)
        compiled, compile_seconds = self._compiled(dense)
        for _ in range(cfg.warmup):
            compiled(dense, self.tokens).block_until_ready()
        latency, energy = np.zeros(cfg.reps), np.full(cfg.reps, np.nan)
        for rep in range(cfg.reps):
            before = self.energy.read()
            start = time.perf_counter()
            compiled(dense, self.tokens).block_until_ready()
            latency[rep] = (time.perf_counter() - start) * 1e3
            after = self.energy.read()
            if before is not None and after is not None:
                energy[rep] = after - before
        memory = compiled.memory_analysis()
        rows = [("latency", r, v, "ms", "") for r, v in enumerate(latency)]
        energy_note = self.energy.source if self.energy.available else self.energy.reason
        rows += [("energy", r, v, "J", energy_note) for r, v in enumerate(energy)]
        rows += [
            ("flops_xla", 0, _xla_flops(compiled), "FLOPs", "XLA cost analysis"),
            ("flops_analytic", 0, float(costs.forward_flops(arch, space, cfg.batch, cfg.seq)),
             "FLOPs", "matrix products, 2 per MAC"),
            ("params", 0, float(param_count(dense)), "count", "dense model"),
            ("compile_time", 0, compile_seconds, "s",
             "" if compile_seconds else "cached executable"),
        ]
        rows += memory_rows(memory, self.device)
        table = pd.DataFrame(rows, columns=["metric", "repeat", "value", "unit", "note"])
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        return table.assign(arch_id=arch_id, scale=space.scale, **self.metadata,
                            profiled_at=now)[_column_order(self.metadata)]


def memory_rows(memory: Any, device: Any) -> list[tuple[str, int, float, str, str]]:
    """The memory observations of one compiled forward: XLA's memory analysis (None where
    the backend has none) and, off CPU, the allocator's peak."""
    rows = []
    if memory is not None:
        parts = {"argument": memory.argument_size_in_bytes,
                 "output": memory.output_size_in_bytes, "temp": memory.temp_size_in_bytes}
        total = sum(parts.values()) - memory.alias_size_in_bytes
        rows.append(("memory", 0, total / MEGABYTE, "MB", "XLA argument+output+temp-alias"))
        rows += [(f"memory_{k}", 0, v / MEGABYTE, "MB", "XLA memory analysis")
                 for k, v in parts.items()]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        rows.append(("memory_allocator_peak", 0, stats["peak_bytes_in_use"] / MEGABYTE,
                     "MB", "allocator peak of the process so far (upper bound)"))
    return rows


def _column_order(metadata: dict[str, Any]) -> list[str]:
    head = ["arch_id", "scale", "metric", "device", "value", "unit", "repeat", "note"]
    return head + [k for k in metadata if k not in head] + ["profiled_at"]


__all__ = ["DTYPES", "MEGABYTE", "ProfileSettings", "Profiler", "check_config", "device_slug",
           "host_cpu_model", "memory_rows", "version_columns"]
