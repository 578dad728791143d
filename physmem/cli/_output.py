"""The one output layer of the subcommands: JSON to stdout, tables and counts for people."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import time
from typing import IO, Any, Callable, Sequence

from ..errors import InvalidArgument


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
    """Decimal or 0x-prefixed hexadecimal, as people paste addresses."""
    return int(text, 0)


def int_arg(text: str) -> int:
    """``type=`` for options taking a number: parse_int, refused in argparse's words."""
    try:
        return parse_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (decimal or 0x hex)") from None


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
