"""`hwgpt fit`: fit surrogates on measured tables or the published arrays, save a folder
(the stage: `hwgpt_jax.stages.fit`)."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from hwgpt_jax.base.config import load_config
from hwgpt_jax.base.files import check_output
from hwgpt_jax.stages import fit as stage
from hwgpt_jax.stages.fit import DEFAULT_METRICS


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


def _fit(args: argparse.Namespace) -> int:
    out = check_output(args.out, overwrite=args.overwrite, folder=True)
    config = load_config(stage.FitConfig, None, data=tuple(args.data),
                         metrics=tuple(args.metrics or ()), presets=args.config,
                         seed=args.seed, max_steps=args.max_steps,
                         keep_tables=not args.no_tables)
    stage.surrogate_configs(config)  # a bad preset or override fails before reading data
    bars: list[tqdm] = []  # opened at the first fitted key: a refused input prints no bar

    def progress(key: str) -> None:
        if not bars:
            bars.append(tqdm(desc="fit", unit="surrogate"))
        bars[0].set_postfix_str(key)
        bars[0].update(1)

    try:  # `out` was checked above: an existing one is replaceable
        summary = stage.run(config, out, overwrite=args.overwrite or out.is_dir(),
                            progress=progress)
    finally:
        for bar in bars:
            bar.close()
    print(f"{'key':<26} {'unit':<5} {'archs':>6} {'obs':>7} {'steps':>5} {'E90':>8}")
    for key, row in summary["surrogates"].items():
        e90 = f"{row['e90']:>8.4f}" if "e90" in row else f"{'-':>8}"
        print(f"{key:<26} {row['unit']:<5} {row['archs']:>6} {row['observations']:>7} "
              f"{row['best_step']:>5} {e90}")
    print(f"saved {len(summary['surrogates'])} surrogates ({summary['scale']}) -> {out}")
    return 0
