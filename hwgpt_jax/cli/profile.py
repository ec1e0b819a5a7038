"""`hwgpt profile`: latency, energy, memory, FLOPs and params of dense sub-networks on this
device, into a long-form parquet table (layout: `hwgpt_jax.measure.profiler`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
from tqdm import tqdm

from hwgpt_jax.base.files import check_output
from hwgpt_jax.cli import CliError
from hwgpt_jax.measure.profiler import (
    DTYPES,
    ProfileConfig,
    check_config,
    parts_dir,
    profile_archs,
)
from hwgpt_jax.presets import resolve_preset
from hwgpt_jax.space.arch import SPACES, get_space
from hwgpt_jax.space.arch_files import read_arch_file


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


def config_from_args(args: argparse.Namespace) -> ProfileConfig:
    overrides = {"batch": args.batch, "seq": args.seq, "reps": args.reps,
                 "warmup": args.warmup, "dtype": args.dtype, "seed": args.init_seed}
    if args.config:
        return ProfileConfig.from_toml(resolve_preset("profile", args.config), **overrides)
    return ProfileConfig(**{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    space = get_space(args.scale)
    check_output(args.out, overwrite=args.overwrite)  # fail before any work
    config = config_from_args(args)
    if args.archs:
        archs = read_arch_file(args.archs, space)[1]
    else:
        if args.n < 1:
            raise CliError(f"-n {args.n}: expected a positive number of archs")
        archs = space.sample_unique(jax.random.key(args.seed), args.n)
    check_config(space, config)
    n_unique = len(set(space.arch_ids(archs)))
    resumed = parts_dir(args.out).is_dir()
    bars: list[tqdm] = []  # opened at the first arch: a refused run (lock) prints no bar

    def on_arch(arch_id: str, latency_ms: float | None) -> None:
        if not bars:
            bars.append(tqdm(total=n_unique, desc="profiling", unit="arch"))
        if latency_ms is not None:
            bars[0].set_postfix(last=f"{latency_ms:.2f} ms")
        bars[0].update(1)

    try:
        table = profile_archs(archs, space, config, args.out, on_arch=on_arch)
    finally:
        for bar in bars:
            bar.close()
    latency = table.loc[table["metric"] == "latency", "value"]
    device = table["device"].iloc[0]
    note = " (resumed)" if resumed else ""
    print(f"profiled {n_unique} archs on {device}{note}: {len(table)} rows, latency median "
          f"{latency.median():.2f} ms (batch {config.batch}, seq {config.seq}, {config.dtype}) "
          f"-> {Path(args.out)}")
    if len(archs) > n_unique:
        print(f"note: {len(archs) - n_unique} duplicate archs in the input were profiled once")
    return 0
