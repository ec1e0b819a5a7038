"""HW-GPT-Bench's own API (`from hwgpt.api import HWGPT`) on the packaged published benchmark.

A migration aid: `HWGPT(search_space="s")`, `sample_arch()`, `set_arch(config)` and
`query(metric=None, device=None, predictor="mlp")` take and return what HW-GPT-Bench's do
(its `sample_*` config dicts; metric names `perplexity`, `accuracy`, `latencies`, `energies`,
`float16_memory`, `bfloat16_memory`, `flops`, `params`; results nested as
`{"latencies": {device: value}, "perplexity": value, ...}`). Every call is answered by
`Benchmark.published(scale)`; `query_many(configs)` answers a list of configs in one batched
call, with arrays in place of floats. Differences that remain are listed in the README.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from hwgpt_jax.space.arch import Arch
from hwgpt_jax.space.published_costs import published_costs
from hwgpt_jax.surrogates.benchmark import Benchmark
from hwgpt_jax.surrogates.published import DEVICES

# HW-GPT-Bench metric name -> (our metric, its devices; None: device independent).
DEVICE_METRICS = {"latencies": ("latency", DEVICES), "energies": ("energy", DEVICES)}
FIXED_METRICS = {"perplexity": "perplexity", "accuracy": "accuracy",
                 "float16_memory": "memory:rtx2080", "bfloat16_memory": "memory:a100"}
# Exact closed-form counts of the profiled models (hwgpt_jax.space.published_costs), not surrogates.
COST_METRICS = ("flops", "params")
METRICS = ("perplexity", "accuracy", "latencies", "energies", "float16_memory",
           "bfloat16_memory", *COST_METRICS)
# HW-GPT-Bench's predictor names -> query mode: its MLP gives one value per arch, its
# conformal quantile models the quantiles; ours are the selected, calibrated surrogates.
PREDICTORS = {"mlp": "median", "conformal_quantile": "quantiles"}


class HWGPT:
    """HW-GPT-Bench's query API, backed by the packaged published benchmark."""

    def __init__(self, search_space: str = "s", use_supernet_surrogate: bool = False,
                 base_path: str | None = None, seed: int | None = None) -> None:
        if use_supernet_surrogate:
            raise ValueError("use_supernet_surrogate=True: no published supernet checkpoint "
                             "ships with hwgpt-jax; train one (hwgpt train) and search it with "
                             "hwgpt search --checkpoint RUN --objectives supernet_perplexity")
        del base_path  # HW-GPT-Bench's data folder: everything here ships with the package
        self.benchmark = Benchmark.published(search_space)
        self.space = self.benchmark.space
        self.config: dict[str, Any] | None = None
        self._arch: Arch | None = None
        self._rng = np.random.default_rng(seed)

    def sample_arch(self) -> dict[str, Any]:
        """A uniformly random arch of the space as a HW-GPT-Bench config dict."""
        key = jax.random.key(int(self._rng.integers(2**31)))
        return self.space.to_hwgpt(self.space.sample(key, 1))[0]

    def set_arch(self, config: Mapping[str, Any]) -> None:
        """Set the arch that `query` answers for (a HW-GPT-Bench `sample_*` config dict)."""
        self._arch = self._archs([config])
        self.config = dict(config)

    def query(self, metric: str | None = None, device: str | None = None,
              predictor: str = "mlp") -> dict[str, Any]:
        """Metrics of the arch set by `set_arch`, nested as HW-GPT-Bench nests them."""
        if self._arch is None:
            raise ValueError("no arch is set: call set_arch(config) (e.g. with sample_arch()) "
                             "before query()")
        results = self._query(self._arch, metric, device, predictor)
        return _map_leaves(results, lambda v: np.asarray(v)[0].tolist())

    def query_many(self, configs: Sequence[Mapping[str, Any]], metric: str | None = None,
                   device: str | None = None, predictor: str = "mlp") -> dict[str, Any]:
        """`query` for N configs in one batched call: the same nesting, arrays of length N."""
        return _map_leaves(self._query(self._archs(configs), metric, device, predictor),
                           np.asarray)

    def _archs(self, configs: Sequence[Mapping[str, Any]]) -> Arch:
        if isinstance(configs, Mapping) or not isinstance(configs, Sequence) or not configs:
            raise ValueError("expected a non-empty list of HW-GPT-Bench config dicts")
        return self.space.from_hwgpt(list(configs))

    def _query(self, archs: Arch, metric: str | None, device: str | None,
               predictor: str) -> dict[str, Any]:
        if predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {predictor!r}; expected one of "
                             f"{list(PREDICTORS)}")
        names = METRICS if metric is None else (metric,)
        if metric is not None and metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
        if device is not None and device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; expected one of {list(DEVICES)}")
        wanted: dict[str, str | tuple[str, str]] = {}
        for name in names:
            if name in COST_METRICS:
                continue
            if name in FIXED_METRICS:
                wanted[FIXED_METRICS[name]] = name
                continue
            base, devices = DEVICE_METRICS[name]
            for dev in devices if device is None else (device,):
                wanted[f"{base}:{dev}"] = (name, dev)
        values = self.benchmark.query(archs, list(wanted), mode=PREDICTORS[predictor]) \
            if wanted else {}
        results: dict[str, Any] = {}
        for key, where in wanted.items():
            if isinstance(where, str):
                results[where] = values[key]
            else:
                results.setdefault(where[0], {})[where[1]] = values[key]
        costs = [name for name in names if name in COST_METRICS]
        if costs:
            counts = published_costs(archs.to_numpy(), self.space)
            results |= {name: counts[name] for name in costs}
        return results


def _map_leaves(tree: dict[str, Any], fn: Any) -> dict[str, Any]:
    return {k: _map_leaves(v, fn) if isinstance(v, dict) else fn(v) for k, v in tree.items()}
