"""/proc/<pid>/numa_maps: memory policy and per-node page counts of each mapping."""
from __future__ import annotations

import os
from typing import NamedTuple

from .._records import hex_fields
from ..errors import ParseError
from ._read import pid_path, read_bytes, u64

__all__ = ["NumaMap", "numa_maps", "parse_numa_maps"]

_COUNTS = ("anon", "dirty", "mapped", "mapmax", "swapcache", "writeback")


@hex_fields("address")
class NumaMap(NamedTuple):
    """One numa_maps line. Page counts are in pages of ``kernelpagesize`` bytes."""

    address: int
    policy: str                 # "default", "bind:0-1", "interleave:0,2", "prefer:1"...
    file: str | None            # file=... path, else None
    heap: bool
    stack: bool
    huge: bool
    anon: int
    dirty: int
    mapped: int
    mapmax: int
    swapcache: int
    active: int | None          # only printed when it differs from the page count
    writeback: int
    nodes: dict[int, int]       # N<node>=pages
    kernelpagesize: int | None  # bytes; absent on lines with no pages (vdso, vvar)

    @property
    def pages(self) -> int:
        return sum(self.nodes.values())


def parse_numa_maps(data: bytes, path: str = "numa_maps") -> list[NumaMap]:
    """Parse the text of a numa_maps file (addresses and counts must fit 64 bits, node
    numbers 32, as the kernel prints them; anything else is a ParseError)."""
    out = []
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        try:
            out.append(_line(line))
        except (ValueError, IndexError, UnicodeDecodeError):
            raise ParseError("unreadable numa_maps line", path=path, lineno=lineno,
                             line=line) from None
    return out


def _line(line: bytes) -> NumaMap:
    head, _, rest = line.partition(b" file=")
    words = head.split(b" ")
    address = u64(words[0], 16)
    policy = words[1].decode("ascii")
    if not policy or not words[0]:
        raise ValueError(line)
    file = None
    tail = words[2:]
    if rest:
        # The path may contain spaces: it runs up to the first " key=" word the kernel emits.
        cut = len(rest)
        for key in (b" huge", b" anon=", b" dirty=", b" mapped=", b" mapmax=", b" swapcache=",
                    b" active=", b" writeback=", b" N", b" kernelpagesize_kB="):
            i = rest.find(key)
            while i >= 0 and key == b" N" and not rest[i + 2:i + 3].isdigit():
                i = rest.find(key, i + 1)
            if 0 <= i < cut:
                cut = i
        file = os.fsdecode(rest[:cut].replace(b"\\012", b"\n"))
        tail = rest[cut:].split()
    counts = dict.fromkeys(_COUNTS, 0)
    active: int | None = None   # the only count that may be absent rather than 0
    nodes: dict[int, int] = {}
    heap = stack = huge = False
    kps = None
    for w in tail:
        if not w:
            continue
        key, eq, val = w.partition(b"=")
        if not eq:
            if w == b"heap":
                heap = True
            elif w == b"stack":
                stack = True
            elif w == b"huge":
                huge = True
            else:
                raise ValueError(w)
            continue
        if key[:1] == b"N" and key[1:].isdigit():
            node = u64(key[1:])
            if node >= 1 << 32:
                raise ValueError(w)
            nodes[node] = u64(val)
        elif key == b"kernelpagesize_kB":
            kps = u64(val) << 10
            if kps >= 1 << 64:
                raise ValueError(w)
        else:
            name = key.decode("ascii")
            if name == "active":
                active = u64(val)
            elif name in counts:
                counts[name] = u64(val)
            else:
                raise ValueError(w)
    return NumaMap(address, policy, file, heap, stack, huge, counts["anon"], counts["dirty"],
                   counts["mapped"], counts["mapmax"], counts["swapcache"], active,
                   counts["writeback"], nodes, kps)


def numa_maps(pid: int | None = None, proc_root: str = "/proc") -> list[NumaMap]:
    """The numa_maps of ``pid`` (default: this process)."""
    path = pid_path(proc_root, pid, "numa_maps")
    return parse_numa_maps(read_bytes(path, pid), path)
