"""The options several subcommands share, each defined once: ``--json``, ``--sys-root`` and
``--proc-root``, ``--node``, ``--pid``, ``--png``, ``--threads``; and the ``type=`` parsers
that check a number, pid or file name on the command line, in argparse's words.

Cheap to import (``physmem --help`` builds every parser): what a check needs from the
library (``physmem._args`` loads numpy) is imported when a value is checked, not before.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import stat

from ..errors import InvalidArgument, PhysmemOSError, error_from_errno


# -- shared options ---------------------------------------------------------------------------

def add_json(parser: argparse.ArgumentParser, help: str = "JSON output") -> None:
    """The one ``--json`` (every subcommand has it; ``help`` says what the document holds)."""
    parser.add_argument("--json", action="store_true", help=help)


class _Default(str):
    """A root's default, the running system's own mount: passed through unchecked (argparse
    runs a string default through ``type=`` as if it had been typed)."""


def add_roots(parser: argparse.ArgumentParser) -> None:
    """``--sys-root`` and ``--proc-root``: read a captured or containerised sysfs/procfs."""
    parser.add_argument("--sys-root", default=_Default("/sys"), type=sys_root_arg,
                        help="where sysfs is (default /sys)")
    parser.add_argument("--proc-root", default=_Default("/proc"), type=proc_root_arg,
                        help="where procfs is (default /proc)")


def add_node(parser: argparse.ArgumentParser, help: str) -> None:
    """The one ``--node`` option: a node number, decimal or 0x hex like every other number;
    the subcommand passes it through :func:`check_node`."""
    parser.add_argument("--node", type=int_arg, default=None, metavar="N", help=help)


def add_pid(parser: argparse.ArgumentParser, help: str) -> None:
    """The one ``--pid`` option (default: physmem itself)."""
    parser.add_argument("--pid", type=pid_arg, default=None, help=help)


def add_png(parser: argparse.ArgumentParser, help: str) -> None:
    """The one ``--png FILE`` option: the file name is checked before any work is done."""
    parser.add_argument("--png", type=png_arg, metavar="FILE", help=help)


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads`` of the kpageflags scans; the subcommand passes it through
    :func:`check_threads`."""
    parser.add_argument("--threads", type=int_arg, default=None,
                        help="threads scanning kpageflags (default: one per allowed CPU)")


# -- checks that need the machine (run by the subcommand, not by argparse) ---------------------

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


def check_page_size(text: str | None, flag: str) -> int | None:
    """A hugepage size given on the command line (``flag`` names it), refused unless this
    kernel has a pool of that size; ``None`` (the kernel's default) passes through."""
    if text is None:
        return None
    from ..hugepages import parse_size, supported_sizes
    from ..hugepages.sizes import format_size

    size = parse_size(text, flag)
    have = supported_sizes()
    if size not in have:
        raise InvalidArgument(f"{flag} {text}: this kernel has no such hugepage pool "
                              f"(sizes: {', '.join(format_size(s) for s in have) or 'none'})")
    return size


def check_threads(threads: int | None) -> None:
    """--threads as the scans take it: a count of at least 1 (None: one per CPU)."""
    from ..kpageflags import _MAX_THREADS

    if threads is not None and not 1 <= threads <= _MAX_THREADS:
        raise InvalidArgument(f"--threads {threads} is out of range: give 1 to {_MAX_THREADS} "
                              "(or leave it out for one thread per allowed CPU)")


# -- value parsers ----------------------------------------------------------------------------

def parse_int(text: str) -> int:
    """Decimal or 0x-prefixed hexadecimal, as people paste addresses, PFNs and counts; no
    more than 64 bits (every address, PFN and count physmem takes is a 64-bit word).

    Raises :class:`InvalidArgument` (a ``ValueError``) saying what is wrong with ``text``.
    """
    from .._args import U64_MAX

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
    from .._args import PID_MAX, as_pid

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


def seconds_arg(text: str) -> float:
    """``type=`` for a period in seconds: a number above 0, at most the longest wait poll()
    can be given (an int of milliseconds)."""
    from .._args import I32_MAX

    most = I32_MAX // 1000
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or not 0 < v <= most:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds above 0 and at most {most} (e.g. 30)")
    return v


def sys_root_arg(text: str) -> str:
    """``type=`` for ``--sys-root``: a directory holding devices/system/cpu, as every sysfs
    and every captured tree does; a typo is a usage error at once, not a run that reads
    nothing and reports what is missing."""
    if isinstance(text, _Default):
        return str(text)
    _directory(text)
    if not os.path.isdir(os.path.join(text, "devices", "system", "cpu")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a sysfs tree (it has no devices/system/cpu): give the "
            "directory sysfs is mounted on, or a copy of it")
    return text


def proc_root_arg(text: str) -> str:
    """``type=`` for ``--proc-root``: an existing directory (a captured tree may hold only
    the few files a command reads)."""
    if isinstance(text, _Default):
        return str(text)
    _directory(text)
    return text


def _directory(text: str) -> None:
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text!r} does not exist")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")


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


# -- output directories -------------------------------------------------------------------------

def refused(what: str, exc: OSError) -> PhysmemOSError:
    """The system refused (permission, full disk, port taken): exit status 1, as for every
    subcommand. The message keeps the system's own words (a resolver error is no errno that
    error_from_errno could name)."""
    return PhysmemOSError(f"{what}: {exc.strerror or exc}", errno=exc.errno)


def check_directory(directory: str, flag: str) -> None:
    """DIR of ``flag`` exists and is a directory, or a usage error naming the flag."""
    try:
        is_dir = stat.S_ISDIR(os.stat(directory).st_mode)
    except FileNotFoundError:
        raise InvalidArgument(f"{flag} {directory!r} does not exist: create it (for --textfile, "
                              "node_exporter's --collector.textfile.directory)") from None
    except OSError as exc:
        raise error_from_errno(exc.errno or errno.EACCES, f"{flag} {directory!r} cannot be "
                               "reached", hint="run as a user that may write there") from None
    if not is_dir:
        raise InvalidArgument(f"{flag} {directory!r} is not a directory")
