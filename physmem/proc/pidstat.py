"""/proc/<pid>/stat, statm and status."""
from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

from .._syntax import parse_cpulist, parse_hexmask
from .._sysfs import note_skipped
from ..errors import ParseError
from ._read import pid_path, read_bytes

__all__ = ["Stat", "Statm", "stat", "statm", "status", "status_field", "parse_stat",
           "parse_status"]


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


def _ints(raw: str) -> tuple[int, ...]:
    return tuple(int(v) for v in raw.split())


def _bytes_kb(raw: str) -> int:
    number, unit = raw.split()
    if unit != "kB":
        raise ValueError(raw)
    return int(number) * 1024


def _sigq(raw: str) -> tuple[int, int]:
    queued, limit = raw.split("/")
    return int(queued), int(limit)


# One type per field, whatever the process (proc_pid_status(5), fs/proc/array.c). Hex masks
# are hex even when every digit is 0-9: "SigIgn: 0000000000001000" is 4096, not 1000.
_HEX_MASKS = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm", "CapEff",
              "CapBnd", "CapAmb", "Cpus_allowed", "Mems_allowed")
_INTS = ("Tgid", "Ngid", "Pid", "PPid", "TracerPid", "FDSize", "Kthread", "CoreDumping",
         "THP_enabled", "Threads", "NoNewPrivs", "Seccomp", "Seccomp_filters",
         "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
_PARSERS: dict[str, Callable[[str], Any]] = {
    **{k: (lambda raw: parse_hexmask(raw)) for k in _HEX_MASKS},
    **{k: int for k in _INTS},
    "Umask": lambda raw: int(raw, 8),
    "untag_mask": lambda raw: int(raw, 16),  # printed with 0x
    # Tuples: Uid/Gid (real, effective, saved, fs); the others one entry per pid namespace
    # level or per group, so their length varies but their type does not.
    **{k: _ints for k in ("Uid", "Gid", "Groups", "NStgid", "NSpid", "NSpgid", "NSsid")},
    "Cpus_allowed_list": parse_cpulist,
    "Mems_allowed_list": parse_cpulist,
    "SigQ": _sigq,
    "x86_Thread_features": lambda raw: tuple(raw.split()),
    "x86_Thread_features_locked": lambda raw: tuple(raw.split()),
}


def _status_value(key: str, raw: str) -> Any:
    parser = _PARSERS.get(key)
    if parser is not None:
        return parser(raw)
    if raw.endswith(" kB"):  # VmRSS, RssAnon, HugetlbPages...: sizes, always in kB
        return _bytes_kb(raw)
    return raw


def parse_status(data: bytes, path: str = "status", *,
                 skipped: list[str] | None = None) -> dict[str, Any]:
    """/proc/PID/status as a dict; every field has one type, whatever the process:

    * sizes (``VmRSS``, ``RssAnon``, ... every ``kB`` field): int, bytes;
    * hex masks (``SigPnd``, ``ShdPnd``, ``SigBlk``, ``SigIgn``, ``SigCgt``, ``Cap*``,
      ``Cpus_allowed``, ``Mems_allowed``) and ``untag_mask``: int (bit n = signal n+1,
      capability n, CPU n, node n);
    * ``Umask``: int, read as octal (``0022`` is 18);
    * ``Cpus_allowed_list``/``Mems_allowed_list``: frozenset of ints;
    * ``Uid``/``Gid`` (real, effective, saved, fs), ``Groups``, ``NStgid``, ``NSpid``,
      ``NSpgid``, ``NSsid`` (one entry per pid namespace level): tuple of ints;
    * ``SigQ``: tuple (queued, limit); ``x86_Thread_features*``: tuple of str;
    * the counters and flags (``Pid``, ``PPid``, ``Threads``, ``FDSize``, ``Seccomp``,
      ``voluntary_ctxt_switches``, ...): int;
    * everything else (``Name``, ``State``, ``Speculation_*``, fields newer than physmem): str.

    A line that does not read raises ParseError; with a ``skipped`` list it is left out
    instead and noted there (one odd field costs that field only).
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
            exc = ParseError("unreadable status line", path=path, lineno=lineno, line=line)
            note_skipped(skipped, f"{path} {key.decode(errors='replace')}", exc)
    return out


def status_field(name: str, pid: int | None = None, proc_root: str = "/proc") -> Any:
    """One field of /proc/PID/status, typed as :func:`parse_status` types it (None where
    the kernel has no such field); a tenth of the cost of parsing them all."""
    path = pid_path(proc_root, pid, "status")
    data = read_bytes(path, pid)
    key = name.encode("ascii") + b":"
    at = data.find(b"\n" + key)
    if at < 0 and not data.startswith(key):
        return None
    start = at + 1 if at >= 0 else 0
    end = data.find(b"\n", start)
    line = data[start:] if end < 0 else data[start:end]
    return parse_status(line, path).get(name)


def status(pid: int | None = None, proc_root: str = "/proc", *,
           skipped: list[str] | None = None) -> dict[str, Any]:
    """/proc/PID/status parsed by :func:`parse_status`."""
    path = pid_path(proc_root, pid, "status")
    return parse_status(read_bytes(path, pid), path, skipped=skipped)
