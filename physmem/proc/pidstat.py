"""/proc/<pid>/stat, statm and status."""
from __future__ import annotations

import os
from typing import Any, NamedTuple

from ..errors import ParseError
from ._read import pid_path, read_bytes

__all__ = ["Stat", "Statm", "stat", "statm", "status", "parse_stat", "parse_status",
           "parse_cpu_list"]

_STAT_FIELDS = (
    "pid comm state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime "
    "stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss rsslim "
    "startcode endcode startstack kstkesp kstkeip signal blocked sigignore sigcatch wchan "
    "nswap cnswap exit_signal processor rt_priority policy delayed_acct_blkio_ticks "
    "guest_time cguest_time start_data end_data start_brk arg_start arg_end env_start "
    "env_end exit_code").split()

Stat = NamedTuple("Stat", [(f, str if f in ("comm", "state") else int) for f in _STAT_FIELDS])
Stat.__doc__ = ("All fields of /proc/<pid>/stat as proc(5) names them; ``processor`` is the "
                "CPU the task last ran on, ``rss`` is in pages, times in clock ticks.")


class Statm(NamedTuple):
    """/proc/<pid>/statm converted from pages to bytes (``lib``/``dt`` are always 0)."""

    size: int
    resident: int
    shared: int
    text: int
    lib: int
    data: int
    dt: int


def parse_stat(data: bytes, path: str = "stat") -> Stat:
    """Parse a stat line; ``comm`` may hold spaces and parentheses (it ends at the last ')')."""
    try:
        open_, close = data.index(b"("), data.rindex(b")")
        head, rest = data[:open_].split(), data[close + 2:].split()
        if len(head) != 1 or data[close + 1:close + 2] != b" " or not rest:
            raise ValueError
        nums = [int(v) for v in rest[1:]]
        values = [int(head[0]), os.fsdecode(data[open_ + 1:close]), rest[0].decode("ascii")]
        values += nums
        if len(values) < 44 or len(values) > len(_STAT_FIELDS):
            raise ValueError
        # Older kernels print fewer trailing fields; they read as 0.
        values += [0] * (len(_STAT_FIELDS) - len(values))
    except (ValueError, UnicodeDecodeError):
        raise ParseError("unreadable stat line", path=path, lineno=1, line=data) from None
    return Stat(*values)


def stat(pid: int | None = None, proc_root: str = "/proc") -> Stat:
    path = pid_path(proc_root, pid, "stat")
    return parse_stat(read_bytes(path, pid), path)


def statm(pid: int | None = None, proc_root: str = "/proc") -> Statm:
    path = pid_path(proc_root, pid, "statm")
    data = read_bytes(path, pid)
    try:
        nums = [int(v) for v in data.split()]
        if len(nums) != 7:
            raise ValueError
    except ValueError:
        raise ParseError("expected 7 numbers", path=path, lineno=1, line=data) from None
    page = os.sysconf("SC_PAGE_SIZE")
    return Statm(*(n * page for n in nums))


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0-3,8,10-11"`` -> {0, 1, 2, 3, 8, 10, 11}; "" -> empty."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        stride = 1
        if ":" in hi:  # a-b:stride/group (the kernel's bitmap_parselist syntax)
            hi, _, stride_s = hi.partition(":")
            stride = int(stride_s.split("/")[0])
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a or a < 0 or stride < 1:
            raise ValueError(part)
        out.update(range(a, b + 1, stride))
    return frozenset(out)


def _status_value(key: str, raw: str) -> Any:
    if raw.endswith(" kB"):
        return int(raw[:-3]) * 1024
    if key.endswith("_list"):
        return parse_cpu_list(raw)
    if key in ("Uid", "Gid"):
        return tuple(int(v) for v in raw.split())
    if key == "Groups":
        return tuple(int(v) for v in raw.split())
    if raw.isdigit():
        return int(raw)
    return raw


def parse_status(data: bytes, path: str = "status") -> dict[str, Any]:
    """``{"VmRSS": bytes, "Cpus_allowed_list": frozenset, "Uid": (r, e, s, fs), ...}``.

    kB sizes become bytes, ``*_list`` fields sets of ints, plain numbers ints; masks and
    other text stay strings.
    """
    out: dict[str, Any] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        key, sep, raw = line.partition(b":")
        try:
            if not sep or not key or b" " in key:
                raise ValueError
            k = key.decode("ascii")
            out[k] = _status_value(k, os.fsdecode(raw.strip()) if k == "Name" else
                                   raw.strip().decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise ParseError("unreadable status line", path=path, lineno=lineno,
                             line=line) from None
    return out


def status(pid: int | None = None, proc_root: str = "/proc") -> dict[str, Any]:
    path = pid_path(proc_root, pid, "status")
    return parse_status(read_bytes(path, pid), path)
