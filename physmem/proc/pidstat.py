"""/proc/<pid>/stat, statm and status."""
from __future__ import annotations

import os
from typing import Any, NamedTuple

from ..errors import ParseError
from ._read import pid_path, read_bytes

__all__ = ["Stat", "Statm", "stat", "statm", "status", "parse_stat", "parse_status",
           "parse_cpu_list"]


class Stat(NamedTuple):
    """All fields of /proc/<pid>/stat as proc(5) names them; ``processor`` is the CPU the task
    last ran on, ``rss`` is in pages, times in clock ticks.
    """

    # Spelled out, not built from a name list, so type checkers see the fields.
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    tty_nr: int
    tpgid: int
    flags: int
    minflt: int
    cminflt: int
    majflt: int
    cmajflt: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    priority: int
    nice: int
    num_threads: int
    itrealvalue: int
    starttime: int
    vsize: int
    rss: int
    rsslim: int
    startcode: int
    endcode: int
    startstack: int
    kstkesp: int
    kstkeip: int
    signal: int
    blocked: int
    sigignore: int
    sigcatch: int
    wchan: int
    nswap: int
    cnswap: int
    exit_signal: int
    processor: int
    rt_priority: int
    policy: int
    delayed_acct_blkio_ticks: int
    guest_time: int
    cguest_time: int
    start_data: int
    end_data: int
    start_brk: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    exit_code: int


_STAT_FIELDS = Stat._fields


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
        # pid, comm and state, then the numbers (kept apart: they differ in type).
        pid, comm = int(head[0]), os.fsdecode(data[open_ + 1:close])
        state = rest[0].decode("ascii")
        if 3 + len(nums) < 44 or 3 + len(nums) > len(_STAT_FIELDS):
            raise ValueError
        # Older kernels print fewer trailing fields; they read as 0.
        nums += [0] * (len(_STAT_FIELDS) - 3 - len(nums))
    except (ValueError, UnicodeDecodeError):
        raise ParseError("unreadable stat line", path=path, lineno=1, line=data) from None
    return Stat(pid, comm, state, *nums)


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
