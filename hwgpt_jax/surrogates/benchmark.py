"""The batched query API of the benchmark: surrogates (and measured tables) behind one object.

`Benchmark.query` answers N architectures for every requested metric in ONE jit-compiled call
(each encoding is computed once, then every surrogate MLP runs on it), so populations of 10^5
archs cost one dispatch. Inside it, encoding + MLPs run over chunks of `QUERY_CHUNK` archs (a
`lax.map`, so activations stay in cache), and the archs' values are checked against the space
in the same call (the host only checks shapes, and builds the error message for a bad batch).
`objective_fn` returns the same computation as a pure, jit-able function of (arch, key) for
search algorithms. Modes: the median, the calibrated quantiles, a conformal interval (CQR,
Romano et al. 2019) or a draw from the calibrated predictive distribution with an explicit
PRNG key.

On disk a benchmark is a folder: `benchmark.json` (sidecar: scale, encoding and its version,
every surrogate's metric, device, unit, data hash and fit report, a sha256 of the arrays),
`state/` (orbax checkpoint of every surrogate's arrays) and optionally `tables.npz` (the
measured observations, for `ground_truth=True`). The folder is written to a temporary sibling
and renamed into place.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hwgpt_jax.base.batching import first_rows, padded_rows
from hwgpt_jax.space.arch import Arch, SearchSpace, get_space
from hwgpt_jax.space.encoding import encode
from hwgpt_jax.space.rules import is_valid
from hwgpt_jax.surrogates.data import MetricData, metric_key, split_key
from hwgpt_jax.surrogates.fit import QUALITY_METRICS, SurrogateConfig, default_config, fit_surrogate
from hwgpt_jax.surrogates.io import load_benchmark, save_benchmark
from hwgpt_jax.surrogates.model import (
    MODES,
    Surrogate,
    SurrogateSpec,
    base_quantiles,
    predict_from_base,
)
from hwgpt_jax.surrogates.packaged import load_packaged

# Rows per MLP pass: the whole batch at once streams every (N, 128) activation through
# memory, chunks keep them in cache (identical values; the gain: docs/performance.md).
QUERY_CHUNK = 2048


class Benchmark:
    """Surrogates of one search space (and optional measured tables), queried in batches."""

    def __init__(self, surrogates: Sequence[Surrogate], tables: Sequence[MetricData] = ()):
        if not surrogates:
            raise ValueError("a Benchmark needs at least one surrogate")
        first = surrogates[0].spec
        for s in surrogates:
            for name in ("scale", "encoding_version"):
                if getattr(s.spec, name) != getattr(first, name):
                    raise ValueError(f"surrogate {s.spec.key} has {name}="
                                     f"{getattr(s.spec, name)!r}, others {getattr(first, name)!r}")
        keys = [s.spec.key for s in surrogates]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate surrogate keys in {keys}")
        self.space = get_space(first.scale)
        self.surrogates = {s.spec.key: s for s in surrogates}
        self.tables = {t.key: _Table.build(t) for t in tables}
        # "observations": tables hold every repeat; "median": one measured median per arch
        # (the packaged published benchmark), which answers ground truth in mode 'median' only.
        self.measured = "observations"
        self._compiled: dict[tuple, Callable] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(cls, data: Sequence[MetricData],
            configs: SurrogateConfig | Mapping[str, SurrogateConfig] | None = None,
            keep_tables: bool = True,
            progress: Callable[[str], None] | None = None) -> Benchmark:
        """Fit one surrogate per `MetricData`.

        Args:
            data: training data, one entry per (metric, device), all of one scale.
            configs: one config for all, or a mapping looked up by key ('latency:a100'), then
                metric name ('latency'), then 'quality' / 'hardware'; default:
                `default_config(metric)` (point MLP for quality, quantile MLP otherwise).
            keep_tables: keep the observations for `ground_truth=True` queries.
            progress: called with each key after it is fitted (the CLI's progress bar).
        """
        surrogates = []
        for item in data:
            surrogates.append(fit_surrogate(item, _config_for(item, configs)))
            if progress is not None:
                progress(item.key)
        return cls(surrogates, tables=data if keep_tables else ())

    @classmethod
    def published(cls, scale: str) -> Benchmark:
        """The published HW-GPT-Bench benchmark of scale 's', 'm' or 'l', shipped with the
        package (no fitting, no download): surrogates of every published key (perplexity,
        accuracy, latency on 13 devices, energy on 8 GPUs and 5 CPUs, memory on a100 and
        rtx2080) and the measured median of every published arch for `ground_truth=True`."""
        surrogates, tables = load_packaged(scale)
        bench = cls(surrogates, tables)
        bench.measured = "median"
        return bench

    # ------------------------------------------------------------------ listing
    def keys(self) -> list[str]:
        """Every surrogate key: 'perplexity', 'latency:a100', ..."""
        return list(self.surrogates)

    def metrics(self) -> list[str]:
        """The metric names (without devices)."""
        return sorted({split_key(k)[0] for k in self.surrogates})

    def devices(self, metric: str | None = None) -> list[str]:
        """The devices of `metric` (all devices if None); [] for device-independent metrics."""
        if metric is not None and metric not in self.metrics():
            raise ValueError(f"unknown metric {metric!r}; this benchmark has {self.metrics()}")
        return sorted({d for k in self.surrogates for m, d in [split_key(k)]
                       if d and (metric is None or m == metric)})

    def spec(self, key: str) -> SurrogateSpec:
        return self.surrogates[self.resolve([key])[0]].spec

    def resolve(self, metrics: Sequence[str] | None, devices: Sequence[str] | None = None
                ) -> list[str]:
        """Expand metric names x devices (or full keys) into surrogate keys, checking each;
        `metrics=None` means every metric."""
        if metrics is None:
            metrics = self.metrics()
        if isinstance(metrics, str):
            metrics = [metrics]
        keys = []
        for name in metrics:
            metric, device = split_key(name)
            if metric not in self.metrics():
                raise ValueError(f"unknown metric {metric!r}; this benchmark has {self.metrics()}")
            have = self.devices(metric)
            if device:
                wanted = [device]
            elif not have:
                wanted = [""]
            else:
                wanted = list(devices) if devices else have
            for dev in wanted:
                if dev not in have and (have or dev):
                    raise ValueError(f"unknown device {dev!r} for {metric}; it has {have}")
                key = metric_key(metric, dev)
                if key not in keys:
                    keys.append(key)
        return keys

    # ------------------------------------------------------------------ queries
    def query(self, archs: Arch, metrics: Sequence[str] | None = None,
              devices: Sequence[str] | None = None,
              mode: str = "median", key: jax.Array | None = None, level: float = 0.9,
              ground_truth: bool = False) -> dict[str, jax.Array]:
        """Predict `metrics` for a batch of archs in one jit-compiled call.

        Args:
            archs: a batch (N,) of archs of this benchmark's space.
            metrics: metric names ('latency', expanded over `devices`) or keys ('latency:a100');
                None: all.
            devices: devices for device-dependent metric names (default: all of them).
            mode: 'median' (N,), 'quantiles' (N, Q), 'interval' (N, 2) at central `level`, or
                'sample' (N,) from the calibrated predictive distribution (needs `key`).
            ground_truth: where a measured table has the arch, return the measurement instead
                (median / empirical quantiles / a random repeat) and the prediction elsewhere.

        Returns:
            {key: array} with keys like 'perplexity' and 'latency:a100'.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
        if mode == "sample" and key is None:
            raise ValueError("mode='sample' needs a PRNG key (key=jax.random.key(seed))")
        if ground_truth and mode != "median" and self.measured == "median":
            raise ValueError(f"ground_truth=True with mode={mode!r}: this benchmark keeps one "
                             f"measured median per arch, so ground truth answers mode='median' "
                             f"only (the repeats are in the published HW-GPT-Bench archive)")
        keys = self.resolve(metrics, devices)
        for k in keys:
            self._check_level(k, mode, level)
        archs = self._with_checked_shapes(archs)
        if not archs.batch_shape:
            archs = archs[None]
        fn = self._query_fn(tuple(keys), mode, float(level))
        states = tuple(self.surrogates[k].state for k in keys)
        # Batches of nearby sizes share one program: padded with copies of the first arch,
        # whose answers are dropped (a draw's value depends on its row only, not the size).
        n = len(archs)
        padded = jax.tree.map(lambda x: np.concatenate(
            [x, np.repeat(x[:1], padded_rows(n) - n, axis=0)]), archs)
        values, valid = fn(states, padded, key if key is not None else _unused_key())
        values = first_rows(list(values), n)
        if not bool(valid):
            # The membership test ran inside the query; only a bad batch pays for the host-side
            # check, which names the field, the value and the allowed choices.
            self.space.validate(archs)
            raise ValueError(f"archs are not architectures of the {self.space.scale} space")
        out = dict(zip(keys, values, strict=True))
        if ground_truth:
            out = {k: self._substitute(k, archs, v, mode, level, key) for k, v in out.items()}
        return out

    def query_frame(self, archs: Arch, metrics: Sequence[str] | None = None,
                    devices: Sequence[str] | None = None, mode: str = "median",
                    key: jax.Array | None = None, level: float = 0.9,
                    ground_truth: bool = False) -> pd.DataFrame:
        """`query` as a DataFrame: `arch_id` plus one column per key (and per level/end)."""
        result = self.query(archs, metrics, devices, mode, key, level, ground_truth)
        archs = self._with_checked_shapes(archs)  # `query` has checked the values
        columns: dict[str, Any] = {"arch_id": self.space.arch_ids(archs)}
        for k, values in result.items():
            values = np.asarray(values)
            if mode == "quantiles":
                for j, tau in enumerate(self.surrogates[k].spec.levels):
                    columns[f"{k}@q{tau:g}"] = values[:, j]
            elif mode == "interval":
                columns[f"{k}@lo{level:g}"], columns[f"{k}@hi{level:g}"] = values.T
            else:
                columns[k] = values
            if ground_truth and k in self.tables:
                columns[f"{k}@measured"] = self.tables[k].find(archs)[1]
        frame = pd.DataFrame(columns)
        frame.attrs.update({"scale": self.space.scale, "mode": mode, "units": {
            k: self.surrogates[k].spec.unit for k in result}})
        return frame

    def objective_fn(self, metrics: Sequence[str], mode: str = "median"
                     ) -> Callable[[Arch, jax.Array], jax.Array]:
        """A pure, jit-able fn(arch, key) -> (N, M) of the metrics (keys like 'latency:a100').

        `arch` is a batch of this space (jax arrays; not validated inside jit); `key` is used
        only by mode='sample' (one draw per arch and metric).
        """
        if mode not in ("median", "sample"):
            raise ValueError(f"objective mode {mode!r}; expected 'median' or 'sample'")
        keys = self.resolve(metrics)
        specs = tuple(self.surrogates[k].spec for k in keys)
        states = tuple(self.surrogates[k].state for k in keys)
        space = self.space

        def objectives(arch: Arch, key: jax.Array) -> jax.Array:
            # Under the caller's jit the closed-over weights become HLO constants, for which
            # XLA:CPU picks slower dots; the barrier keeps them operands.
            weights = jax.lax.optimization_barrier(states)
            values = _predict_all(specs, weights, space, arch, mode, key, 0.9)
            return jnp.stack(values, axis=-1)

        return objectives

    # ------------------------------------------------------------------ ground truth
    def _substitute(self, k: str, archs: Arch, predicted: jax.Array, mode: str, level: float,
                    key: jax.Array | None) -> jax.Array:
        if k not in self.tables:
            return predicted
        observations, found = self.tables[k].find(archs)
        if not found.any():
            return predicted
        obs = observations[found]
        if mode == "median":
            measured = np.nanmedian(obs, axis=1)
        elif mode == "quantiles":
            measured = np.nanquantile(obs, self.surrogates[k].spec.levels, axis=1).T
        elif mode == "interval":
            measured = np.nanquantile(obs, [(1 - level) / 2, (1 + level) / 2], axis=1).T
        else:
            counts = np.sum(~np.isnan(obs), axis=1)
            pick = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), counts.shape, 0,
                                                 counts))
            measured = np.take_along_axis(_nan_last(obs), pick[:, None], axis=1)[:, 0]
        values = np.array(predicted)
        values[found] = measured
        return jnp.asarray(values)

    # ------------------------------------------------------------------ internals
    def _with_checked_shapes(self, archs: Arch) -> Arch:
        """NumPy int32/bool fields with this space's shapes; values are checked in the query."""
        lmax = self.space.max_layers
        if isinstance(archs, Arch):
            archs = archs.to_numpy()
            shape = archs.batch_shape
            expected = {"n_layer": shape, "bias": shape, "n_head": shape + (lmax,),
                        "mlp_ratio": shape + (lmax,)}
            if all(np.shape(getattr(archs, name)) == want for name, want in expected.items()):
                return archs
        self.space.validate(archs)  # raises, naming the field and the expected shape
        raise ValueError(f"expected an Arch batch of the {self.space.scale} space")

    def _check_level(self, key: str, mode: str, level: float) -> None:
        central = self.surrogates[key].spec.central_levels
        if mode == "interval" and not any(abs(level - c) < 1e-6 for c in central):
            raise ValueError(f"level={level} is not calibrated for {key}; calibrated levels: "
                             f"{list(central)}")

    @property
    def compiles(self) -> int:
        """Query programs compiled so far (one per metric set, mode and batch-size bucket)."""
        return sum(fn._cache_size() for fn in self._compiled.values())

    def _query_fn(self, keys: tuple[str, ...], mode: str, level: float) -> Callable:
        cache_key = (keys, mode, level)
        if cache_key not in self._compiled:
            specs = tuple(self.surrogates[k].spec for k in keys)
            space = self.space

            @jax.jit
            def run(states, archs, key):
                values = _predict_all(specs, states, space, archs, mode, key, level)
                return values, jnp.all(is_valid(space, archs))

            self._compiled[cache_key] = run
        return self._compiled[cache_key]

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write the benchmark folder atomically (see the module docstring)."""
        return save_benchmark(self.surrogates.values(), [t.data for t in self.tables.values()],
                              Path(directory), overwrite)

    @classmethod
    def load(cls, directory: str | Path, scale: str | None = None) -> Benchmark:
        """Read a folder written by `save`; raises ValueError if it is corrupt, or if `scale`
        is given and the surrogates are of another scale."""
        surrogates, tables = load_benchmark(Path(directory))
        found = surrogates[0].spec.scale
        if scale is not None and found != scale:
            raise ValueError(f"{directory} holds surrogates of scale {found!r}, expected "
                             f"{scale!r}")
        return cls(surrogates, tables)


@functools.cache
def _unused_key() -> jax.Array:
    """The key passed to queries that draw nothing (made once: a key costs a dispatch)."""
    return jax.random.key(0)


def _predict_all(specs: Sequence[SurrogateSpec], states: Sequence[dict], space: SearchSpace,
                 archs: Arch, mode: str, key: jax.Array, level: float,
                 chunk: int = QUERY_CHUNK) -> list[jax.Array]:
    """Every surrogate, each encoding computed once per chunk; distinct keys per surrogate for
    sampling. Encoding + MLPs run in chunks of `chunk` archs, calibration on the whole batch."""
    encodings = sorted({s.encoding for s in specs})

    def forward(part: Arch) -> list[jax.Array]:
        features = {name: encode(part, space, name) for name in encodings}
        return [base_quantiles(spec, state, features[spec.encoding])
                for spec, state in zip(specs, states, strict=True)]

    bases = _map_in_chunks(forward, archs, chunk)
    return [predict_from_base(spec, state, base, mode, jax.random.fold_in(key, i), level)
            for i, (spec, state, base) in enumerate(zip(specs, states, bases, strict=True))]


def _map_in_chunks(fn: Callable[[Arch], Any], archs: Arch, chunk: int) -> Any:
    """fn over the flattened batch in chunks of `chunk` rows (one `lax.map`), reshaped back.

    The last chunk is padded with zeros (a valid input to every encoding) and cut off.
    """
    batch = jnp.shape(archs.embed_dim)
    flat = jax.tree.map(lambda x: jnp.reshape(x, (-1, *jnp.shape(x)[len(batch):])), archs)
    n = flat.embed_dim.shape[0]
    if n <= chunk:
        out = fn(flat)
    else:
        pad = -n % chunk
        blocks = jax.tree.map(
            lambda x: jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(
                (-1, chunk, *x.shape[1:])), flat)
        out = jax.tree.map(lambda y: y.reshape((-1, *y.shape[2:]))[:n], jax.lax.map(fn, blocks))
    return jax.tree.map(lambda y: y.reshape((*batch, *y.shape[1:])), out)


def _config_for(item: MetricData, configs: Any) -> SurrogateConfig:
    if isinstance(configs, SurrogateConfig):
        return configs
    configs = configs or {}
    group = "quality" if item.metric in QUALITY_METRICS else "hardware"
    for name in (item.key, item.metric, group):
        if name in configs:
            return configs[name]
    return default_config(item.metric)


def _nan_last(obs: np.ndarray) -> np.ndarray:
    """Rows with their valid entries first (so index < count picks a valid repeat)."""
    order = np.argsort(np.isnan(obs), axis=1, kind="stable")
    return np.take_along_axis(obs, order, axis=1)


@dataclasses.dataclass(frozen=True)
class _Table:
    """Measured observations indexed by the arch's genes, for ground-truth lookups."""

    data: MetricData
    index: dict[bytes, int]

    @classmethod
    def build(cls, data: MetricData) -> _Table:
        genes = get_space(data.scale).genes(data.archs).astype(np.int8)
        return cls(data, {row.tobytes(): i for i, row in enumerate(genes)})

    def find(self, archs: Arch) -> tuple[np.ndarray, np.ndarray]:
        genes = get_space(self.data.scale).genes(archs).astype(np.int8)
        rows = np.array([self.index.get(g.tobytes(), -1) for g in genes], np.int64)
        found = rows >= 0
        obs = np.full((len(rows), self.data.observations.shape[1]), np.nan)
        obs[found] = self.data.observations[rows[found]]
        return obs, found
