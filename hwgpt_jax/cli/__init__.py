"""The `hwgpt` command line: one subcommand module per pipeline stage.

Each module in `COMMANDS` exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the handler. Errors in user input surface as one line and exit
code 2; Ctrl-C as one line and exit code 130.
The installed command is `entry`: it first restarts the process with the allocator settings
of `hwgpt_jax.cli.runtime`, then runs `main`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hwgpt_jax.cli.runtime import reexec_with_tuned_allocator

COMMANDS = ("space", "train", "evaluate", "profile", "fit", "query", "search", "export", "run",
            "plot")


_INTERRUPT_NOTES = {
    "train": "the last checkpoint is kept; rerun with --resume to continue",
    "profile": "finished archs are kept; rerun the same command to continue",
}


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hwgpt", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"hwgpt_jax.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, OSError) as err:
        # OSError covers FileNotFoundError, FileExistsError, PermissionError and errno 30
        # (read-only file system): a user-facing problem of a path, not a bug.
        print(f"hwgpt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwgpt {args.command}: interrupted; {_INTERRUPT_NOTES.get(args.command, '')}"
              .rstrip("; "), file=sys.stderr)
        return 130


def entry() -> None:
    """The `hwgpt` program: `main` in a process with the tuned allocator (`cli/runtime.py`)."""
    reexec_with_tuned_allocator()
    sys.exit(main())
