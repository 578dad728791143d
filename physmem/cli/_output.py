"""The one output layer of the subcommands: :class:`Output` (JSON or text, sizes as people
read them or exact bytes), the one error printer, counts in words, a progress bar."""
from __future__ import annotations

import argparse
import enum
import errno
import json
import re
import sys
import time
from typing import IO, Any, Callable, Sequence

from .._syntax import format_size
from ..errors import PhysmemError, error_from_errno

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
    (r"\bmax_growth\b", "--max-growth"),
    (r"\bignore_pid_namespace=True\b", "--ignore-pid-namespace"),
    (r"\bpin=False\b", "--pin no"),
    (r"\bpin=True\b", "--pin yes"),
    # Only v2p meets a page that is not present, and its table already shows it as such.
    (r",? or pass strict=False for a masked result",
     " (the table shows each such address as 'not present')"),
    (r"\b(sys|proc)_root=", r"--\1-root"),
    (r"\bcell size\b", "--cell"),
)


def speak_cli(message: str) -> str:
    """``message`` (from the library) in CLI terms: flags and commands, not Python."""
    for python, cli in CLI_WORDS:
        message = re.sub(python, cli, message)
    return message


def print_error(error: BaseException | str, *, verbose: bool = False) -> None:
    """The one way a subcommand's error reaches the user: one line on stderr after
    ``physmem: error:``, in CLI words. A library message of several lines (a shortage with
    the free memory per zone) is cut to its first line, which says what failed and what to
    do; ``verbose`` (the ``--verbose`` flag) prints the rest below it, indented."""
    first, *details = speak_cli(str(error)).splitlines() or [""]
    if details and not verbose:
        first += " (--verbose shows the details)"
    print(f"physmem: error: {first}", file=sys.stderr)
    if verbose:
        for line in details:
            print(f"  {line}", file=sys.stderr)


class Output:
    """How a subcommand's results reach the user, decided once from the options every
    subcommand shares: one JSON document (``--json``) or text, and in text, sizes for people
    (``64.0 MiB``) or exact byte counts (``--bytes``). :func:`physmem.cli.main` makes one and
    passes it to the handler."""

    def __init__(self, *, json: bool = False, raw_bytes: bool = False,
                 verbose: bool = False) -> None:
        self.json = json            # the handler prints one JSON document, nothing else
        self.raw_bytes = raw_bytes  # text shows sizes as exact byte counts
        self.verbose = verbose      # errors show their detail lines too

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Output:
        return cls(json=args.json, raw_bytes=args.bytes, verbose=args.verbose)

    def emit_json(self, data: Any) -> None:
        """The one JSON emitter of every ``--json``: one document, indented by 2, keys in
        record order, sizes and addresses as plain integers (bytes), absent values as null."""
        json.dump(data, sys.stdout, indent=2, default=_default)
        sys.stdout.write("\n")

    def size(self, n: int) -> str:
        """A size for people (``64.0 MiB``), or exact bytes under ``--bytes``."""
        return str(int(n)) if self.raw_bytes else format_size(int(n), exact=False)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
              align: str | None = None) -> None:
        """Columns padded to their widest cell; ``align`` is one 'l'/'r' per column."""
        cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        align = align or "l" * len(headers)
        for row in cells:
            parts = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)]
            print("  ".join(parts).rstrip())

    def error(self, error: BaseException | str) -> None:
        """An error that does not end the command (the rest of its output still counts)."""
        print_error(error, verbose=self.verbose)


def _default(obj: Any) -> Any:
    import dataclasses   # loaded already if obj is one; not paid for by plain documents

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


def printable(text: str) -> str:
    """``text`` (a file name, a command name: anyone's choice) safe to print on a terminal:
    a backslash doubled, and each character that is not printable (escape sequences, other
    control characters, bidi overrides, bytes that are not UTF-8) as ``\\xNN``/``\\uNNNN``.
    --json keeps the text as it is."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:   # a byte os.fsdecode could not decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
    return "".join(out)


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 page``, ``2 pages`` (``nouns`` for an irregular plural)."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


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
