"""`hwgpt export`: sub-networks of a trained supernet as standalone dense checkpoints.

    hwgpt export --checkpoint runs/demo/train --pareto runs/search/pareto.parquet --limit 4 \
        --out runs/export
    hwgpt export --checkpoint runs/demo/train --archs archs.json --out runs/export

Each arch goes to <out>/<arch id>/ (orbax `params/` + `model.json`), and <out>/index.json
lists them. With --limit K smaller than the front, K archs evenly spaced along the front
(sorted by its first objective, both ends included) are exported; see `hwgpt_jax.stages.export`.
Load one with `hwgpt_jax.model.dense.load_dense(folder)`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwgpt_jax.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export sub-networks of a trained supernet as dense checkpoints")
    parser.add_argument("--checkpoint", required=True, help="run folder of `hwgpt train`")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--archs", help="arch file from `hwgpt space sample` (JSON or CSV)")
    source.add_argument("--pareto", help="pareto.parquet of `hwgpt search` (or any parquet "
                                         "table with an arch_id column)")
    parser.add_argument("--limit", type=int, metavar="K",
                        help="export K archs chosen evenly along the front (default: all)")
    parser.add_argument("--objectives", help="comma list of the table's objective columns "
                                             "(default: from the table's metadata)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing exports of the same archs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hwgpt_jax.stages import export

    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit {args.limit}: expected a positive integer")
    source = Path(args.pareto or args.archs)
    if not source.is_file():
        raise CliError(f"{'--pareto' if args.pareto else '--archs'} {str(source)!r} does not "
                       f"exist")
    if args.pareto and source.suffix != ".parquet":
        raise CliError(f"--pareto {str(source)!r}: expected a .parquet table")
    if args.archs and source.suffix == ".parquet":
        raise CliError(f"--archs {str(source)!r} is a parquet table; use --pareto")
    from hwgpt_jax.base.files import check_output

    # an existing folder may gain more exports; the same arch is refused without --overwrite
    check_output(args.out, overwrite=True, folder=True)
    objectives = None
    if args.objectives:
        objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    config = export.ExportConfig(checkpoint=args.checkpoint, source=str(source),
                                 limit=args.limit, objectives=objectives,
                                 overwrite=args.overwrite)
    bars: list[tqdm] = []  # opened at the first export, so errors print without a bar

    def on_export(folder: Path) -> None:
        if not bars:
            bars.append(tqdm(desc="exporting", unit="model", file=sys.stderr))
        bars[0].update(1)

    try:
        summary = export.run(config, args.out, on_export=on_export)
    finally:
        for bar in bars:
            bar.close()
    print(f"exported {len(summary['models'])} dense model(s) to {args.out}: "
          + ", ".join(summary["models"]))
    return 0
