"""The ``flexiast`` command: one subcommand per task, registered by this package's group modules.

``models`` (flops, convert), ``data`` (stats), ``train`` (train, savings), ``deploy``
(evaluate, predict, export), ``report`` (report) and ``demo`` (demo) each add their
subcommands with ``add_parsers``; ``_args`` holds the argument types they share.
"""

from __future__ import annotations

import argparse
import sys

from . import data, demo, deploy, models, report, train
from ._args import IntermixedParser, UsageError

__all__ = ["build_parser", "main"]

#: The group modules, in the order their subcommands are listed in ``flexiast --help``.
GROUPS = (demo, models, data, train, deploy, report)


def build_parser() -> argparse.ArgumentParser:
    """The ``flexiast`` parser with every group's subcommands."""
    parser = argparse.ArgumentParser(prog="flexiast", description="The flexiast command.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=IntermixedParser)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command line; the exit code. A command line argparse rejects, or one that
    parses but does not make sense (:class:`UsageError`), exits with code 2 and the usage;
    an error while running (a ValueError, including CheckpointError and DataError, an
    OSError or a missing optional package) returns 2 after a line naming it."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        args.parser.error(str(e))
    except (ValueError, OSError, ImportError) as e:
        print(f"flexiast {args.command}: error: {e}", file=sys.stderr)
        return 2
