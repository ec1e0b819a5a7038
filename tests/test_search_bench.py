"""The search adapter for the surrogate `Benchmark` (hwgpt_jax/surrogates/benchmark.py), on a tiny
fitted one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from hwgpt_jax.cli import main
from hwgpt_jax.search.objectives import build_problem
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.space.costs import forward_flops, param_count
from hwgpt_jax.surrogates import MetricData, SurrogateConfig
from hwgpt_jax.surrogates.benchmark import Benchmark

SPACE = get_space("tiny")


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    archs = SPACE.sample_unique(jax.random.key(0), 600)
    rng = np.random.default_rng(0)
    flops = forward_flops(archs, SPACE, 1, 256).astype(np.float64)[:, None]
    params = param_count(archs, SPACE).astype(np.float64)
    data = [
        MetricData("tiny", "perplexity", "", "", archs,
                   20 + 400 / np.sqrt(params / 1e5) + 0.1 * rng.standard_normal(600)),
        MetricData("tiny", "latency", "cpu", "ms", archs,
                   1e-8 * flops * np.exp(0.05 * rng.standard_normal((600, 5)))),
    ]
    # Fixed families (model selection has its own tests): the adapter is under test here.
    fast = SurrogateConfig(hidden=(16, 16), max_steps=60, eval_every=30, batch_size=256,
                           family="linear")
    quality = SurrogateConfig(kind="mlp", hidden=(16, 16), max_steps=60, eval_every=30,
                              batch_size=256, family="mlp", calibration="split")
    return Benchmark.fit(data, {"perplexity": quality, "hardware": fast})


def test_problem_columns_equal_benchmark_queries_and_analytic_costs(bench):
    problem = build_problem(SPACE, ["perplexity", "params"], ["latency:cpu<=5"], bench=bench)
    assert problem.metric_names == ("perplexity", "params", "latency:cpu")
    archs = SPACE.sample(jax.random.key(1), 32)
    values = np.asarray(jax.jit(problem.metrics_fn)(archs, jax.random.key(0)))
    query = bench.query(archs, ["perplexity", "latency:cpu"], mode="median")
    np.testing.assert_allclose(values[:, 0], np.asarray(query["perplexity"]), rtol=1e-5)
    np.testing.assert_allclose(values[:, 2], np.asarray(query["latency:cpu"]), rtol=1e-5)
    np.testing.assert_allclose(values[:, 1], np.asarray(param_count(archs, SPACE)), rtol=1e-6)
    objectives, margins = problem.evaluate(SPACE.genes(archs.to_numpy()), jax.random.key(0))
    np.testing.assert_allclose(np.asarray(margins[:, 0]), (values[:, 2] - 5.0) / 5.0, rtol=1e-5)


def test_sample_mode_draws_with_the_key_and_median_does_not(bench):
    archs = SPACE.sample(jax.random.key(2), 16)
    sample = build_problem(SPACE, ["latency:cpu", "params"], bench=bench, mode="sample")
    median = build_problem(SPACE, ["latency:cpu", "params"], bench=bench, mode="median")
    first = np.asarray(sample.metrics_fn(archs, jax.random.key(0)))
    second = np.asarray(sample.metrics_fn(archs, jax.random.key(1)))
    assert not np.allclose(first[:, 0], second[:, 0])
    np.testing.assert_array_equal(np.asarray(median.metrics_fn(archs, jax.random.key(0))),
                                  np.asarray(median.metrics_fn(archs, jax.random.key(1))))


def test_unknown_metric_or_device_is_rejected(bench):
    with pytest.raises(ValueError, match="unknown device 'a100'"):
        build_problem(SPACE, ["perplexity", "latency:a100"], bench=bench)
    with pytest.raises(ValueError, match="unknown metric 'energy'"):
        build_problem(SPACE, ["perplexity", "energy:cpu"], bench=bench)


def test_cli_search_on_saved_surrogates_reports_every_metric(bench, tmp_path):
    folder = bench.save(tmp_path / "surrogates")
    out = tmp_path / "run"
    code = main(["search", "--surrogates", str(folder), "--algorithm", "nsga2",
                 "--objectives", "perplexity,params", "--budget", "128", "--population", "64",
                 "--out", str(out)])
    assert code == 0
    pareto = pd.read_parquet(out / "pareto.parquet")
    assert {"perplexity", "params", "latency:cpu"} <= set(pareto.columns)
    archs = SPACE.from_ids(pareto["arch_id"].tolist())
    want = bench.query(jax.tree.map(jnp.asarray, archs), ["latency:cpu"])["latency:cpu"]
    np.testing.assert_allclose(pareto["latency:cpu"].to_numpy(), np.asarray(want), rtol=1e-5)
