"""Long-term pins: DMA memory the kernel will not move.

mlock keeps pages resident, not in place: the kernel still migrates locked hugetlb pages
for memory offline and hot-unplug, ``move_pages``/``migratepages``/numad, compaction and
(in newer kernels) while allocating gigantic pages. A long-term pin (FOLL_LONGTERM) is what
stops it, and what a device driver's DMA mapping takes. User space gets one without a
device by registering the memory as an io_uring fixed buffer. Pinned pages that sat in
ZONE_MOVABLE or CMA are moved out once, at registration (those zones must stay movable).

One process-wide set of rings (never used for I/O) holds sparse buffer tables of
:data:`SLOTS` slots each; a buffer takes one slot per GiB, so each pins and unpins on its
own. Unpinning waits until the kernel has let go of the pages (``VmPin`` falls), so a closed
buffer's pages are back in the pool when close() returns.
"""
from __future__ import annotations

import atexit
import contextlib
import errno as _errno
import os
import resource
import threading
import time
from dataclasses import dataclass
from typing import Literal, Union

from .._records import hex_fields
from .._args import as_bool
from .._raw import pin as _raw
from .._forkstate import ProcessLocal
from .._raw import mapping as _map
from ..errors import InvalidArgument, PinUnavailable, error_from_errno
from .._syntax import format_size

__all__ = ["PinMode", "Pin", "pin_range", "unpin", "settle", "needs_settling", "unavailable_reason",
           "check_mode", "SLOTS", "ring_fds"]

PinMode = Union[bool, Literal["auto"]]
SLOTS = 256  # per ring: small enough that /proc/PID/fdinfo of a ring stays a few KiB
_CAP_IPC_LOCK = 14


def check_mode(pin: object) -> PinMode:
    """``pin=`` as given: True, False (or numpy bools) or "auto"; anything else is an
    InvalidArgument."""
    if isinstance(pin, str) and pin == "auto":
        return "auto"
    try:
        return as_bool(pin, "pin")
    except InvalidArgument:
        raise InvalidArgument(f"pin={pin!r:.60} must be True (require a pin), False (do not "
                              "pin) or 'auto' (pin where the kernel allows)") from None


@hex_fields("address")
@dataclass(frozen=True)
class Pin:
    """A pinned range: ``address``/``size``, and the ring and slots that hold it."""

    address: int
    size: int
    ring_fd: int
    first_slot: int
    slots: int

    def spans(self) -> list[tuple[int, int]]:
        """(address, length) of each slot, at most a GiB each."""
        step = _raw.MAX_SLOT_BYTES
        return [(self.address + off, min(step, self.size - off))
                for off in range(0, self.size, step)]


class _Ring:
    def __init__(self) -> None:
        fd = _raw.ring(SLOTS)
        if fd < 0:
            raise _explain(-fd, "cannot set up an io_uring to pin memory with", 0)
        self.fd = fd
        self.used = bytearray(SLOTS)

    def find(self, n: int) -> int:
        """First of ``n`` free consecutive slots, or -1."""
        run = 0
        for i, busy in enumerate(self.used):
            run = 0 if busy else run + 1
            if run == n:
                return i - n + 1
        return -1


class _Pinner:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rings: list[_Ring] = []

    def pin(self, address: int, size: int) -> Pin:
        n = -(-size // _raw.MAX_SLOT_BYTES)
        if n > SLOTS:
            raise InvalidArgument(f"cannot pin {size} bytes in one buffer: at most "
                                  f"{SLOTS} GiB")
        with self.lock:
            for ring in self.rings:
                first = ring.find(n)
                if first >= 0:
                    break
            else:
                ring = _Ring()
                self.rings.append(ring)
                first = 0
            pinned = Pin(address, size, ring.fd, first, n)
            ret = _raw.update(ring.fd, first, pinned.spans())
            if ret < 0:
                raise _explain(-ret, f"cannot pin the buffer at {address:#x}", size)
            ring.used[first:first + n] = b"\1" * n
            return pinned

    def unpin(self, pinned: Pin) -> None:
        with self.lock:
            ring = next((r for r in self.rings if r.fd == pinned.ring_fd), None)
            if ring is None:
                return  # a fork child's copy: the parent's ring holds the pin
            before = _vm_pin()
            ret = _raw.update(ring.fd, pinned.first_slot, [(0, 0)] * pinned.slots)
            if ret < 0:
                raise _explain(-ret, f"cannot unpin the buffer at {pinned.address:#x}",
                               pinned.size)
            ring.used[pinned.first_slot:pinned.first_slot + pinned.slots] = bytes(pinned.slots)
            _wait_released(before, pinned.size)

    def forget(self) -> None:
        for ring in self.rings:
            with contextlib.suppress(OSError):
                os.close(ring.fd)
        self.rings = []


# A fork child shares its parent's rings: its registrations would change the parent's
# tables. It makes rings of its own when it pins (DMA buffers are not inherited: they are
# MADV_DONTFORK).
_pinner = ProcessLocal(_Pinner, _Pinner.forget)


def _unpin_all_at_exit() -> None:
    # Closing a ring at exit lets go of its pages from a kernel worker, a moment after the
    # process is gone; emptying the slots first frees buffers left open at once, so a
    # normal exit leaves the pools exactly as close() would.
    pinner = _pinner.peek()
    if pinner is None:
        return
    with pinner.lock:
        for ring in pinner.rings:
            for slot, busy in enumerate(ring.used):
                if busy:
                    _raw.update(ring.fd, slot, [(0, 0)])
            ring.used = bytearray(SLOTS)


atexit.register(_unpin_all_at_exit)


def pin_range(address: int, size: int) -> Pin:
    """Pin ``size`` bytes at ``address`` (whole pages of a mapping of this process) for the
    long term; raises :class:`~physmem.errors.PinUnavailable` naming the cause and fix."""
    return _pinner.get().pin(address, size)


def unpin(pinned: Pin) -> None:
    """Let go of a pin, once the kernel has released the pages."""
    _pinner.get().unpin(pinned)


def settle(address: int, size: int) -> None:
    """Pin and let go at once: the kernel moves pages out of ZONE_MOVABLE and CMA as it
    pins them, and they stay where it put them. Done to candidate pages before a run of
    adjacent ones is chosen, so that pinning the chosen run later moves nothing. A pin the
    kernel refuses changes nothing here: the buffer's own pin reports it."""
    try:
        unpin(pin_range(address, size))
    except PinUnavailable:
        pass


def needs_settling(proc_root: str = "/proc") -> bool:
    """Whether this machine has memory a pin would move pages out of: a populated
    ZONE_MOVABLE (/proc/buddyinfo lists only populated zones) or CMA."""
    from ..proc import buddyinfo, meminfo

    if any(row.zone == "Movable" for row in buddyinfo(proc_root=proc_root)):
        return True
    return bool(meminfo(proc_root=proc_root).get("CmaTotal"))


def ring_fds() -> list[int]:
    """This process's pinning rings (to find them in /proc/self/fdinfo)."""
    pinner = _pinner.get()
    with pinner.lock:
        return [r.fd for r in pinner.rings]


def _vm_pin() -> int:
    from ..proc import status_field

    value = status_field("VmPin")
    return value if isinstance(value, int) else 0


def _wait_released(before: int, size: int, timeout: float = 5.0) -> None:
    # Kernels before 6.13 drop a replaced buffer when its last reference goes, which may be
    # a moment after the update returns; the pages return to the pool only then.
    deadline = time.monotonic() + timeout
    pause = 20e-6
    while _vm_pin() > before - size and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 5e-3)


def _explain(err: int, what: str, size: int) -> PinUnavailable:
    """The error for a failed pin, with its cause ("memlock", "disabled", "seccomp",
    "unsupported", or "kernel") and what to do about it."""
    from .. import sysctl
    from ..proc import status

    try:
        me = status()
    except OSError:
        me = {}
    try:
        disabled = sysctl.read_int("kernel.io_uring_disabled")
    except OSError:
        disabled = None
    filtered = me.get("Seccomp") == 2
    if err in (_errno.ENOSYS, _errno.EPERM, _errno.EACCES) and filtered and (
            err == _errno.ENOSYS or not disabled):
        return PinUnavailable(
            f"{what}: io_uring is blocked by this process's seccomp filter "
            f"({os.strerror(err)}), as container runtimes' default profiles do; allow the "
            "io_uring_setup and io_uring_register syscalls in the profile (Docker/Podman: "
            "--security-opt seccomp=PROFILE; Kubernetes: a Localhost seccompProfile)",
            cause="seccomp", errno=err)
    if err == _errno.ENOSYS:
        return PinUnavailable(
            f"{what}: this kernel has no io_uring (built without CONFIG_IO_URING); "
            "physmem pins memory through io_uring fixed buffers (Linux 5.19+)",
            cause="unsupported", errno=err)
    if err in (_errno.EPERM, _errno.EACCES) and disabled:
        if disabled >= 2:
            how = (f"kernel.io_uring_disabled={disabled} disables io_uring for every "
                   "process; set `sysctl kernel.io_uring_disabled=0` (or 1, which allows it "
                   "to CAP_SYS_ADMIN and the group in kernel.io_uring_group)")
        else:
            try:
                group = sysctl.read_int("kernel.io_uring_group")
            except OSError:
                group = -1
            member = ("set kernel.io_uring_group to a group of this user" if group < 0
                      else f"add this user to group {group}")
            how = ("kernel.io_uring_disabled=1 allows io_uring only to CAP_SYS_ADMIN and "
                   f"the group in kernel.io_uring_group ({group}); set `sysctl "
                   f"kernel.io_uring_disabled=0`, {member}, or run with CAP_SYS_ADMIN")
        return PinUnavailable(f"{what}: {how}", cause="disabled", errno=err)
    if err == _errno.ENOMEM and not (me.get("CapEff", 0) >> _CAP_IPC_LOCK) & 1:
        soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        limit = ("unlimited" if soft == resource.RLIM_INFINITY
                 else format_size(soft, exact=False))
        # The kernel sums the pins of all of the user's rings, which no file shows; this
        # process's share is its VmPin.
        held = me.get("VmPin") or 0
        pinning, total, mine = (format_size(n, exact=False) for n in (size, held + size, held))
        return PinUnavailable(
            f"{what}: RLIMIT_MEMLOCK is {limit}, and pinning {pinning} would bring this "
            f"user's io_uring pins to at least {total} ({mine} "
            "pinned by this process already; the user's other processes count too); raise "
            "the limit (`ulimit -l`, systemd `LimitMEMLOCK=`, `--ulimit memlock=` in "
            "containers) or grant CAP_IPC_LOCK", cause="memlock", errno=err)
    if err == _errno.EINVAL:
        return PinUnavailable(f"{what}: the kernel refused the registration "
                              f"({os.strerror(err)}); sparse buffer tables need Linux 5.19",
                              cause="unsupported", errno=err)
    return PinUnavailable(f"{what}: {os.strerror(err)}", cause="kernel", errno=err)


def unavailable_reason() -> str | None:
    """Why a process like this one cannot pin memory now (None where it can): a new ring
    pins a page of anonymous memory and lets go of it. A new ring, because the rings a
    process made earlier keep working after ``kernel.io_uring_disabled`` is raised, while
    new rings (and new processes) are refused."""
    size = os.sysconf("SC_PAGE_SIZE")
    address = _map.mmap(0, size, _map.PROT_READ | _map.PROT_WRITE,
                        _map.MAP_PRIVATE | _map.MAP_ANONYMOUS | _map.MAP_POPULATE, -1, 0)
    if address < 0:
        raise error_from_errno(-address, "cannot map a page to test pinning with")
    try:
        fd = _raw.ring(1)
        if fd < 0:
            return str(_explain(-fd, "cannot set up an io_uring to pin memory with", 0))
        try:
            ret = _raw.update(fd, 0, [(address, size)])
            if ret < 0:
                return str(_explain(-ret, "cannot pin a page of memory", size))
            _raw.update(fd, 0, [(0, 0)])
        finally:
            os.close(fd)
    finally:
        _map.munmap(address, size)
    return None
