"""`hwgpt search`: multi-objective architecture search on surrogate or analytic objectives.

    hwgpt search --surrogates DIR --algorithm nsga2 --objectives perplexity,latency:a100 \
        --budget 10000 --seeds 5 --constraint latency:a100<=20 --out runs/nsga2
    hwgpt search --preset paper_2obj_energy --published s --out runs/x

    hwgpt search --checkpoint runs/demo/train --objectives supernet_perplexity,params \
        --val-windows 8 --export 4 --out runs/supernet

`--algorithm all` runs every registered algorithm at the same budget. `--published s|m|l`
searches the packaged published HW-GPT-Bench benchmark instead of a `hwgpt fit` folder.
Without either, only the analytic objectives `params` and `flops` exist (on `--scale`).
`--checkpoint RUN` (a `hwgpt train` run folder) adds `supernet_perplexity`: the supernet's
own perplexity on `--val-windows` validation windows of the run, computed in the search's jit
call; its scale must be the space's. `--export K` then writes K archs of the Pareto set as
standalone dense checkpoints into <out>/export/ (see `hwgpt export`).
A preset is a TOML file of `hwgpt_jax.stages.search.SearchConfig` keys (e.g. `algorithms`,
`objectives`, `budget`, `population_size`); options given on the command line win.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hwgpt_jax.base.config import load_config, replace_config
from hwgpt_jax.cli import CliError
from hwgpt_jax.presets import resolve_preset

if TYPE_CHECKING:
    from hwgpt_jax.stages.search import SearchConfig

# command-line option -> SearchConfig key, where they differ
KEYS = {"algorithm": "algorithms", "population": "population_size",
        "model_batch": "model_batch_size", "constraint": "constraints",
        "strategy_param": "strategy_params"}
NOT_CONFIG = ("func", "command", "preset", "out", "overwrite")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="multi-objective architecture search")
    parser.add_argument("--preset", help="TOML file of option defaults, or a preset name "
                        "(paper_2obj_energy, paper_3obj, smoke_analytic)")
    parser.add_argument("--surrogates", help="benchmark folder written by `hwgpt fit`")
    parser.add_argument("--published", choices=("s", "m", "l"),
                        help="the published HW-GPT-Bench benchmark of this scale (packaged)")
    parser.add_argument("--algorithm", help="an algorithm name, a comma list, or 'all' "
                                            "(default nsga2); "
                                            "evosax:<Strategy> runs any evosax strategy, "
                                            "e.g. evosax:CMA_ES")
    parser.add_argument("--shaping",
                        help="multi-objective fitness shaping of evosax:<Strategy> algorithms: "
                             "nsga2, hv or chebyshev (default nsga2)")
    parser.add_argument("--strategy-param", action="append", metavar="NAME=VALUE",
                        help="a field of the evosax strategy's Params, e.g. std_min=0.25 for "
                             "evosax:MR15_GA; repeatable")
    parser.add_argument("--genotype", choices=("unit", "index"),
                        help="what evosax:<Strategy> algorithms search: one real per gene in "
                             "the unit box of choices (unit, default) or the choice index "
                             "itself, rounded (index: steps are in choices)")
    parser.add_argument("--objectives", help="comma list, e.g. perplexity,latency:a100")
    parser.add_argument("--budget", type=int, help="evaluations per run")
    parser.add_argument("--seeds", type=int, help="runs per algorithm (seeds 0..K-1)")
    parser.add_argument("--constraint", action="append",
                        help="METRIC<=VALUE or METRIC>=VALUE; repeatable")
    parser.add_argument("--scale", help="search space without --surrogates (default tiny)")
    parser.add_argument("--population", type=int,
                        help="population / batch size of the population-based algorithms")
    parser.add_argument("--model-batch", type=int,
                        help="candidates per step of RSBO/LSBO/EHVI (default 8)")
    parser.add_argument("--mode", choices=("median", "sample"),
                        help="surrogate predictions: median, or sampled (noisy hardware)")
    parser.add_argument("--ref-point", type=float,
                        help="hypervolume reference in normalized objectives (default 1.0)")
    parser.add_argument("--checkpoint",
                        help="`hwgpt train` run folder: enables the supernet_perplexity "
                             "objective and --export")
    parser.add_argument("--val-windows", type=int,
                        help="validation windows of the run for supernet_perplexity "
                             "(default 8)")
    parser.add_argument("--export", type=int, metavar="K",
                        help="export K Pareto archs as dense checkpoints into <out>/export "
                             "(needs --checkpoint)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace the files of an existing --out")
    parser.set_defaults(func=_search)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The stage config: the preset (if any), then every option given on the command line."""
    from hwgpt_jax.stages.search import SearchConfig

    for flag, low in (("val_windows", 1), ("export", 0)):
        value = getattr(args, flag)
        if value is not None and value < low:
            raise CliError(f"--{flag.replace('_', '-')} {value!r}: expected an integer >= {low}")
    preset = load_config(SearchConfig, resolve_preset("search", args.preset)
                         if args.preset else None)
    if args.export and not (args.checkpoint or preset.checkpoint):
        raise CliError("--export needs --checkpoint (the supernet whose weights are exported)")
    changes = {KEYS.get(k, k): v for k, v in vars(args).items() if k not in NOT_CONFIG}
    config = replace_config(preset, **changes)
    if not config.objectives:
        raise CliError("--objectives is required (on the command line or in a preset)")
    return config


def _search(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hwgpt_jax.base.files import check_output
    from hwgpt_jax.stages import search as stage

    if not args.out:
        raise CliError("--out is required")
    config = config_from_args(args)
    check_output(args.out, overwrite=bool(args.overwrite), folder=True)
    current: dict = {}  # one bar at a time: (algorithm, seed) -> tqdm

    def progress(name: str, seed: int, done: int) -> None:
        if (name, seed) not in current:
            close(current)
            current[(name, seed)] = tqdm(total=config.budget, desc=f"{name} seed {seed}",
                                         file=sys.stderr)
        bar = current[(name, seed)]
        bar.update(done - bar.n)

    exports: list = []

    def on_export(_) -> None:
        if not exports:
            close(current)
            exports.append(tqdm(total=config.export, desc="exporting", unit="model",
                                file=sys.stderr))
        exports[0].update(1)

    try:
        result = stage.run(config, args.out, progress=progress, on_export=on_export)
    finally:
        close(current)
        for bar in exports:
            bar.close()
    for name, row in result["hypervolume"].items():
        print(f"{name:>26s}: final hypervolume {row['final_hypervolume_mean']:.4f} "
              f"+- {row['final_hypervolume_std']:.4f} over {config.seeds} seed(s)"
              + (f" (note: {row['note']})" if "note" in row else ""))
    print(f"wrote {len(result['files'])} files to {args.out}")
    if result["all_infeasible"]:
        raise CliError(result["infeasible"][0])
    if result["exported"]:
        index = f"{args.out}/export/index.json"
        print(f"exported {len(result['exported'])} dense model(s) to {args.out}/export "
              f"(index: {index})")
    return 0


def close(bars: dict) -> None:
    """Close and forget every open progress bar."""
    for bar in bars.values():
        bar.close()
    bars.clear()
