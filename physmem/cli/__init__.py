"""The ``physmem`` command line: one parser, one dispatch table, one output layer.

A subcommand is a :class:`Command` (its help, its own options and its handler) in a module
of this package, and one line in :data:`COMMANDS`. :func:`build_parser` registers every
command the same way, adding the options all of them share; :func:`main` makes one
:class:`~._output.Output` from the parsed options and calls the handler with it. Errors are
raised, not printed: :func:`main` prints them in one line (their details with
``--verbose``), in CLI words
(:func:`._output.speak_cli`), and :func:`exit_code` is the one place that turns an error
into an exit status.

Command modules import the library inside their handlers: ``physmem --help`` builds every
parser and should not load numpy or the C extension to do it.
"""
from __future__ import annotations

import argparse
import contextlib
import enum
import importlib
import signal
import sys
import textwrap
import threading
from types import FrameType
from typing import Callable, Iterator, NamedTuple, Sequence

from .. import __version__
from ..errors import InvalidArgument, PageNotPresent, PhysmemError, ProcessGone
from ._options import add_json, add_roots
from ._output import Output, print_error

__all__ = ["COMMANDS", "Exit", "EXIT_HELP", "NO_SIZES", "SIZES_HELP", "Command", "command",
           "stopped_by_signals", "exit_code", "build_parser", "main"]

# The one dispatch table: each command, in the order `physmem --help` lists them, and the
# Command that defines it, as MODULE.NAME in this package (imported when the parser is built).
COMMANDS: dict[str, str] = {
    "v2p": "v2p.V2P",
    "kpageflags": "kpageflags.KPAGEFLAGS",
    "alloc": "alloc.ALLOC",
    "hugepages": "hugepages.HUGEPAGES",
    "topo": "topo.TOPO",
    "plan": "plan.PLAN",
    "doctor": "doctor.DOCTOR",
    "maps": "procfs.MAPS",
    "smaps": "procfs.SMAPS",
    "numa-maps": "procfs.NUMA_MAPS",
    "meminfo": "procfs.MEMINFO",
    "buddyinfo": "procfs.BUDDYINFO",
    "map": "map.MAP",
    "frag": "frag.FRAG",
    "contig": "contig.CONTIG",
    "exporter": "exporter.EXPORTER",
    "nfd": "nfd.NFD",
    "dma": "dma.DMA",
}


class Exit(enum.IntEnum):
    """Exit statuses of ``physmem``; each means one thing on every subcommand."""

    OK = 0
    ERROR = 1               # the system refused or failed: permission, kernel feature, memory
    USAGE = 2               # bad command line: unknown option, malformed or impossible value
    WARNINGS = 3            # doctor found warnings (and no errors)
    ERRORS = 4              # doctor found errors
    NOT_FOUND = 5           # a page is not present, a process does not exist or has exited
    MISSING_DEPENDENCY = 6  # an optional package is not installed (matplotlib for --png)
    AFTER_COMPACTION = 7    # contig --want: obtainable only after compaction
    NOT_OBTAINABLE = 8      # contig --want: not obtainable without a reboot (or at all)
    MOVED = 9               # dma watch: a watched page changed frame (moved, vanished, appeared)


EXIT_HELP = """exit status:
  0  success
  1  the system refused or failed (permission, missing kernel feature, out of memory)
  2  usage error: unknown option, malformed or impossible value
  3  doctor found warnings (and no errors)
  4  doctor found errors
  5  not found: a page not present, a process that does not exist or has exited
  6  an optional package is missing (matplotlib for --png)
  7  contig --want: obtainable only after compaction
  8  contig --want: not obtainable without a reboot (or not on this machine)
  9  dma watch: a watched page changed frame (moved, vanished or appeared)"""

# Subcommands whose text shows no sizes, so --bytes would change nothing: they do not offer it.
NO_SIZES = {
    "v2p": "addresses only",
    "plan": "CPU lists only",
    "doctor": "findings and fixes, no amounts",
    "maps": "address ranges only",
    "numa-maps": "page counts per node, as the kernel writes them",
    "exporter": "Prometheus metrics are in bytes by convention, and --json always is",
    "nfd": "label values are plain numbers of pages and bytes, as selectors compare them",
}

SIZES_HELP = """sizes: bytes (4096, 0x200000) or a number with a unit K, M, G or T, always a
power of 1024 whatever the case or suffix: 64m = 64M = 64MiB = 64MB = 64 * 2**20 bytes (as
in the kernel's hugepagesz= and meminfo); a fraction is fine if it comes to whole bytes (1.5G)."""


class Command(NamedTuple):
    """One subcommand. :func:`build_parser` gives every command ``--json`` (``json`` is its
    help: what the document holds), ``--sys-root``/``--proc-root`` if ``roots``, and
    ``--bytes`` unless :data:`NO_SIZES` names it; ``arguments`` adds the command's own."""

    help: str          # its line in `physmem --help`
    description: str   # paragraphs, filled to the terminal
    epilog: str        # examples, kept as written
    run: Callable[[argparse.Namespace, Output], Exit]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    json: str = "JSON output"
    roots: bool = False


def command(name: str) -> Command:
    """The :class:`Command` that :data:`COMMANDS` names for ``name``."""
    module, attr = COMMANDS[name].rsplit(".", 1)
    spec: Command = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    return spec


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[threading.Event]:
    """An Event that SIGTERM or SIGINT sets while the block runs, for commands that run
    until stopped. The handlers in place before come back after it: :func:`main` may run
    in a program or a test process, whose own Ctrl-C must work again once the command ends.
    Outside the main thread (where Python cannot set handlers) nothing is installed."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    before = {}
    if threading.current_thread() is threading.main_thread():
        before = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def exit_code(exc: BaseException) -> Exit:
    """The exit status for an error that ended a subcommand."""
    if isinstance(exc, InvalidArgument):
        return Exit.USAGE
    if isinstance(exc, (PageNotPresent, ProcessGone)):
        return Exit.NOT_FOUND
    # physmem's error for a missing optional package (MissingDependency) is an
    # ImportError; main() lets no other ImportError reach here.
    if isinstance(exc, ImportError):
        return Exit.MISSING_DEPENDENCY
    return Exit.ERROR


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(Exit.USAGE, f"{self.prog}: error: {message}\n")

    def _parse_optional(self, arg_string: str):  # type: ignore[no-untyped-def]
        # "-5M" or "-0x10" is a (bad) value, not an unknown option: let the value's own
        # check say what is wrong with it instead of "SIZE required".
        if len(arg_string) > 1 and arg_string[0] == "-" and arg_string[1].isdigit():
            return None
        return super()._parse_optional(arg_string)


class _TopFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the exit-status table as written, and each command's summary on its line
    (argparse measures subcommand names without their indent and wraps the longer ones)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=20, width=100)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        for sub in self._iter_indented_subactions(action):
            self._action_max_length = max(self._action_max_length, self._current_indent
                                          + len(self._format_action_invocation(sub)))


def _wrap(text: str | None) -> str | None:
    """Fill a description's paragraphs to the terminal (epilogs keep their layout)."""
    if not text:
        return text
    width = min(88, argparse.HelpFormatter("x")._width)
    return "\n\n".join(textwrap.fill(" ".join(p.split()), width) for p in text.split("\n\n"))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only`` (a name in COMMANDS), just that subcommand, so a
    run imports one subcommand module and what it needs instead of every one of them."""
    parser = _Parser(prog="physmem", description="Linux physical memory: where it lives, how to get it.",
                     epilog=f"{EXIT_HELP}\n\n{SIZES_HELP}\n\n"
                            "physmem COMMAND --help shows each command's options and examples.",
                     formatter_class=_TopFormatter)
    parser.add_argument("--version", action="version", version=f"physmem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    # The one registration path; only the named command's when main() knows it (building
    # all of them imports every command module).
    for name in (only,) if only in COMMANDS else COMMANDS:
        spec = command(name)
        p = sub.add_parser(name, help=spec.help, description=_wrap(spec.description),
                           epilog=spec.epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        if spec.arguments is not None:
            spec.arguments(p)
        add_json(p, spec.json)
        p.add_argument("--verbose", action="store_true",
                       help="with an error, also print its details (such as the free memory "
                            "behind a shortage); without it an error is one line")
        if spec.roots:
            add_roots(p)
        if name not in NO_SIZES:   # one unit convention for every subcommand
            p.add_argument("--bytes", action="store_true",
                           help="print sizes as exact byte counts, not KiB/MiB/GiB "
                                "(JSON output is always in bytes)")
        # `parser`: for a usage error only the handler can see (a flag that does not apply).
        p.set_defaults(bytes=False, parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    # A subcommand named first is the one that runs (top-level options come before it and
    # everything after it belongs to it): parse with its parser alone.
    parser = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args = None
    try:
        args, extra = parser.parse_known_args(words)
        if extra:  # report it with the subcommand's usage, not the top-level one
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        return int(command(args.command).run(args, Output.from_args(args)))
    except SystemExit as exc:  # argparse's usage errors, --help and --version: return, do not exit
        return exc.code if isinstance(exc.code, int) else Exit.USAGE
    except BrokenPipeError:  # `physmem ... | head` closed our stdout: not an error
        sys.stderr.close()
        return Exit.OK
    except (PhysmemError, OSError) as exc:
        print_error(exc, verbose=bool(getattr(args, "verbose", False)))
        return exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
