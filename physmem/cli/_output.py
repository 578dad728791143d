"""The one output layer of the subcommands: JSON to stdout, tables and counts for people."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import errno
import math
import os
import re
import sys
import time
from typing import IO, Any, Callable, Sequence

from .._args import I32_MAX, PID_MAX, U64_MAX, as_pid
from ..errors import InvalidArgument, PhysmemError, error_from_errno

# Python spellings in library messages -> what a CLI user types instead. The library speaks
# to callers of its functions; :func:`speak_cli` rewrites its messages once, in the one error
# printer, so every subcommand's errors name flags and commands. Order matters: a Python call
# offered next to its command keeps only the command, before single words are replaced.
CLI_WORDS: tuple[tuple[str, str], ...] = (
    # "(physmem.hugepages.reserve(4, 2097152) or `physmem hugepages reserve 4 --size 2M`)"
    (r"\(physmem\.[\w.]+\([^()]*\),? or (`[^`]*`)\)", r"(\1)"),
    (r"\(physmem\.hugepages\.compact\(\), then reserve\)",
     "(`echo 1 > /proc/sys/vm/compact_memory`, then `physmem hugepages reserve`)"),
    (r"physmem\.hugepages\.compact\(\)", "`echo 1 > /proc/sys/vm/compact_memory`"),
    (r"\(allocate_scatter\)", "(--scatter)"),
    (r"\breserve=True\b", "--reserve"),
    (r"\bforce=True\b", "--force"),
    # Only v2p meets a page that is not present, and its table already shows it as such.
    (r",? or pass strict=False for a masked result",
     " (the table shows each such address as 'not present')"),
    (r"\b(sys|proc)_root=", r"--\1-root"),
)


def speak_cli(message: str) -> str:
    """``message`` (from the library) in CLI terms: flags and commands, not Python."""
    for python, cli in CLI_WORDS:
        message = re.sub(python, cli, message)
    return message


def print_error(error: BaseException | str) -> None:
    """The one way a subcommand's error reaches the user: one line (or the library's lines)
    on stderr after ``physmem: error:``, in CLI words."""
    print(f"physmem: error: {speak_cli(str(error))}", file=sys.stderr)


def emit_json(data: Any) -> None:
    """Every subcommand's ``--json``: one document, indented by 2, keys in record order,
    sizes and addresses as plain integers (bytes), absent values as null."""
    json.dump(data, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _default(obj: Any) -> Any:
    if hasattr(obj, "_asdict"):
        return obj._asdict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.name.lower()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 page``, ``2 pages`` (``nouns`` for an irregular plural)."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def add_node_option(parser: argparse.ArgumentParser, help: str) -> None:
    """The one ``--node`` option: a node number, decimal or 0x hex like every other number;
    the subcommand passes it through :func:`check_node`."""
    parser.add_argument("--node", type=int_arg, default=None, metavar="N", help=help)


def check_node(node: int | None, flag: str = "--node") -> int | None:
    """A NUMA node given on the command line, refused unless this machine has it online."""
    if node is None:
        return None
    from ..numa import online_nodes

    have = sorted(online_nodes())
    if node not in have:
        raise InvalidArgument(f"{flag} {node}: no such NUMA node on this machine "
                              f"(online nodes: {', '.join(map(str, have)) or 'none'})")
    return node


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
                align: str | None = None) -> None:
    """Columns padded to their widest cell; ``align`` is one 'l'/'r' per column."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" * len(headers)
    for row in cells:
        parts = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)]
        print("  ".join(parts).rstrip())


# Set from the common --bytes option: sizes in text output as plain byte counts.
RAW_BYTES = False


def size_text(n: int) -> str:
    """A size for people (``64.0 MiB``), or exact bytes under ``--bytes``."""
    return str(int(n)) if RAW_BYTES else human_bytes(n)


def human_bytes(n: int) -> str:
    x: float = n   # divided down unit by unit
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x} B"  # pragma: no cover


def parse_int(text: str) -> int:
    """Decimal or 0x-prefixed hexadecimal, as people paste addresses, PFNs and counts; no
    more than 64 bits (every address, PFN and count physmem takes is a 64-bit word).

    Raises :class:`InvalidArgument` (a ``ValueError``) saying what is wrong with ``text``.
    """
    try:
        value = int(text, 0)
    except ValueError:
        raise InvalidArgument(f"{text!r} is not an integer (decimal or 0x hex)") from None
    if abs(value) > U64_MAX:
        raise InvalidArgument(f"{text} does not fit in 64 bits (the most is {U64_MAX:#x})")
    return value


def int_arg(text: str) -> int:
    """``type=`` for options taking a number: parse_int, refused in argparse's words."""
    try:
        return parse_int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pid_arg(text: str) -> int:
    """``type=`` for every ``--pid``: a process id, 1 to PID_MAX, refused in argparse's words."""
    try:
        return as_pid(parse_int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a process id (1 to {PID_MAX})") from None


def count_arg(text: str) -> int:
    """``type=`` for a count that may be 0: parse_int, refused if negative."""
    value = int_arg(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: it must be 0 or more")
    return value


# The longest wait poll() can be given (an int of milliseconds), in seconds.
SECONDS_MAX = I32_MAX // 1000


def seconds_arg(text: str) -> float:
    """``type=`` for a period in seconds: a number above 0, at most :data:`SECONDS_MAX`."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or not 0 < v <= SECONDS_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds above 0 and at most {SECONDS_MAX} (e.g. 30)")
    return v


def add_png_option(parser: argparse.ArgumentParser, help: str) -> None:
    """The one ``--png FILE`` option: the file name is checked before any work is done."""
    parser.add_argument("--png", type=png_arg, metavar="FILE", help=help)


def png_arg(text: str) -> str:
    """``type=`` for ``--png``: a file name whose directory exists (checked before a long
    scan, so a typo does not cost the scan)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a file name to write the picture to, "
                                         "e.g. picture.png")
    directory = os.path.dirname(text) or "."
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory: give a file name in it, "
                                         f"e.g. {os.path.join(text, 'picture.png')}")
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"{text!r}: directory {directory!r} does not exist: "
                                         "create it or write the picture elsewhere")
    return text


def write_png(draw: Callable[..., None], data: Any, path: str) -> None:
    """``draw(data, path)``; a file the system will not let us write is an error naming
    ``--png`` (exit status 1), not a bare ``[Errno 13]``."""
    try:
        draw(data, path)
    except PhysmemError:
        raise
    except OSError as exc:
        raise error_from_errno(exc.errno or errno.EIO, f"cannot write --png {path}",
                               hint="choose a file you may write") from None


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal and the work has taken
    more than ``delay`` seconds (quick commands stay quiet, pipes stay clean)."""

    def __init__(self, label: str, total: int, *, stream: IO[str] | None = None,
                 delay: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 force: bool = False) -> None:
        self.label, self.total = label, max(1, int(total))
        self.stream = stream if stream is not None else sys.stderr
        self.delay, self.clock = delay, clock
        self.start = clock()
        self.enabled = force or getattr(self.stream, "isatty", lambda: False)()
        self.drawn = False

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = max(1, int(total))
        if not self.enabled or self.clock() - self.start < self.delay:
            return
        share = min(1.0, done / self.total)
        bar = "#" * int(share * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {share * 100:5.1f}%")
        self.stream.flush()
        self.drawn = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * (len(self.label) + 40) + "\r")
            self.stream.flush()
