"""The ``physmem`` command line: one parser, one subcommand module per concern.

A subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` (taking the parsed arguments, returning the exit status). Add new modules to
``COMMANDS``. Exit status: 0 success, 1 bad usage, 2 the system refused (permissions,
missing kernel feature, process gone).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import InvalidArgument, PhysmemError
from . import _output

COMMANDS = ("v2p", "kpageflags", "alloc", "hugepages", "topo", "plan", "doctor", "procfs", "map", "frag", "contig")

EXIT_USAGE = 1
EXIT_SYSTEM = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="physmem", description="Linux physical memory: where it lives, how to get it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(sub)
    for command in sub.choices.values():  # one unit convention for every subcommand
        command.add_argument("--bytes", action="store_true",
                             help="print sizes as exact byte counts, not KiB/MiB/GiB "
                                  "(JSON output is always in bytes)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _output.RAW_BYTES = args.bytes
        return int(args.func(args) or 0)
    except SystemExit as exc:  # argparse's usage errors and --help: return, do not exit
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except BrokenPipeError:  # `physmem ... | head` closed our stdout: not an error
        sys.stderr.close()
        return 0
    except InvalidArgument as exc:
        print(f"physmem: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PhysmemError, OSError) as exc:
        print(f"physmem: error: {exc}", file=sys.stderr)
        return EXIT_SYSTEM


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
