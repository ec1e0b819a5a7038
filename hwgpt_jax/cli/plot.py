"""`hwgpt plot`: the paper's figures from existing tables, search results or published data.

    hwgpt plot ecdf --data quality.parquet --metric perplexity --out ecdf.png
    hwgpt plot correlation --data profile.parquet --out corr.png [--metrics a,b,...]
    hwgpt plot search --results runs/demo/search/latency --out plots/
    hwgpt plot calibration --surrogates DIR --data profile.parquet --metric latency:cpu --out q.png
    hwgpt plot published --data ../shared/reference/hwgpt-bench/hwgpt_s_full.npz --out figs/

`--data` takes a quality table (one row per arch), a long-form observation table (`hwgpt
profile`) or a published HW-GPT-Bench npz; every table becomes one row per arch with the median
observation of each metric key (`perplexity`, `latency:a100`, ...).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from hwgpt_jax.base.files import check_output
from hwgpt_jax.cli import CliError
from hwgpt_jax.search.pareto import non_dominated_mask
from hwgpt_jax.space.arch import get_space
from hwgpt_jax.stages import plots
from hwgpt_jax.stages.fit import read_file
from hwgpt_jax.surrogates.data import MetricData


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="figures from tables, results, published data")
    kinds = parser.add_subparsers(dest="kind", required=True)
    ecdf = kinds.add_parser("ecdf", help="ECDF of a metric by architectural choice (Fig. 3)")
    ecdf.add_argument("--data", required=True)
    ecdf.add_argument("--metric", required=True, help="a metric key, e.g. latency:a100")
    ecdf.add_argument("--out", required=True)
    ecdf.set_defaults(func=_checked(_ecdf, folder=False))
    corr = kinds.add_parser("correlation", help="Kendall correlation heatmap (Figs. 8-16)")
    corr.add_argument("--data", required=True)
    corr.add_argument("--metrics", help="comma-separated keys (default: all)")
    corr.add_argument("--out", required=True)
    corr.set_defaults(func=_checked(_correlation, folder=False))
    search = kinds.add_parser("search", help="Pareto fronts and hypervolume of a search run")
    search.add_argument("--results", required=True, help="a `hwgpt search` output folder")
    search.add_argument("--out", required=True, help="folder for the PNGs")
    search.set_defaults(func=_checked(_search, folder=True))
    cal = kinds.add_parser("calibration", help="Q-Q calibration of a quantile surrogate (Fig. 5)")
    cal.add_argument("--surrogates", required=True)
    cal.add_argument("--data", required=True, help="observations to check against")
    cal.add_argument("--metric", required=True, help="a metric key, e.g. latency:cpu")
    cal.add_argument("--out", required=True)
    cal.set_defaults(func=_checked(_calibration, folder=False))
    pub = kinds.add_parser("published", help="the paper's figures from published measurements")
    pub.add_argument("--data", required=True, help="hwgpt_s_full.npz or hwgpt_m_full.npz")
    pub.add_argument("--out", required=True, help="folder for the PNGs")
    pub.set_defaults(func=_checked(_published, folder=True))
    for kind in (ecdf, corr, search, cal, pub):
        kind.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _checked(plot: Callable[[argparse.Namespace], int], folder: bool
             ) -> Callable[[argparse.Namespace], int]:
    """`plot` after the output policy's check of --out (files.check_output)."""

    def run(args: argparse.Namespace) -> int:
        check_output(args.out, overwrite=args.overwrite, folder=folder)
        return plot(args)

    return run


def per_arch_frame(data: list[MetricData]) -> pd.DataFrame:
    """One row per arch: arch columns plus the median observation of every metric key."""
    space = get_space(data[0].scale)
    frames, last, ids = [], None, None
    for item in data:
        # The keys of a published archive have equal archs: their ids are computed once.
        if last is None or not all(np.array_equal(a, b) for a, b in zip(
                jax.tree.leaves(last), jax.tree.leaves(item.archs), strict=True)):
            last, ids = item.archs, space.arch_ids(item.archs)
        with np.errstate(all="ignore"):
            median = np.nanmedian(item.observations, axis=1)
        frames.append(pd.Series(median, index=pd.Index(ids, name="arch_id"), name=item.key)
                      .groupby(level=0).first())
    wide = pd.concat(frames, axis=1)
    records = pd.DataFrame(space.to_records(space.from_ids(wide.index.tolist())),
                           index=wide.index)
    return records.join(wide).reset_index()


def _need(frame: pd.DataFrame, keys: list[str]) -> None:
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        metrics = [c for c in frame.columns if c not in
                   ("arch_id", "embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")]
        raise CliError(f"unknown metric(s) {missing}; the data has {metrics}")


def _ecdf(args: argparse.Namespace) -> int:
    frame = per_arch_frame(read_file(args.data))
    _need(frame, [args.metric])
    print(plots.ecdf_by_choice(frame, args.metric, args.out, log_x=args.metric != "accuracy"))
    return 0


def _metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in
            ("arch_id", "embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")
            and frame[c].notna().sum() >= 3 and frame[c].nunique() > 1]


def _correlation(args: argparse.Namespace) -> int:
    frame = per_arch_frame(read_file(args.data))
    keys = args.metrics.split(",") if args.metrics else _metric_columns(frame)
    _need(frame, keys)
    print(plots.correlation_heatmap(frame, keys, args.out))
    return 0


def _search(args: argparse.Namespace) -> int:
    results = Path(args.results)
    for name in ("pareto.parquet", "hypervolume.parquet", "summary.json"):
        if not (results / name).is_file():
            raise FileNotFoundError(f"{results / name} not found; is {results} a `hwgpt search` "
                                    f"output folder?")
    objectives = json.loads((results / "summary.json").read_text())["objectives"]
    pareto = pd.read_parquet(results / "pareto.parquet")
    pooled = {name: group[objectives[:2]].to_numpy(float)
              for name, group in pareto.groupby("algorithm")}
    fronts = {name: v[np.asarray(non_dominated_mask(v))] for name, v in pooled.items()}
    out = Path(args.out)
    print(plots.pareto_front_plot(fronts, out / "pareto_front.png", labels=objectives[:2]))
    curves = pd.read_parquet(results / "hypervolume.parquet")
    print(plots.hypervolume_plot(
        {name: np.stack([g["hypervolume"].to_numpy() for _, g in group.groupby("seed")])
         for name, group in curves.groupby("algorithm")}, out / "hypervolume.png"))
    return 0


def _calibration(args: argparse.Namespace) -> int:
    from hwgpt_jax.surrogates.benchmark import Benchmark

    bench = Benchmark.load(args.surrogates)
    data = {item.key: item for item in read_file(args.data)}
    if args.metric not in data:
        raise CliError(f"unknown metric {args.metric!r}; the data has {sorted(data)}")
    item = data[args.metric].dropna()
    predicted = bench.query(item.archs, [args.metric], mode="quantiles")[args.metric]
    print(plots.calibration_plot(bench.spec(args.metric).levels, np.asarray(predicted),
                                 item.observations, args.out, title=f"{args.metric} calibration"))
    return 0


def _published(args: argparse.Namespace) -> int:
    frame = per_arch_frame(read_file(args.data))
    out = Path(args.out)
    scale = frame["arch_id"].iloc[0].split(":")[0]
    paths = [plots.ecdf_by_choice(frame.dropna(subset=["perplexity"]), "perplexity",
                                  out / f"{scale}_ecdf_perplexity.png", log_x=True)]
    for key in ("latency:a100", "energy:a100", "latency:cpu_xeon_gold"):
        if key in frame:
            paths.append(plots.ecdf_by_choice(frame, key, out / f"{scale}_ecdf_"
                                              f"{key.replace(':', '_')}.png", log_x=True))
    for metric in ("latency", "energy"):
        keys = [c for c in _metric_columns(frame) if c.startswith(f"{metric}:")]
        paths.append(plots.correlation_heatmap(frame, ["perplexity", *keys],
                                               out / f"{scale}_correlation_{metric}.png",
                                               title=f"Kendall tau: perplexity and {metric} "
                                                     f"across devices ({scale})"))
    for path in paths:
        print(path)
    return 0
