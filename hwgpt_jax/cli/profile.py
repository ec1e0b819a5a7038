"""`hwgpt profile`: latency, energy, memory, FLOPs and params of dense sub-networks on this
device, into a long-form parquet table (layout: `hwgpt_jax.measure.profiler`;
resumable parts: `hwgpt_jax.stages.profile`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from hwgpt_jax.base.config import load_config
from hwgpt_jax.base.files import check_output
from hwgpt_jax.cli import CliError
from hwgpt_jax.measure.profiler import DTYPES
from hwgpt_jax.presets import resolve_preset
from hwgpt_jax.space.arch import SPACES, get_space
from hwgpt_jax.stages import profile as stage


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile", help="profile dense sub-networks on this device (latency, energy, memory)")
    parser.add_argument("--scale", required=True, choices=list(SPACES))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--archs", help="arch file from `hwgpt space sample` (JSON or CSV)")
    source.add_argument("-n", type=int, help="profile n unique archs sampled with --seed")
    parser.add_argument("--seed", type=int, default=0, help="arch sampling seed (with -n)")
    parser.add_argument("--config", help="TOML file or preset name (tiny, s, m, l); "
                                          "flags override it")
    parser.add_argument("--batch", type=int, help="sequences per forward (default 1)")
    parser.add_argument("--seq", type=int, help="tokens per sequence (default 256)")
    parser.add_argument("--reps", type=int, help="timed observations per arch (default 10)")
    parser.add_argument("--warmup", type=int, help="untimed calls before timing (default 3)")
    parser.add_argument("--dtype", choices=DTYPES, help="compute dtype (default float32)")
    parser.add_argument("--init-seed", type=int, help="seed of the random weights (default 0)")
    parser.add_argument("--out", required=True, help="output parquet file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> stage.ProfileConfig:
    """The stage config: the --config preset (if any), then the flags that were given."""
    changes = {"batch": args.batch, "seq": args.seq, "reps": args.reps, "warmup": args.warmup,
               "dtype": args.dtype, "seed": args.init_seed, "scale": args.scale,
               "archs": args.archs, "n": args.n, "sample_seed": args.seed}
    path = resolve_preset("profile", args.config) if args.config else None
    return load_config(stage.ProfileConfig, path, **changes)


def run(args: argparse.Namespace) -> int:
    check_output(args.out, overwrite=args.overwrite)  # fail before any work
    if args.n is not None and args.n < 1:
        raise CliError(f"-n {args.n}: expected a positive number of archs")
    config = config_from_args(args)
    space = get_space(config.scale)
    total = len(set(space.arch_ids(stage.choose(config))))
    bars: list[tqdm] = []  # opened at the first arch: a refused run (lock) prints no bar

    def on_arch(arch_id: str, latency_ms: float | None) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="profiling", unit="arch"))
        if latency_ms is not None:
            bars[0].set_postfix(last=f"{latency_ms:.2f} ms")
        bars[0].update(1)

    try:
        summary = stage.run(config, args.out, on_arch=on_arch)
    finally:
        for bar in bars:
            bar.close()
    note = " (resumed)" if summary["resumed"] else ""
    print(f"profiled {summary['archs']} archs on {summary['device']}{note}: {summary['rows']} "
          f"rows, latency median {summary['latency_median_ms']:.2f} ms (batch {config.batch}, "
          f"seq {config.seq}, {config.dtype}) -> {Path(args.out)}")
    if summary["duplicates"]:
        print(f"note: {summary['duplicates']} duplicate archs in the input were profiled once")
    return 0
