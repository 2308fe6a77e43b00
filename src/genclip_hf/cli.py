"""The `genclip` command line: one sub-command per job, each a thin wrapper over the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Return the `genclip` argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="genclip", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `genclip` console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


# Each entry adds one sub-command to the parser and sets `handler` (args -> exit status).
_COMMANDS: list = []


if __name__ == "__main__":
    sys.exit(main())
