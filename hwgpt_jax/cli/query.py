"""`hwgpt query`: predict metrics of archs (a file, or N sampled) with saved surrogates."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import pandas as pd

from hwgpt_jax.base.files import check_output, write_atomic, write_parquet_atomic
from hwgpt_jax.cli import CliError
from hwgpt_jax.space.arch_files import read_arch_file
from hwgpt_jax.surrogates import MODES
from hwgpt_jax.surrogates.benchmark import Benchmark
from hwgpt_jax.surrogates.packaged import SCALES as PUBLISHED_SCALES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("query", help="predict metrics of archs with surrogates")
    bench = parser.add_mutually_exclusive_group(required=True)
    bench.add_argument("--surrogates", help="folder written by `hwgpt fit`")
    bench.add_argument("--published", choices=PUBLISHED_SCALES,
                       help="the published HW-GPT-Bench benchmark of this scale (packaged)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--archs", help="archs: .json (`hwgpt space sample` output), or a "
                                        ".txt / .csv / .parquet with arch ids (column arch_id); "
                                        "JSON may hold HW-GPT-Bench config dicts")
    source.add_argument("-n", type=int, help="sample N archs uniformly (with --seed)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (and sample mode)")
    parser.add_argument("--metrics", nargs="+", required=True,
                        help="metric names (expanded over --devices) or keys like latency:a100")
    parser.add_argument("--devices", nargs="+", default=None)
    parser.add_argument("--mode", choices=MODES, default="median")
    parser.add_argument("--level", type=float, default=0.9, help="interval level")
    parser.add_argument("--ground-truth", action="store_true",
                        help="return measurements where the saved tables have the arch")
    parser.add_argument("--out", required=True, help="output table (.parquet or .csv)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(func=_query)


def load_benchmark_arg(args: argparse.Namespace) -> Benchmark:
    """The benchmark named by `--published SCALE` or `--surrogates DIR`."""
    if getattr(args, "published", None):
        return Benchmark.published(args.published)
    return Benchmark.load(args.surrogates)


def benchmark_source(args: argparse.Namespace) -> str:
    """How the output's metadata names the benchmark used."""
    if getattr(args, "published", None):
        return f"published:{args.published}"
    return str(Path(args.surrogates).resolve())


def write_table(frame: pd.DataFrame, path: Path, metadata: dict) -> None:
    """Atomic write (temp file in the same folder + rename), metadata kept with the table."""
    if path.suffix not in (".parquet", ".csv"):
        raise CliError(f"--out {str(path)!r} must end in .parquet or .csv")
    if path.suffix == ".parquet":
        write_parquet_atomic(frame, path, metadata)
        return

    def write_csv(tmp: Path) -> None:
        with tmp.open("w") as out:
            out.write(f"# hwgpt {json.dumps(metadata)}\n")
            frame.to_csv(out, index=False)

    write_atomic(path, write_csv)


def _query(args: argparse.Namespace) -> int:
    if Path(args.out).suffix not in (".parquet", ".csv"):
        raise CliError(f"--out {args.out!r} must end in .parquet or .csv")
    check_output(args.out, overwrite=args.overwrite)
    bench = load_benchmark_arg(args)
    space = bench.space
    if args.archs:
        archs = read_arch_file(args.archs, space)[1]
    else:
        if args.n is None or args.n < 1:
            raise CliError(f"-n {args.n} must be a positive integer")
        archs = space.sample(jax.random.key(args.seed), args.n).to_numpy()
    key = jax.random.key(args.seed) if args.mode == "sample" else None
    frame = bench.query_frame(archs, args.metrics, args.devices, args.mode, key, args.level,
                              args.ground_truth)
    metadata = {"scale": space.scale, "surrogates": benchmark_source(args),
                "metrics": bench.resolve(args.metrics, args.devices), "mode": args.mode,
                "level": args.level, "seed": args.seed, "ground_truth": args.ground_truth,
                "units": frame.attrs["units"], "archs": args.archs or f"sample n={args.n}"}
    write_table(frame, Path(args.out), metadata)
    print(f"{len(frame)} archs x {len(metadata['metrics'])} metrics ({args.mode}) -> {args.out}")
    for k in metadata["metrics"]:
        for name in [c for c in frame.columns if c == k or c.startswith(f"{k}@")]:
            if frame[name].dtype == bool:
                continue
            column = frame[name]
            print(f"  {name:<30} {frame.attrs['units'][k] or '-':<5} min {column.min():.4g}  "
                  f"median {column.median():.4g}  max {column.max():.4g}")
    return 0
