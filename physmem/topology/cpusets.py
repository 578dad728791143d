"""Where this process may run: its affinity (/proc/self/status) and its cgroup cpuset.

cgroup v2 keeps ``cpuset.cpus.effective``/``cpuset.mems.effective``/``cpuset.cpus.partition``;
v1 keeps ``cpuset.cpus`` (plain ``cpus`` when mounted with ``noprefix`` or as the legacy
``cpuset`` filesystem) and exclusivity flags. Mount points in /proc/mounts are absolute, so
they are resolved against the parent of ``proc_root`` (``/`` for the live system).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .._args import as_pid
from .._syntax import parse_cpulist
from .._sysfs import note_skipped, read_optional
from ..errors import ParseError
from ..proc import _read as proc_files
from ..proc._mounts import mounts as read_mounts
from ..proc.pidstat import parse_status

__all__ = ["Affinity", "Cpuset", "read_affinity", "read_cpuset"]


@dataclass(frozen=True)
class Affinity:
    """``Cpus_allowed_list``/``Mems_allowed_list`` of the process (``None`` if unknown)."""

    cpus: frozenset[int] | None
    mems: frozenset[int] | None


@dataclass(frozen=True)
class Cpuset:
    """The cpuset cgroup the process is in. v1-only and v2-only fields are ``None`` otherwise."""

    version: int
    path: str  # the cgroup's path inside its hierarchy, e.g. "/user.slice"
    directory: str  # where its files are on disk
    cpus: frozenset[int] | None  # effective CPUs
    mems: frozenset[int] | None  # effective memory nodes
    partition: str | None = None  # v2: member, root, isolated (and "invalid" variants)
    isolated: frozenset[int] | None = None  # v2 root: CPUs in isolated partitions (6.7+)
    cpu_exclusive: bool | None = None
    mem_exclusive: bool | None = None
    memory_spread_page: bool | None = None
    memory_spread_slab: bool | None = None


def read_affinity(proc_root: str = "/proc", pid: int | str = "self", *,
                  skipped: list[str] | None = None) -> Affinity:
    """The process's allowed CPUs and nodes; ``None`` each where status does not say."""
    path = f"{proc_root}/{_pid_dir(pid)}/status"
    data = proc_files.read_optional(path)
    found = {} if data is None else parse_status(data, path, skipped=skipped)
    return Affinity(found.get("Cpus_allowed_list"), found.get("Mems_allowed_list"))


def _pid_dir(pid: int | str) -> str:
    """The /proc directory of ``pid``: ``self``, or a process id checked as every pid is (a
    str such as "../x", or True, would otherwise name some other file)."""
    return "self" if isinstance(pid, str) and pid == "self" else str(as_pid(pid))


def _mounts(proc_root: str) -> list[tuple[str, str, set[str]]]:
    try:
        return [(m.path, m.fstype, set(m.options)) for m in read_mounts(proc_root)]
    except FileNotFoundError:
        return []


def _cgroup_paths(proc_root: str, pid: int | str) -> tuple[str | None, str | None]:
    """(v1 cpuset path, v2 path) from /proc/PID/cgroup; falls back to /proc/PID/cpuset."""
    v1 = v2 = None
    data = proc_files.read_optional(f"{proc_root}/{pid}/cgroup")
    for line in (data or b"").splitlines():
        hier, _, rest = line.partition(b":")
        controllers, _, path = rest.partition(b":")
        if hier == b"0" and controllers == b"":
            v2 = os.fsdecode(path)
        elif b"cpuset" in controllers.split(b","):
            v1 = os.fsdecode(path)
    if data is None:
        legacy = proc_files.read_optional(f"{proc_root}/{pid}/cpuset")
        if legacy is not None:
            v1 = v2 = os.fsdecode(legacy.strip()) or "/"
    return v1, v2


def _flag(directory: str, *names: str) -> bool | None:
    for name in names:
        data = read_optional(f"{directory}/{name}")
        if data is not None:
            return data.strip() == b"1"
    return None


def _list(directory: str, *names: str, skipped: list[str] | None) -> frozenset[int] | None:
    # The first of ``names`` that exists; one that does not parse costs this field only.
    for name in names:
        path = f"{directory}/{name}"
        data = read_optional(path)
        if data is not None:
            try:
                return parse_cpulist(data, path)
            except ParseError as exc:
                note_skipped(skipped, path, exc)
                return None
    return None


def _join(root: str, mount: str, path: str) -> str:
    return os.path.normpath(os.path.join(root, mount.lstrip("/"), path.lstrip("/")))


def read_cpuset(proc_root: str = "/proc", pid: int | str = "self", *,
                skipped: list[str] | None = None) -> Cpuset | None:
    """This process's cpuset, or ``None`` when no cpuset hierarchy is mounted/known.

    With ``skipped``, a cpuset file that does not parse reads as missing, noted there.
    """
    root = os.path.dirname(os.path.abspath(proc_root)) or "/"
    v1_path, v2_path = _cgroup_paths(proc_root, _pid_dir(pid))
    mounts = _mounts(proc_root)
    # The cpuset controller lives in exactly one place: a v1 hierarchy if one is mounted.
    if v1_path is not None:
        for mnt, fstype, opts in mounts:
            if fstype == "cpuset" or (fstype == "cgroup" and "cpuset" in opts):
                d = _join(root, mnt, v1_path)
                return Cpuset(
                    version=1, path=v1_path, directory=d,
                    cpus=_list(d, "cpuset.effective_cpus", "effective_cpus", "cpuset.cpus", "cpus",
                               skipped=skipped),
                    mems=_list(d, "cpuset.effective_mems", "effective_mems", "cpuset.mems", "mems",
                               skipped=skipped),
                    cpu_exclusive=_flag(d, "cpuset.cpu_exclusive", "cpu_exclusive"),
                    mem_exclusive=_flag(d, "cpuset.mem_exclusive", "mem_exclusive"),
                    memory_spread_page=_flag(d, "cpuset.memory_spread_page", "memory_spread_page"),
                    memory_spread_slab=_flag(d, "cpuset.memory_spread_slab", "memory_spread_slab"),
                )
    if v2_path is not None:
        for mnt, fstype, _ in mounts:
            if fstype != "cgroup2":
                continue
            top = _join(root, mnt, "/")
            d = _join(root, mnt, v2_path)
            # Without cpuset enabled in this subtree the nearest ancestor's files apply.
            probe = d
            while True:
                cpus = _list(probe, "cpuset.cpus.effective", skipped=skipped)
                if cpus is not None or probe == top or len(probe) <= len(top):
                    break
                probe = os.path.dirname(probe)
            if cpus is None:
                continue
            part = read_optional(f"{d}/cpuset.cpus.partition")
            return Cpuset(
                version=2, path=v2_path, directory=d, cpus=cpus,
                mems=_list(probe, "cpuset.mems.effective", skipped=skipped),
                partition=None if part is None else part.strip().decode(errors="replace"),
                isolated=_list(top, "cpuset.cpus.isolated", skipped=skipped),
            )
    return None
