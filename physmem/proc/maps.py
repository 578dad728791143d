"""/proc/<pid>/maps: one :class:`Vma` per mapping."""
from __future__ import annotations

import enum
import functools
import os
from itertools import repeat
from typing import NamedTuple

from ._cparse import Parsed, parse
from ._read import pid_path, read_bytes

__all__ = ["Prot", "VmaKind", "Device", "Vma", "maps", "parse_maps"]


class Prot(enum.IntFlag):
    """Access permissions of a mapping (the ``rwx`` of ``rwxp``)."""

    NONE = 0
    READ = 1
    WRITE = 2
    EXEC = 4


class VmaKind(enum.Enum):
    """What backs a mapping, from its name column."""

    FILE = "file"
    ANONYMOUS = "anonymous"
    HEAP = "heap"
    STACK = "stack"
    THREAD_STACK = "thread_stack"   # [stack:<tid>], Linux 3.4 to 4.4
    VDSO = "vdso"
    VVAR = "vvar"                   # [vvar], and [vvar_vclock] since 6.13
    VSYSCALL = "vsyscall"
    ANON_NAMED = "anon_named"       # [anon:<name>] from PR_SET_VMA_ANON_NAME
    ANON_SHMEM = "anon_shmem"       # [anon_shmem:<name>]
    OTHER = "other"                 # [uprobes], anon_inode:..., future pseudo names


class Device(NamedTuple):
    major: int
    minor: int


class Vma(NamedTuple):
    """One mapping. ``path`` is "" for anonymous memory, the ``[...]`` name for pseudo ones."""

    start: int
    end: int
    prot: Prot
    shared: bool        # MAP_SHARED ('s'); False is private copy-on-write ('p')
    offset: int         # file offset in bytes
    device: Device
    inode: int
    path: str
    kind: VmaKind
    deleted: bool       # the file was unlinked (the kernel's " (deleted)" suffix)

    @property
    def size(self) -> int:
        return self.end - self.start


_PROT = tuple(Prot(i & 7) for i in range(16))
_SHARED = tuple(bool(i & 8) for i in range(16))
_PSEUDO = {
    b"[heap]": VmaKind.HEAP, b"[stack]": VmaKind.STACK, b"[vdso]": VmaKind.VDSO,
    b"[vvar]": VmaKind.VVAR, b"[vvar_vclock]": VmaKind.VVAR, b"[vsyscall]": VmaKind.VSYSCALL,
}
_DELETED = b" (deleted)"


@functools.lru_cache(maxsize=8192)
def resolve_name(raw: bytes) -> tuple[str, VmaKind, bool]:
    """(path, kind, deleted) for a raw name column; cached, as most names repeat."""
    if not raw:
        return "", VmaKind.ANONYMOUS, False
    if raw[:1] == b"/":
        deleted = raw.endswith(_DELETED)
        if deleted:
            raw = raw[: -len(_DELETED)]
        # The kernel octal-escapes only newlines in paths (so a literal "\012" is ambiguous).
        return os.fsdecode(raw.replace(b"\\012", b"\n")), VmaKind.FILE, deleted
    kind = _PSEUDO.get(raw)
    if kind is None:
        if raw.startswith(b"[stack:"):
            kind = VmaKind.THREAD_STACK
        elif raw.startswith(b"[anon:"):
            kind = VmaKind.ANON_NAMED
        elif raw.startswith(b"[anon_shmem:"):
            kind = VmaKind.ANON_SHMEM
        else:
            kind = VmaKind.OTHER
    return os.fsdecode(raw), kind, False


class _Devices(dict):
    def __missing__(self, dev: int) -> Device:
        d = self[dev] = Device(dev >> 32, dev & 0xFFFFFFFF)
        return d


_devices = _Devices()


def build_vmas(p: Parsed) -> list[Vma]:
    """Vma records from the parser's columns (column-wise, so the loops run in C)."""
    v = p.vmas
    if not len(v):
        return []
    perms = v["perms"].tolist()
    names = [resolve_name(raw) for raw in p.names]
    named = list(map(names.__getitem__, v["name_id"].tolist()))
    paths, kinds, deleted = zip(*named)
    cols = zip(v["start"].tolist(), v["end"].tolist(), map(_PROT.__getitem__, perms),
               map(_SHARED.__getitem__, perms), v["offset"].tolist(),
               map(_devices.__getitem__, v["dev"].tolist()), v["inode"].tolist(),
               paths, kinds, deleted)
    return list(map(tuple.__new__, repeat(Vma), cols))


def parse_maps(data: bytes, path: str = "maps") -> list[Vma]:
    """Parse the text of a maps file."""
    return build_vmas(parse(data, False, path))


def maps(pid: int | None = None, proc_root: str = "/proc") -> list[Vma]:
    """The mappings of process ``pid`` (default: this process), in address order."""
    path = pid_path(proc_root, pid, "maps")
    return parse_maps(read_bytes(path, pid), path)
