"""`hwgpt fit`: fit surrogates on measured tables or the published arrays, save a folder."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from hwgpt_jax.base.files import check_output, read_parquet_checked
from hwgpt_jax.cli import CliError
from hwgpt_jax.presets import resolve_preset
from hwgpt_jax.surrogates import MetricData, SurrogateConfig, from_table, load_presets
from hwgpt_jax.surrogates.benchmark import Benchmark
from hwgpt_jax.surrogates.fit import default_config
from hwgpt_jax.surrogates.published import load_published

DEFAULT_METRICS = ("perplexity", "accuracy", "latency", "energy", "memory")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fit", help="fit surrogates (quality MLP, quantile MLPs + "
                                               "conformal calibration)")
    parser.add_argument("--data", nargs="+", required=True,
                        help="tables (.parquet/.csv, long form; see hwgpt_jax.surrogates.data) "
                             "or published HW-GPT-Bench .npz archives")
    parser.add_argument("--out", required=True, help="output folder of the surrogates")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help=f"metric names or keys like latency:a100 (default: those of "
                             f"{list(DEFAULT_METRICS)} present)")
    parser.add_argument("--config", default=None,
                        help="TOML presets (tables per key, metric, 'quality', 'hardware'), "
                             "a file or a preset name (default, fast)")
    parser.add_argument("--seed", type=int, default=None, help="override the config seed")
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    parser.add_argument("--no-tables", action="store_true",
                        help="do not store the measurements (no ground_truth queries)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(func=_fit)


def read_data(paths: list[str], metrics: list[str] | None) -> list[MetricData]:
    """Every (metric, device) of every file; a key may appear in one file only."""
    data: dict[str, MetricData] = {}
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise CliError(f"--data file {name!r} does not exist")
        if path.suffix == ".npz":
            items = load_published(path, metrics or ["perplexity", "latency", "energy",
                                                     "memory", "accuracy"])
        elif path.suffix in (".parquet", ".csv"):
            table = read_parquet_checked(path) if path.suffix == ".parquet" else pd.read_csv(path)
            try:
                items = from_table(table, metrics)
            except ValueError as err:
                raise CliError(f"--data {name}: {err}") from None
            if not metrics:
                items = [d for d in items if d.metric in DEFAULT_METRICS]
        else:
            raise CliError(f"--data file {name!r} has suffix {path.suffix!r}; expected .npz, "
                           f".parquet or .csv")
        for item in items:
            if item.key in data:
                raise CliError(f"{item.key} appears in more than one --data file; merge them")
            data[item.key] = item
    if not data:
        raise CliError(f"no metric to fit in {paths} (metrics={metrics})")
    return list(data.values())


def _configs(args: argparse.Namespace) -> dict[str, SurrogateConfig]:
    presets = load_presets(resolve_preset("surrogates", args.config)) if args.config else {
        "quality": default_config("perplexity"), "hardware": default_config("latency")}
    overrides = {k: v for k, v in (("seed", args.seed), ("max_steps", args.max_steps))
                 if v is not None}
    if args.max_steps is not None and args.max_steps < 1:
        raise CliError(f"--max-steps {args.max_steps}: expected a positive integer")
    configs = {}
    for name, config in presets.items():
        config = dataclasses.replace(config, **overrides)
        # Training runs in chunks of eval_every steps (validation between chunks): a smaller
        # max_steps shrinks the chunk, a larger one must be a whole number of chunks.
        if config.max_steps < config.eval_every:
            config = dataclasses.replace(config, eval_every=config.max_steps)
        elif config.max_steps % config.eval_every:
            raise CliError(f"max_steps {config.max_steps} ({name}): expected at most or a "
                           f"multiple of eval_every {config.eval_every} (steps between "
                           f"validations)")
        configs[name] = config
    return configs


def _fit(args: argparse.Namespace) -> int:
    out = check_output(args.out, overwrite=args.overwrite, folder=True)
    data = read_data(args.data, args.metrics)
    configs = _configs(args)
    with tqdm(total=len(data), desc="fit", unit="surrogate") as bar:
        def progress(key: str) -> None:
            bar.set_postfix_str(key)
            bar.update(1)

        bench = Benchmark.fit(data, configs, keep_tables=not args.no_tables, progress=progress)
    bench.save(out, overwrite=args.overwrite or out.is_dir())  # checked: replaceable
    print(f"{'key':<26} {'unit':<5} {'archs':>6} {'obs':>7} {'steps':>5} {'E90':>8}")
    for key, surrogate in bench.surrogates.items():
        spec = surrogate.spec
        e90 = float(surrogate.state["corrections"][spec.central_levels.index(0.9)])
        print(f"{key:<26} {spec.unit:<5} {spec.n_archs:>6} {spec.n_observations:>7} "
              f"{spec.fit_report['best_step']:>5} {e90:>8.4f}")
    print(f"saved {len(bench.surrogates)} surrogates ({bench.space.scale}) -> {out}")
    return 0
