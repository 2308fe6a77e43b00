"""The `genclip` command line: one sub-command per job, each a thin wrapper over the library.

Every error a user can cause prints one line, `genclip <command>: <what is wrong with which input>`, and exits with
status 2 (a run that finished with skipped files exits 1); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..predict import ModelUnavailableError
from ..storage import OutputFolderLockedError
from . import calibrate, convert, data, demo, evaluate, export, predict, publish, train

USER_ERRORS = (ValueError, OSError, ModelUnavailableError, OutputFolderLockedError)
"""Errors that describe a bad input and print as one line."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (`genclip <command>: error: ...`), exit status 2."""

    def error(self, message: str) -> None:
        if message.endswith("expected one argument"):
            message += " (a value that starts with '-', such as -inf, is written --option=VALUE)"
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the `genclip` argument parser with every sub-command registered."""
    parser = OneLineParser(prog="genclip", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in (predict, evaluate, calibrate, train, data, publish, convert, export, demo):
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `genclip` console script; returns the process exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    try:
        return int(args.handler(args) or 0)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"genclip {args.command}: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genclip {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return " ".join(text.split())
