"""`hwgpt evaluate`: perplexity and next-token accuracy of sub-networks with inherited weights
from a trained supernet, into a parquet table (one row per arch; `stages.evaluate.run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from hwgpt_jax.base.files import check_output
from hwgpt_jax.cli import CliError
from hwgpt_jax.stages import evaluate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="perplexity and accuracy of sub-networks of a trained supernet")
    parser.add_argument("--checkpoint", required=True, help="run folder of `hwgpt train`")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--archs", help="arch file from `hwgpt space sample` (JSON or CSV)")
    source.add_argument("-n", type=int, help="evaluate n unique archs sampled with --seed")
    parser.add_argument("--seed", type=int, default=0, help="arch sampling seed (with -n)")
    parser.add_argument("--windows", type=int, default=16,
                        help="validation windows (evenly spaced over the val split)")
    parser.add_argument("--seq", type=int, help="window length (default: training seq_len)")
    parser.add_argument("--batch-archs", type=int, default=8,
                        help="archs evaluated together in one compiled call")
    parser.add_argument("--data-dir", help="token shards (default: the run's data folder)")
    parser.add_argument("--out", required=True, help="output parquet file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("n", "windows", "batch_archs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} {value}: expected a positive integer")
    check_output(args.out, overwrite=args.overwrite)  # fail before loading the checkpoint
    config = evaluate.EvaluateConfig(
        checkpoint=args.checkpoint, archs=args.archs, n=args.n, seed=args.seed,
        windows=args.windows, seq=args.seq, batch_archs=args.batch_archs,
        data_dir=args.data_dir)
    bars: list[tqdm] = []  # opened at the first result, so errors print without a bar

    def on_chunk(done: int) -> None:
        if not bars:
            bars.append(tqdm(desc="evaluating", unit="arch", total=args.n))
        bars[0].update(done)

    try:
        summary = evaluate.run(config, args.out, on_chunk=on_chunk)
    finally:
        for bar in bars:
            bar.close()
    print(f"evaluated {summary['archs']} archs ({summary['scale']}, step "
          f"{summary['checkpoint_step']}, {summary['tokens']} tokens each): perplexity "
          f"{summary['perplexity_min']:.2f}-{summary['perplexity_max']:.2f}, best "
          f"{summary['best']} -> {Path(args.out)}")
    return 0
