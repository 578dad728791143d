"""Raw userfaultfd (csrc/uffd.h): the ioctls, event reads and the native fault servers.
Each returns ``-errno`` on failure."""
from __future__ import annotations

from typing import Any, Callable, Final, NamedTuple, NewType

from . import ffi, lib

# An owned ``struct pm_uffd_server *``: pass it to server_stop exactly once.
Server = NewType("Server", object)


unregister: Callable[[int, int, int], int] = lib.pm_uffd_unregister
wake: Callable[[int, int, int], int] = lib.pm_uffd_wake
copy: Callable[[int, int, int, int, int], int] = lib.pm_uffd_copy
zeropage: Callable[[int, int, int, int], int] = lib.pm_uffd_zeropage
continue_: Callable[[int, int, int, int], int] = lib.pm_uffd_continue
writeprotect: Callable[[int, int, int, int], int] = lib.pm_uffd_writeprotect
poison: Callable[[int, int, int, int], int] = lib.pm_uffd_poison
move: Callable[[int, int, int, int, int], int] = lib.pm_uffd_move
# wait(fd, stop_fd, timeout_ms): bit 0 the uffd is readable, bit 1 stop_fd is.
wait: Callable[[int, int, int], int] = lib.pm_uffd_wait
fallback: Callable[[int, int, int], int] = lib.pm_uffd_fallback
server_pin: Callable[[Server, int], int] = lib.pm_uffd_server_pin


def open_(flags: int) -> tuple[int, bool]:
    """(fd or -errno, whether it came from /dev/userfaultfd)."""
    via_dev = ffi.new("int *")
    fd: int = lib.pm_uffd_open(flags, via_dev)
    return fd, bool(via_dev[0])


def api(fd: int, features: int) -> tuple[int, int, int]:
    """UFFDIO_API: (0 or -errno, features available, ioctls available)."""
    out_features = ffi.new("uint64_t *")
    out_ioctls = ffi.new("uint64_t *")
    ret: int = lib.pm_uffd_api(fd, features, out_features, out_ioctls)
    return ret, int(out_features[0]), int(out_ioctls[0])


def register(fd: int, start: int, length: int, mode: int) -> tuple[int, int]:
    """UFFDIO_REGISTER: (0 or -errno, the ioctls the range supports)."""
    out = ffi.new("uint64_t *")
    ret: int = lib.pm_uffd_register(fd, start, length, mode, out)
    return ret, int(out[0])


class RawEvent(NamedTuple):
    """One uffd_msg, flattened (struct pm_uffd_event): PAGEFAULT: flags, address, ptid.
    FORK: a = the child's uffd. REMAP: a = from, b = to, c = len. REMOVE/UNMAP: a, b."""

    kind: int
    ptid: int
    flags: int
    address: int
    a: int
    b: int
    c: int


class Events:
    """A reusable array of ``size`` struct pm_uffd_event."""

    __slots__ = ("_buf", "size")

    def __init__(self, size: int) -> None:
        self._buf = ffi.new("struct pm_uffd_event[]", size)
        self.size = size

    def read(self, fd: int, max_events: int | None = None) -> int:
        """Read pending messages from ``fd``: how many (0 if none), or -errno."""
        n: int = lib.pm_uffd_read(fd, self._buf, self.size if max_events is None else max_events)
        return n

    def take(self, server: Server) -> int:
        """Take the non-fault events a native server kept: how many."""
        n: int = lib.pm_uffd_server_events(server, self._buf, self.size)
        return n

    def __getitem__(self, i: int) -> RawEvent:
        e = self._buf[i]
        return RawEvent(e.kind, e.ptid, e.flags, e.address, e.a, e.b, e.c)


class Pinned:
    """The memory of a contiguous bytes-like object, held for C: its address and length.
    Raises TypeError, ValueError or BufferError as cffi's from_buffer does."""

    __slots__ = ("_keep", "address", "length")

    def __init__(self, data: Any) -> None:
        self._keep = ffi.from_buffer("char[]", data)
        self.address: int = int(ffi.cast("uintptr_t", self._keep))
        self.length: int = len(self._keep)

    def __len__(self) -> int:
        return self.length

    def tobytes(self) -> bytes:
        return bytes(ffi.buffer(self._keep))

    def release(self) -> None:
        ffi.release(self._keep)


class ServerStats(NamedTuple):
    faults: int
    errors: int
    fallbacks: int
    last_error: int   # -errno of the last failure, 0 if none
    events_dropped: int
    last_tid: int     # the last faulter's thread id, 0 unless the kernel reports them


def _stats(st: Any) -> ServerStats:
    return ServerStats(int(st.faults), int(st.errors), int(st.fallbacks), int(st.last_error),
                       int(st.events_dropped), int(st.last_tid))


def server_start(fd: int, kind: int, src: int, src_len: int, base: int, page_size: int,
                 base_page_zero: bool, cpu: int, notify_fd: int) -> tuple[int, Server | None]:
    """Start a native server (see csrc/uffd.h): (0 or -errno, the server)."""
    out = ffi.new("struct pm_uffd_server **")
    ret: int = lib.pm_uffd_server_start(fd, kind, src, src_len, base, page_size,
                                        int(base_page_zero), cpu, notify_fd, out)
    return ret, (Server(out[0]) if ret == 0 else None)


def server_stats(server: Server) -> ServerStats:
    st = ffi.new("struct pm_uffd_server_stats *")
    lib.pm_uffd_server_stats(server, st)
    return _stats(st)


def server_stop(server: Server) -> tuple[int, ServerStats]:
    """Stop and free the server: (0 or -errno, its final counts)."""
    st = ffi.new("struct pm_uffd_server_stats *")
    ret: int = lib.pm_uffd_server_stop(server, st)
    return ret, _stats(st)


READ_BATCH: Final[int] = lib.PM_UFFD_READ_BATCH
KEEP_EVENTS: Final[int] = lib.PM_UFFD_KEEP_EVENTS
SERVE_ZERO: Final[int] = lib.PM_UFFD_SERVE_ZERO
SERVE_FROM: Final[int] = lib.PM_UFFD_SERVE_FROM
# The uapi constants (linux/userfaultfd.h) by their C names: UFFD_FEATURE_*, UFFD_EVENT_*,
# UFFD_PAGEFAULT_FLAG_*, UFFDIO_*_MODE_*, the _UFFDIO_* ioctl numbers.
CONST: Final[dict[str, int]] = {name: getattr(lib, name) for name in dir(lib)
                                if name.startswith(("UFFD_", "UFFDIO_", "_UFFDIO_"))}
