"""`hwgpt space show|sample`: inspect a search space and draw architectures."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

import jax

from hwgpt_jax.space.arch import SPACES, get_space


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("space", help="inspect search spaces, sample architectures")
    actions = parser.add_subparsers(dest="action", required=True)

    show = actions.add_parser("show", help="print the choices and the size of a space")
    show.add_argument("--scale", required=True, choices=list(SPACES))
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)

    sample = actions.add_parser("sample", help="draw architectures uniformly per choice")
    sample.add_argument("--scale", required=True, choices=list(SPACES))
    sample.add_argument("-n", type=_positive_int, required=True, help="number of archs")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--unique", action="store_true", help="no repeated architectures")
    sample.add_argument("--format", choices=("json", "csv"), default="json")
    sample.set_defaults(func=_sample)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _show(args: argparse.Namespace) -> int:
    space = get_space(args.scale)
    info = {
        "scale": space.scale, "choices": space.choices(), "max_layers": space.max_layers,
        "head_size": space.head_size, "block_size": space.block_size,
        "vocab_size": space.vocab_size, "padded_vocab_size": space.padded_vocab_size,
        "size": space.size,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"search space {space.scale!r}: {space.size:,} architectures ({space.size:.3e})")
    for name, values in info["choices"].items():
        per_layer = " (per layer)" if name in ("n_head", "mlp_ratio") else ""
        print(f"  {name:<10} {values}{per_layer}")
    print(f"  head size {space.head_size}, block size {space.block_size}, "
          f"Lmax {space.max_layers}, vocabulary {space.vocab_size} "
          f"(padded {space.padded_vocab_size})")
    return 0


def _sample(args: argparse.Namespace) -> int:
    space = get_space(args.scale)
    key = jax.random.key(args.seed)
    archs = space.sample_unique(key, args.n) if args.unique else space.sample(key, args.n)
    if args.format == "json":
        sys.stdout.write(space.to_json(archs) + "\n")
        return 0
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["arch_id", "embed_dim", "n_layer", "n_head", "mlp_ratio", "bias"])
    for arch_id, rec in zip(space.arch_ids(archs), space.to_records(archs), strict=True):
        writer.writerow([arch_id, rec["embed_dim"], rec["n_layer"],
                         " ".join(map(str, rec["n_head"])), " ".join(map(str, rec["mlp_ratio"])),
                         rec["bias"]])
    sys.stdout.write(out.getvalue())
    return 0
