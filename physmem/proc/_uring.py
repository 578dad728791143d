"""io_uring rings of a process and the fixed buffers registered in them, from
/proc/<pid>/fdinfo/<fd>.

A ring's fdinfo lists its buffer table after ``UserBufs:  N`` (the table's size), one line
per slot, ``  <slot>: 0x<address>/<length>`` for a registered buffer and ``<slot>: <none>``
for an empty slot of a sparse table (kernels before 6.x list only the registered ones).
Registered buffers are pinned for the long term (FOLL_LONGTERM): that is how physmem pins
DMA memory, and how it sees pins other processes hold.
"""
from __future__ import annotations

from typing import NamedTuple

from .._records import hex_fields
from ..errors import ParseError
from ._read import pid_path, read_bytes

__all__ = ["UringBuffer", "parse_uring_buffers", "uring_buffers", "uring_fds"]

RING_TARGET = "anon_inode:[io_uring]"


@hex_fields("address")
class UringBuffer(NamedTuple):
    """One registered io_uring fixed buffer: ring ``fd``, table ``slot``, virtual range."""

    fd: int
    slot: int
    address: int
    size: int


def parse_uring_buffers(data: bytes, fd: int = -1, path: str = "fdinfo") -> list[UringBuffer]:
    """The registered buffers an io_uring fdinfo lists (empty slots left out)."""
    out: list[UringBuffer] = []
    lines = data.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(b"UserBufs:")), None)
    if start is None:
        return out
    for lineno, line in enumerate(lines[start + 1:], start + 2):
        if not line.startswith((b" ", b"\t")):
            break  # the next section (PollList:, CqOverflowList:, ...)
        slot, sep, rest = line.strip().partition(b":")
        rest = rest.strip()
        if rest == b"<none>":
            continue
        address, slash, size = rest.partition(b"/")
        try:
            if not sep or not slash:
                raise ValueError
            out.append(UringBuffer(fd, int(slot), int(address, 16), int(size)))
        except ValueError:
            raise ParseError("unreadable io_uring buffer line", path=path, lineno=lineno,
                             line=line) from None
    return out


def uring_buffers(fd: int, pid: int | None = None, proc_root: str = "/proc") -> list[UringBuffer]:
    """The registered buffers of ring ``fd`` of ``pid`` (default: this process)."""
    path = pid_path(proc_root, pid, f"fdinfo/{fd}")
    return parse_uring_buffers(read_bytes(path, pid), fd, path)


def uring_fds(pid: int | None = None, proc_root: str = "/proc") -> list[int]:
    """The file descriptors of ``pid`` that are io_uring rings."""
    from .fds import fd_targets

    return sorted(fd for fd, target in fd_targets(pid, proc_root).items()
                  if target == RING_TARGET)

