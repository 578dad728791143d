"""userfaultfd: handle page faults of your own memory in user space.

Open a :class:`UserFaultFd`, ``register`` a range (MISSING, WP, MINOR), then resolve its
faults: by hand (``read_events`` + ``copy``/``zeropage``/``continue_``/``writeprotect``), with
a Python handler on a thread (``serve(handler)``), or with the C fast paths ``serve_zero()`` /
``serve_from(buffer)``, which run on a native thread that never takes the GIL.

A fault blocks the faulting thread until it is resolved. With ``serve(handler)`` the handler
needs the GIL, so touch registered memory only from code that releases the GIL (C code,
:meth:`physmem.Mapping.touch`, other processes): a Python thread faulting while holding the GIL
would wait for a handler that can never run. Closing the UserFaultFd wakes every waiting
thread; their faults are then resolved as if the range had never been registered.
"""
from __future__ import annotations

import dataclasses
import enum
import errno as _errno
import os
import threading
from typing import Any, Callable


from ._records import hex_fields
from ._args import (I32_MAX, as_bool, as_buffer, as_callable, as_flags, as_int, as_multiple,
                    as_nonneg, as_positive, as_timeout, flag_text, is_int)
from ._fdfile import FdFile
from ._features import unavailable
from ._raw import SINCE, check, missing, older_than
from ._raw import uffd as _raw
from .errors import FileMissing, InvalidArgument, PhysmemError, ProcessGone, error_from_errno
from .mapping import PAGE_SIZE, Mapping, _check_page_size
from .proc import pidstat

__all__ = ["UserFaultFd", "Feature", "Mode", "Ioctl", "EventKind", "FaultFlag", "Event",
           "Server", "NativeServer"]


class Feature(enum.IntFlag):
    """``UFFD_FEATURE_*`` flags negotiated with UFFDIO_API."""

    PAGEFAULT_FLAG_WP = _raw.CONST["UFFD_FEATURE_PAGEFAULT_FLAG_WP"]
    EVENT_FORK = _raw.CONST["UFFD_FEATURE_EVENT_FORK"]
    EVENT_REMAP = _raw.CONST["UFFD_FEATURE_EVENT_REMAP"]
    EVENT_REMOVE = _raw.CONST["UFFD_FEATURE_EVENT_REMOVE"]
    MISSING_HUGETLBFS = _raw.CONST["UFFD_FEATURE_MISSING_HUGETLBFS"]
    MISSING_SHMEM = _raw.CONST["UFFD_FEATURE_MISSING_SHMEM"]
    EVENT_UNMAP = _raw.CONST["UFFD_FEATURE_EVENT_UNMAP"]
    SIGBUS = _raw.CONST["UFFD_FEATURE_SIGBUS"]
    THREAD_ID = _raw.CONST["UFFD_FEATURE_THREAD_ID"]
    MINOR_HUGETLBFS = _raw.CONST["UFFD_FEATURE_MINOR_HUGETLBFS"]
    MINOR_SHMEM = _raw.CONST["UFFD_FEATURE_MINOR_SHMEM"]
    EXACT_ADDRESS = _raw.CONST["UFFD_FEATURE_EXACT_ADDRESS"]
    WP_HUGETLBFS_SHMEM = _raw.CONST["UFFD_FEATURE_WP_HUGETLBFS_SHMEM"]
    WP_UNPOPULATED = _raw.CONST["UFFD_FEATURE_WP_UNPOPULATED"]
    POISON = _raw.CONST["UFFD_FEATURE_POISON"]
    WP_ASYNC = _raw.CONST["UFFD_FEATURE_WP_ASYNC"]
    MOVE = _raw.CONST["UFFD_FEATURE_MOVE"]


class Mode(enum.IntFlag):
    """What to intercept in a registered range (``UFFDIO_REGISTER_MODE_*``)."""

    MISSING = _raw.CONST["UFFDIO_REGISTER_MODE_MISSING"]
    WP = _raw.CONST["UFFDIO_REGISTER_MODE_WP"]
    MINOR = _raw.CONST["UFFDIO_REGISTER_MODE_MINOR"]




class Ioctl(enum.IntFlag):
    """The ioctls a range (or the fd) supports, as UFFDIO_REGISTER/UFFDIO_API report them."""

    REGISTER = 1 << _raw.CONST["_UFFDIO_REGISTER"]
    UNREGISTER = 1 << _raw.CONST["_UFFDIO_UNREGISTER"]
    WAKE = 1 << _raw.CONST["_UFFDIO_WAKE"]
    COPY = 1 << _raw.CONST["_UFFDIO_COPY"]
    ZEROPAGE = 1 << _raw.CONST["_UFFDIO_ZEROPAGE"]
    MOVE = 1 << _raw.CONST["_UFFDIO_MOVE"]
    WRITEPROTECT = 1 << _raw.CONST["_UFFDIO_WRITEPROTECT"]
    CONTINUE = 1 << _raw.CONST["_UFFDIO_CONTINUE"]
    POISON = 1 << _raw.CONST["_UFFDIO_POISON"]
    API = 1 << _raw.CONST["_UFFDIO_API"]


class EventKind(enum.IntEnum):
    PAGEFAULT = _raw.CONST["UFFD_EVENT_PAGEFAULT"]
    FORK = _raw.CONST["UFFD_EVENT_FORK"]
    REMAP = _raw.CONST["UFFD_EVENT_REMAP"]
    REMOVE = _raw.CONST["UFFD_EVENT_REMOVE"]
    UNMAP = _raw.CONST["UFFD_EVENT_UNMAP"]


class FaultFlag(enum.IntFlag):
    WRITE = _raw.CONST["UFFD_PAGEFAULT_FLAG_WRITE"]
    WP = _raw.CONST["UFFD_PAGEFAULT_FLAG_WP"]
    MINOR = _raw.CONST["UFFD_PAGEFAULT_FLAG_MINOR"]


@hex_fields("address", "start", "end")
@dataclasses.dataclass(frozen=True)
class Event:
    """One userfaultfd message.

    PAGEFAULT: ``address``, ``flags``, ``thread_id`` (with Feature.THREAD_ID). FORK: ``fd``,
    the child's userfaultfd (yours to handle and close). REMAP: ``from_``, ``to``,
    ``length``. REMOVE/UNMAP: ``start``, ``end``.
    """

    kind: EventKind
    address: int = 0
    flags: FaultFlag = FaultFlag(0)
    thread_id: int = 0
    fd: int = -1
    from_: int = 0
    to: int = 0
    length: int = 0
    start: int = 0
    end: int = 0

    @classmethod
    def _from_c(cls, e: _raw.RawEvent) -> Event:
        kind = EventKind(e.kind)
        if kind is EventKind.PAGEFAULT:
            return cls(kind, address=e.address, flags=FaultFlag(e.flags), thread_id=e.ptid)
        if kind is EventKind.FORK:
            return cls(kind, fd=int(e.a))
        if kind is EventKind.REMAP:
            return cls(kind, from_=e.a, to=e.b, length=e.c)
        return cls(kind, start=e.a, end=e.b)


def _events(buf: _raw.Events, n: int) -> list[Event]:
    return [Event._from_c(buf[i]) for i in range(n)]


def _page_size_arg(value: Any) -> int:
    """The base page size or a huge page size this kernel offers."""
    return _check_page_size(as_int(value, "page_size"))


class UserFaultFd(FdFile):
    """A userfaultfd with ``features`` negotiated (``Feature`` flags).

    ``features`` is what was enabled, ``available_features`` what the kernel offers,
    ``ioctls`` the fd-level ioctls. ``nonblocking`` makes ``read_events`` return at once.
    ``user_mode_only`` (UFFD_USER_MODE_ONLY) is what unprivileged users may open when
    vm.unprivileged_userfaultfd is 0.
    """

    def __init__(self, *, features: Feature | int = Feature(0), nonblocking: bool = True,
                 user_mode_only: bool = False) -> None:
        self._fd = -1
        nonblocking = as_bool(nonblocking, "nonblocking")
        user_mode_only = as_bool(user_mode_only, "user_mode_only")
        self._servers: list[Server | NativeServer] = []
        self._ranges: list[tuple[int, int, int, Mode]] = []  # start, length, page size, mode
        self._lock = threading.Lock()
        features = Feature(as_flags(features, "features", sum(Feature)))
        flags = os.O_CLOEXEC | (os.O_NONBLOCK if nonblocking else 0)
        if user_mode_only:
            flags |= _raw.CONST["UFFD_USER_MODE_ONLY"]
        fd, via_dev = _raw.open_(flags)
        if fd == -_errno.ENOSYS:
            raise missing("syscall userfaultfd")
        if fd == -_errno.EINVAL and user_mode_only \
                and older_than("userfaultfd flag UFFD_USER_MODE_ONLY"):
            raise missing("userfaultfd flag UFFD_USER_MODE_ONLY", err=_errno.EINVAL)
        if fd < 0:
            raise error_from_errno(
                -fd, "open userfaultfd",
                hint=("set sysctl vm.unprivileged_userfaultfd=1, pass user_mode_only=True, or "
                      "grant access to /dev/userfaultfd") if fd == -_errno.EPERM else None)
        self._fd = fd
        self.via_device = via_dev
        ret, out_features, out_ioctls = _raw.api(fd, int(features))
        if ret < 0:
            os.close(fd)
            self._fd = -1
            if ret == -_errno.EINVAL:
                absent = features & ~_available_features()
                for flag in Feature:
                    if flag & absent:
                        raise missing(f"userfaultfd feature UFFD_FEATURE_{flag.name}",
                                      err=_errno.EINVAL)
            hint = ("Feature.EVENT_FORK needs CAP_SYS_PTRACE" if ret == -_errno.EPERM else None)
            raise error_from_errno(-ret, "UFFDIO_API", hint=hint)
        if features & Feature.WP_ASYNC:
            features |= Feature.WP_UNPOPULATED  # the kernel implies it
        self.features = features
        self.available_features = Feature(out_features & sum(Feature))
        self.ioctls = Ioctl(out_ioctls & sum(Ioctl))

    # ---- basics ------------------------------------------------------------------------

    @property
    def fd(self) -> int:
        return self._checked_fd()

    def _require_open(self) -> None:
        self._checked_fd()

    def __repr__(self) -> str:
        if self._fd < 0:
            return "<UserFaultFd closed>"
        return f"<UserFaultFd fd={self._fd} features={flag_text(self.features)}>"

    def close(self) -> None:
        """Stop every server, then close the fd: waiting faulters wake and their faults are
        resolved normally. Closing twice is fine."""
        if self._fd < 0:
            return
        for server in list(self._servers):
            server.stop(raise_errors=False)
        super().close()

    # ---- ranges ------------------------------------------------------------------------

    def _span(self, target: int | Mapping, length: int | None,
              page_size: int | None = None) -> tuple[int, int, int]:
        if isinstance(target, Mapping):
            start = target.address
            ps = target.page_size
            if length is None:
                length = -(-target.size // ps) * ps
        else:
            start = as_nonneg(target, "address")
            ps = self._page_size_at(start) if page_size is None else _page_size_arg(page_size)
            if length is None:
                raise InvalidArgument("length is required when address is an int")
        length = as_nonneg(length, "length")
        if start % ps or length % ps or not length:
            raise InvalidArgument(
                f"address={start:#x}, length={length:#x} must be non-empty and aligned to the "
                f"page size {ps:#x}")
        return start, length, ps

    def _page_size_at(self, address: int) -> int:
        for start, length, ps, _ in self._ranges:
            if start <= address < start + length:
                return ps
        return PAGE_SIZE

    def register(self, target: int | Mapping, length: int | None = None,
                 mode: Mode | int = Mode.MISSING, *, page_size: int | None = None) -> Ioctl:
        """UFFDIO_REGISTER a Mapping (or ``address``, ``length``) for ``mode`` faults.
        Returns the ioctls the range supports."""
        self._require_open()
        mode = Mode(as_flags(mode, "mode", sum(Mode)))
        if not mode:
            raise InvalidArgument("mode must include MISSING, WP and/or MINOR")
        start, length, ps = self._span(target, length, page_size)
        for server in self._servers:
            if server.running and server.page_size != ps:
                raise InvalidArgument(
                    f"a server filling {server.page_size:#x}-byte pages is running; it cannot "
                    f"serve a range of {ps:#x}-byte pages: stop() it first")
            if isinstance(server, NativeServer) and server.running and mode & ~Mode.MISSING:
                raise InvalidArgument(_NATIVE_MISSING_ONLY.format(mode=flag_text(mode)))
        ret, out = _raw.register(self._fd, start, length, int(mode))
        if ret == -_errno.EINVAL:
            for flag in Mode:
                if mode & flag and older_than(f"UFFDIO_REGISTER_MODE_{flag.name}"):
                    raise missing(f"UFFDIO_REGISTER_MODE_{flag.name}", err=_errno.EINVAL)
        if ret < 0:
            hint = {
                _errno.EBUSY: "the range is registered with another userfaultfd",
                _errno.EINVAL: "the range must be mapped and of a kind this mode supports "
                               "(MINOR: shmem/hugetlb; WP on shmem/hugetlb needs "
                               "Feature.WP_HUGETLBFS_SHMEM)",
            }.get(-ret)
            raise error_from_errno(-ret, f"UFFDIO_REGISTER {flag_text(mode)} {start:#x}+{length:#x}",
                                   address=start, hint=hint)
        with self._lock:
            # Registering again replaces the mode of what it overlaps, unless that mode
            # already includes the new one: then the kernel leaves it as it was.
            kept = [r for r in self._ranges if r[0] + r[1] <= start or r[0] >= start + length]
            for r in self._ranges:
                if r not in kept and r[3] & mode == mode:
                    mode |= r[3]
            self._ranges = kept + [(start, length, ps, mode)]
        return Ioctl(out & sum(Ioctl))

    def unregister(self, target: int | Mapping, length: int | None = None) -> None:
        self._require_open()
        start, length, _ = self._span(target, length)
        check(_raw.unregister(self._fd, start, length),
              f"UFFDIO_UNREGISTER {start:#x}+{length:#x}", address=start)
        with self._lock:
            self._ranges = [r for r in self._ranges
                            if r[0] + r[1] <= start or r[0] >= start + length]

    # ---- resolving faults --------------------------------------------------------------

    def _resolve(self, ret: int, what: str, address: int) -> int:
        if ret < 0:
            hint = {_errno.EEXIST: "the page is already present",
                    _errno.EAGAIN: "the address space is changing (an event is pending); read "
                                   "events, then retry",
                    _errno.ENOENT: "the range is not registered (or was unmapped)"}.get(-ret)
            raise error_from_errno(-ret, what, address=address, hint=hint)
        return int(ret)

    def copy(self, dst: int, src: int | Any, length: int | None = None, *, wake: bool = True,
             write_protect: bool = False) -> int:
        """UFFDIO_COPY ``length`` bytes from ``src`` (an address or a bytes-like object) to
        the registered, page-aligned ``dst``; returns the bytes copied."""
        self._require_open()
        keep = None
        if is_int(src):
            src_addr = as_nonneg(src, "src")
            if length is None:
                raise InvalidArgument("length is required when src is an address")
        else:
            keep = _raw.Pinned(as_buffer(src, "src (an address or a buffer)"))
            src_addr = keep.address
            if length is None:
                length = len(keep)
            elif as_nonneg(length, "length") > len(keep):
                raise InvalidArgument(f"length={length} exceeds the {len(keep)}-byte source")
        wake, write_protect = as_bool(wake, "wake"), as_bool(write_protect, "write_protect")
        dst, length, _ = self._span(dst, length)
        mode = (0 if wake else _raw.CONST["UFFDIO_COPY_MODE_DONTWAKE"]) | \
            (_raw.CONST["UFFDIO_COPY_MODE_WP"] if write_protect else 0)
        ret = _raw.copy(self._fd, dst, src_addr, length, mode)
        del keep
        return self._resolve(ret, f"UFFDIO_COPY to {dst:#x} ({length} bytes)", dst)

    def zeropage(self, address: int, length: int, *, wake: bool = True) -> int:
        """UFFDIO_ZEROPAGE: map the zero page over ``length`` bytes; returns bytes mapped."""
        self._require_open()
        wake = as_bool(wake, "wake")
        address, length, _ = self._span(address, length)
        mode = 0 if wake else _raw.CONST["UFFDIO_ZEROPAGE_MODE_DONTWAKE"]
        return self._resolve(_raw.zeropage(self._fd, address, length, mode),
                             f"UFFDIO_ZEROPAGE {address:#x}+{length:#x}", address)

    def continue_(self, address: int, length: int, *, wake: bool = True,
                  write_protect: bool = False) -> int:
        """UFFDIO_CONTINUE: resolve MINOR faults by mapping the page-cache pages as they are."""
        self._require_open()
        wake, write_protect = as_bool(wake, "wake"), as_bool(write_protect, "write_protect")
        address, length, _ = self._span(address, length)
        mode = (0 if wake else _raw.CONST["UFFDIO_CONTINUE_MODE_DONTWAKE"]) | \
            (_raw.CONST["UFFDIO_CONTINUE_MODE_WP"] if write_protect else 0)
        return self._resolve(_raw.continue_(self._fd, address, length, mode),
                             f"UFFDIO_CONTINUE {address:#x}+{length:#x}", address)

    def writeprotect(self, address: int, length: int, enable: bool, *,
                     wake: bool = True) -> None:
        """UFFDIO_WRITEPROTECT: protect (``enable``) or unprotect a WP-registered range;
        unprotecting wakes the threads that faulted on it unless ``wake`` is False."""
        self._require_open()
        enable, wake = as_bool(enable, "enable"), as_bool(wake, "wake")
        address, length, _ = self._span(address, length)
        mode = (_raw.CONST["UFFDIO_WRITEPROTECT_MODE_WP"] if enable else 0) | \
            (0 if wake else _raw.CONST["UFFDIO_WRITEPROTECT_MODE_DONTWAKE"])
        self._resolve(_raw.writeprotect(self._fd, address, length, mode),
                      f"UFFDIO_WRITEPROTECT {address:#x}+{length:#x}", address)

    def wake(self, address: int, length: int) -> None:
        """UFFDIO_WAKE the threads waiting on faults in the range."""
        self._require_open()
        address, length, _ = self._span(address, length)
        self._resolve(_raw.wake(self._fd, address, length),
                      f"UFFDIO_WAKE {address:#x}+{length:#x}", address)

    def _need(self, feature: Feature, what: str) -> None:
        if self.features & feature:
            return
        if self.available_features & feature:
            raise InvalidArgument(f"{what} needs Feature.{feature.name}: pass it in "
                                  f"UserFaultFd(features=...)")
        feature_ = f"userfaultfd feature UFFD_FEATURE_{feature.name}"
        raise unavailable(what, SINCE[feature_])

    def poison(self, address: int, length: int, *, wake: bool = True) -> int:
        """UFFDIO_POISON (6.6): mark the pages poisoned; touching them raises SIGBUS."""
        self._require_open()
        self._need(Feature.POISON, "ioctl UFFDIO_POISON")
        wake = as_bool(wake, "wake")
        address, length, _ = self._span(address, length)
        mode = 0 if wake else _raw.CONST["UFFDIO_POISON_MODE_DONTWAKE"]
        return self._resolve(_raw.poison(self._fd, address, length, mode),
                             f"UFFDIO_POISON {address:#x}+{length:#x}", address)

    def move(self, dst: int, src: int, length: int, *, wake: bool = True,
             allow_src_holes: bool = False) -> int:
        """UFFDIO_MOVE (6.8): move the pages of ``src`` (anonymous, private) to the
        registered ``dst`` without copying; returns bytes moved."""
        self._require_open()
        self._need(Feature.MOVE, "ioctl UFFDIO_MOVE")
        wake = as_bool(wake, "wake")
        allow_src_holes = as_bool(allow_src_holes, "allow_src_holes")
        dst, length, _ = self._span(dst, length)
        src = as_multiple(src, "src", PAGE_SIZE)
        mode = (0 if wake else _raw.CONST["UFFDIO_MOVE_MODE_DONTWAKE"]) | \
            (_raw.CONST["UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES"] if allow_src_holes else 0)
        return self._resolve(_raw.move(self._fd, dst, src, length, mode),
                             f"UFFDIO_MOVE {src:#x} -> {dst:#x} ({length} bytes)", dst)

    # ---- events ------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until an event is readable (``timeout`` seconds, None: forever); False on
        timeout."""
        seconds = as_timeout(timeout)
        self._require_open()
        ms = -1 if seconds is None else int(seconds * 1000)
        return bool(check(_raw.wait(self._fd, -1, ms), "poll userfaultfd") & 1)

    def read_events(self, max_events: int = 64) -> list[Event]:
        """Read pending messages (none: an empty list, on a non-blocking fd): at most
        ``max_events``, and at most 64 per call whatever is asked."""
        want = min(as_positive(max_events, "max_events"), _raw.READ_BATCH)
        self._require_open()
        buf = _raw.Events(want)
        n = check(buf.read(self._fd), "read userfaultfd")
        return _events(buf, n)

    # ---- servers -----------------------------------------------------------------------

    def _check_no_server(self, native: bool = False) -> None:
        self._require_open()
        if any(s.running for s in self._servers):
            raise InvalidArgument("a server is already running on this UserFaultFd; stop() it "
                                  "first")
        if native:
            for *_, mode in self._ranges:
                if mode & ~Mode.MISSING:
                    raise InvalidArgument(_NATIVE_MISSING_ONLY.format(mode=flag_text(mode)))

    def _server_page_size(self, page_size: int | None) -> int:
        """The page size a server fills: the registered ranges' (a fill of any other size
        fails, or covers pages that were not asked for)."""
        sizes = {ps for _, _, ps, _ in self._ranges}
        if page_size is None:
            if len(sizes) > 1:
                raise InvalidArgument(f"ranges of several page sizes "
                                      f"{[hex(s) for s in sorted(sizes)]} are registered: "
                                      "serve them from separate UserFaultFds")
            return sizes.pop() if sizes else PAGE_SIZE
        ps = _page_size_arg(page_size)
        if sizes - {ps}:
            raise InvalidArgument(
                f"page_size={ps:#x} does not match the registered range(s), whose pages are "
                f"{', '.join(hex(s) for s in sorted(sizes))} bytes: omit page_size to serve "
                "them with their own")
        return ps

    def serve(self, handler: Callable[[Event], Any], *, page_size: int | None = None,
              cpu: int | None = None) -> Server:
        """Run ``handler(event)`` on a Python thread for every event. For a PAGEFAULT the
        handler returns the page's bytes (copied in with UFFDIO_COPY) or None if it resolved
        the fault itself. Stop with ``Server.stop()`` or ``close()``. ``cpu`` pins the
        thread to that CPU."""
        as_callable(handler, "handler")
        self._check_no_server()
        server = Server(self, handler, self._server_page_size(page_size), _cpu(cpu))
        self._servers.append(server)
        server._start()
        return server

    def serve_zero(self, *, page_size: int | None = None, cpu: int | None = None,
                   follow: bool = False) -> NativeServer:
        """Serve every MISSING fault with zeros, from C on a native thread. Placement as in
        ``serve_from``."""
        self._check_no_server(native=True)
        ps = self._server_page_size(page_size)
        server = NativeServer(self, _raw.SERVE_ZERO, None, 0, ps, _cpu(cpu), follow)
        self._servers.append(server)
        return server

    def serve_from(self, buffer: Any, *, base: int | Mapping | None = None,
                   page_size: int | None = None, cpu: int | None = None,
                   follow: bool = False) -> NativeServer:
        """Serve every MISSING fault at ``page`` with ``buffer[page - base:][:page_size]``
        (zeros past its end), from C on a native thread. ``base`` defaults to the lowest
        registered address. The buffer is held (its export kept) until the server stops.

        Placement: with ``follow=True`` the thread stays pinned to the CPU the faulting
        thread runs on (the thread calling ``serve_from``, or with Feature.THREAD_ID the last
        thread that faulted), re-checked every 1024 faults or 1 ms: a fault is then two
        context switches on one CPU instead of a wake-up of another CPU, which is what costs
        most on VMs whose idle vCPUs halt; but the scheduler may move the faulter to an idle
        CPU on each wake-up, and until the next re-check every fault crosses CPUs, so it is
        opt-in. ``cpu`` pins it to that CPU. By default it is left to the scheduler and
        spins up to 50 us on the non-blocking read after each fault before sleeping."""
        self._check_no_server(native=True)
        ps = self._server_page_size(page_size)
        if base is None:
            if not self._ranges:
                raise InvalidArgument("register a range before serve_from(), or pass base")
            base = min(r[0] for r in self._ranges)
        elif isinstance(base, Mapping):
            base = base.address
        base = as_nonneg(base, "base")
        server = NativeServer(self, _raw.SERVE_FROM, buffer, base, ps, _cpu(cpu),
                              follow)
        self._servers.append(server)
        return server


_NATIVE_MISSING_ONLY = (
    "serve_zero()/serve_from() answer MISSING faults only, and a range is registered for "
    "{mode!s}: answer its WP/MINOR faults with serve(handler) or read_events()")


def _cpu(cpu: int | None) -> int:
    if cpu is None:
        return -1
    cpu = as_int(cpu, "cpu", lo=0, hi=I32_MAX)
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise InvalidArgument(f"cpu={cpu!r} must be one of the CPUs this process may run on "
                              f"{sorted(allowed)}")
    return cpu


def _available_features() -> Feature:
    fd, _ = _raw.open_(os.O_CLOEXEC)
    if fd < 0:
        return Feature(0)
    try:
        ret, out_f, _ = _raw.api(fd, 0)
        if ret < 0:
            return Feature(0)
        return Feature(out_f & sum(Feature))
    finally:
        os.close(fd)


# The Python server's answer when the handler raised or returned no usable page: resolve the
# fault as if nobody served it (pm_uffd_fallback: zeros, protection lifted, page cache mapped).
_FALLBACK = object()


class Server:
    """A Python handler serving a UserFaultFd's events on a thread (see ``serve``).

    ``faults`` counts the faults resolved as the handler asked. Every fault is resolved,
    whatever happens: if the handler raises, returns something that is not a page (not
    bytes-like, longer than ``page_size``, or bytes for a WP/MINOR fault), or the kernel
    refuses the page, the fault is resolved as if nobody served it (a missing page filled
    with zeros, a write protection lifted, a page-cache page mapped; counted in
    ``fallbacks``) so the faulting thread does not hang; the error is kept in ``exceptions``
    and the first one is raised again by ``stop()``.
    """

    def __init__(self, uffd: UserFaultFd, handler: Callable[[Event], Any],
                 page_size: int, cpu: int = -1) -> None:
        self._uffd = uffd
        self._cpu = cpu
        self._handler = handler
        self.page_size = page_size
        self.faults = 0
        self.fallbacks = 0
        self.exceptions: list[BaseException] = []
        self._stop_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="physmem-uffd-serve",
                                        daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _start(self) -> None:
        self._thread.start()

    def _page(self, data: Any) -> Any:
        """The handler's answer, pinned, of at most one page, or _FALLBACK (error kept)."""
        try:
            src = _raw.Pinned(data)
        except (TypeError, ValueError, BufferError):  # not a buffer, or not a contiguous one
            src = None
        if src is None or len(src) > self.page_size:
            what = "not contiguous bytes" if src is None else f"{len(src)} bytes"
            self.exceptions.append(InvalidArgument(
                f"the handler returned {type(data).__name__} {data!r:.60} ({what}): for a page "
                f"fault it must return at most page_size={self.page_size} bytes (a bytes-like "
                "object), or None once it has resolved the fault itself; the page was filled "
                "with zeros"))
            return _FALLBACK
        return src

    def _fill(self, page: int, src: _raw.Pinned) -> int:
        if len(src) < self.page_size:
            padded = bytearray(self.page_size)
            padded[:len(src)] = src.tobytes()
            src = _raw.Pinned(padded)
        ret = _raw.copy(self._uffd._fd, page, src.address, self.page_size, 0)
        if ret == -_errno.EEXIST:
            ret = _raw.wake(self._uffd._fd, page, self.page_size)
        elif 0 <= ret < self.page_size:
            ret = -_errno.EEXIST  # part of the page was present: the fault may not be covered
        return int(ret)

    def _resolve(self, address: int, src: Any, flags: int = 0) -> bool:
        """Resolve the fault at ``address`` with ``src``, or (``_FALLBACK``) as if nobody served
        it: zeros for a missing page, protection lifted for a WP fault, page cache mapped for
        a MINOR one. False if it must be retried once the pending events are read (EAGAIN:
        the address space is changing)."""
        if src is not _FALLBACK:
            page = address & ~(self.page_size - 1)
            ret = self._fill(page, src)
            if ret == -_errno.EAGAIN:
                return False
            if ret >= 0:
                self.faults += 1
                return True
            self.exceptions.append(error_from_errno(
                -ret, f"UFFDIO_COPY of the handler's page to {page:#x}", address=page))
        ret = _raw.fallback(self._uffd._fd, address, flags)
        if ret == -_errno.EAGAIN:
            return False
        if ret < 0:
            self.exceptions.append(error_from_errno(
                -ret, f"zero-filling the fault at {address:#x}", address=address))
        else:
            self.fallbacks += 1
        return True

    def _handle(self, event: Event, pending: list[tuple[int, Any, int]]) -> None:
        try:
            data = self._handler(event)
        except BaseException as exc:  # noqa: BLE001 - kept for stop()
            self.exceptions.append(exc)
            data = _FALLBACK
        if event.kind is not EventKind.PAGEFAULT:
            return
        if data is None:
            self.faults += 1
            return
        if data is not _FALLBACK and event.flags & (FaultFlag.WP | FaultFlag.MINOR):
            # Bytes cannot answer these: the page is there, protected or not yet mapped.
            self.exceptions.append(InvalidArgument(
                f"the handler returned {type(data).__name__} for a {event.flags!s} fault at "
                f"{event.address:#x}: resolve it (writeprotect(..., False) or continue_()) and "
                "return None; it was resolved as if the range were not registered for it"))
            data = _FALLBACK
        src: Any = data if data is _FALLBACK else self._page(data)
        flags = int(event.flags)
        if not self._resolve(event.address, src, flags):
            # The handler's buffer may change before the retry: keep a copy.
            pending.append((event.address, src if src is _FALLBACK else
                            _raw.Pinned(src.tobytes()), flags))

    def _run(self) -> None:
        if self._cpu >= 0:
            try:
                os.sched_setaffinity(0, {self._cpu})  # 0: this thread
            except OSError as exc:
                self.exceptions.append(exc)
        fd = self._uffd._fd
        buf = _raw.Events(_raw.READ_BATCH)
        pending: list[tuple[int, Any, int]] = []
        while True:
            mask = _raw.wait(fd, self._stop_fd, 1 if pending else -1)
            if mask > 0 and mask & 2:
                break
            n = buf.read(fd)
            if n < 0:
                if n == -_errno.EBADF:
                    break
                continue
            retry, pending = pending, []
            for address, src, flags in retry:
                if not self._resolve(address, src, flags):
                    pending.append((address, src, flags))
            for i in range(n):
                e = buf[i]
                # Nothing may end this thread while a fault waits on it: a fault left
                # unanswered blocks its thread until the UserFaultFd is closed.
                try:
                    self._handle(Event._from_c(e), pending)
                except BaseException as exc:  # noqa: BLE001 - kept for stop()
                    self.exceptions.append(exc)
                    if e.kind == EventKind.PAGEFAULT:
                        _raw.fallback(fd, e.address, e.flags)

    def stop(self, *, raise_errors: bool = True) -> None:
        """Stop the thread and wait for it; raise the first error kept, if any."""
        if self._stop_fd >= 0:
            os.eventfd_write(self._stop_fd, 1)
            if threading.current_thread() is not self._thread:
                self._thread.join()
            os.close(self._stop_fd)
            self._stop_fd = -1
            if self in self._uffd._servers:
                self._uffd._servers.remove(self)
        if raise_errors and self.exceptions:
            exc = self.exceptions[0]
            if isinstance(exc, Exception):
                raise exc
            raise PhysmemError(f"handler raised {exc!r}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NativeServer:
    """A C server thread (``serve_zero``/``serve_from``). ``faults`` counts the faults
    served as asked, ``errors`` those whose fill failed (``last_error`` says why); each of
    those is resolved with zeros instead (counted in ``fallbacks``) or, if even that fails,
    its thread is woken to retry, so no fault is left waiting. They serve MISSING faults only
    (ranges registered for WP or MINOR are refused); should one arrive anyway, it is answered
    as if the range were not registered for it and counted in ``errors`` (EOPNOTSUPP).
    Non-fault events (fork, remap, remove, unmap) are kept and returned by ``events()``."""

    def __init__(self, uffd: UserFaultFd, kind: int, buffer: Any, base: int,
                 page_size: int, cpu: int = -1, follow: bool = False) -> None:
        page_size = _page_size_arg(page_size)
        self._uffd = uffd
        self.page_size = page_size
        self._src: _raw.Pinned | None = None
        src_addr = src_len = 0
        if buffer is not None:
            if isinstance(buffer, Mapping):
                buffer = buffer.view()
            self._src = _raw.Pinned(as_buffer(buffer, "buffer"))
            src_addr, src_len = self._src.address, self._src.length
        self._follower: _Follower | None = None
        if cpu < 0 and follow:
            self._follower = _Follower(threading.get_native_id())
            cpu = self._follower.cpu
        ret, srv = _raw.server_start(uffd._fd, kind, src_addr, src_len, base, page_size,
                                     page_size == PAGE_SIZE, cpu,
                                     -1 if self._follower is None else self._follower.fd)
        if ret < 0 and self._follower is not None:
            self._follower.close()
        check(ret, "start userfaultfd server thread")
        self._srv = srv
        self._final: _raw.ServerStats | None = None
        if self._follower is not None and srv is not None:
            self._follower.start(srv)

    @property
    def running(self) -> bool:
        return self._srv is not None

    def _stats(self) -> _raw.ServerStats:
        if self._srv is None:
            assert self._final is not None
            return self._final
        return _raw.server_stats(self._srv)

    @property
    def faults(self) -> int:
        return self._stats().faults

    @property
    def errors(self) -> int:
        return self._stats().errors

    @property
    def fallbacks(self) -> int:
        """Faults whose fill failed and that were resolved with zeros instead."""
        return self._stats().fallbacks

    @property
    def last_error(self) -> int:
        """The errno of the last failure, 0 if none."""
        return -self._stats().last_error

    def events(self) -> list[Event]:
        """The non-fault events seen so far (taken: each is returned once). A FORK event's
        ``fd`` is yours to close; the ones never taken are closed by ``stop()``."""
        if self._srv is None:
            return []
        buf = _raw.Events(_raw.KEEP_EVENTS)
        n = buf.take(self._srv)
        return _events(buf, n)

    def stop(self, *, raise_errors: bool = True) -> None:
        """Stop the thread and wait for it (the GIL is released meanwhile)."""
        raise_errors = as_bool(raise_errors, "raise_errors")
        if self._srv is None:
            return
        srv, self._srv = self._srv, None  # one stop, whichever thread comes first
        ret, self._final = _raw.server_stop(srv)
        if ret < 0:  # not stopped: the server runs on and is still ours
            self._srv = srv
            check(ret, "stop userfaultfd server")
        if self._follower is not None:
            self._follower.close()  # after the stop: the server writes to its eventfd
            self._follower = None
        if self._src is not None:
            self._src.release()
            self._src = None
        if self in self._uffd._servers:
            self._uffd._servers.remove(self)

    def __enter__(self) -> NativeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Follower:
    """The placement policy of ``serve_*(follow=True)``: keep the native server on the CPU
    the faulting thread runs on. On a VM whose idle vCPUs halt, waking a thread on another
    (idle) vCPU costs tens of microseconds, several times the fault itself; served from the
    faulter's CPU a fault is two context switches on one CPU.

    The thread followed is the last faulter when the kernel reports thread ids
    (Feature.THREAD_ID), else the thread that started the server. The C server only keeps
    the cadence: it writes an eventfd every 1024 faults or, after a sleep, at most every
    1 ms; this thread then reads the faulter's CPU from /proc and re-pins the server."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        # Where the server starts: the starting thread's CPU (unpinned if unreadable).
        self.cpu = max(_thread_cpu(tid), -1)
        self.fd = os.eventfd(0, os.EFD_CLOEXEC)
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self, server: _raw.Server) -> None:
        self._thread = threading.Thread(target=self._run, args=(server,),
                                        name="physmem-uffd-follow", daemon=True)
        self._thread.start()

    def _run(self, server: _raw.Server) -> None:
        while True:
            os.eventfd_read(self.fd)  # blocks, GIL released
            if self._closing:
                return
            last = _raw.server_stats(server).last_tid
            tid = last or self.tid
            cpu = _thread_cpu(tid)
            if cpu < 0:
                if cpu == _GONE and tid == self.tid:
                    self.tid = 0  # the thread is gone: stay where we are
                continue
            if cpu != self.cpu and _raw.server_pin(server, cpu) == 0:
                self.cpu = cpu

    def close(self) -> None:
        """Stop following; call once the server has stopped."""
        self._closing = True
        if self._thread is not None:
            os.eventfd_write(self.fd, 1)
            self._thread.join()
        os.close(self.fd)


_GONE, _UNKNOWN = -1, -2


def _thread_cpu(tid: int) -> int:
    """The CPU thread ``tid`` of this process last ran on (``processor`` of
    /proc/self/task/TID/stat); _GONE if there is no such thread, _UNKNOWN if unreadable."""
    if tid <= 0:
        return _GONE
    try:
        return pidstat.stat(tid, proc_root="/proc/self/task").processor
    except (ProcessGone, FileMissing):
        return _GONE
    except (PhysmemError, OSError):
        return _UNKNOWN
