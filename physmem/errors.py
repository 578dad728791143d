"""The one exception hierarchy of physmem, and the one place errno becomes a domain error.

Every class subclasses the builtin a caller would already catch (``PermissionError``,
``ProcessLookupError``, ``ValueError``, ``OSError``...), so ``except PermissionError`` keeps
working, and carries what it concerns: ``path``, ``address`` and/or ``pid``.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import os
from typing import Any, Iterator, TypeVar

__all__ = [
    "PhysmemError",
    "PhysmemOSError",
    "PermissionDenied",
    "PfnUnavailable",
    "ProcessGone",
    "FileMissing",
    "FeatureUnavailable",
    "OutOfMemory",
    "InvalidArgument",
    "ParseError",
    "PageNotPresent",
    "HugePagesUnavailable",
    "ContiguityUnavailable",
    "DmaPoolExhausted",
    "NotContiguous",
    "PhysicalAddressChanged",
    "PinUnavailable",
    "NotTracked",
    "MissingDependency",
    "error_from_errno",
    "translate_os_errors",
]


class PhysmemError(Exception):
    """Base class of every error physmem raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        address: int | None = None,
        pid: int | None = None,
        errno: int | None = None,
    ) -> None:
        if isinstance(self, OSError):
            # OSError's own __init__ fills errno/strerror/filename for callers that read them.
            OSError.__init__(self, errno, message, None if path is None else os.fspath(path))
        else:
            Exception.__init__(self, message)
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.address = address
        self.pid = pid

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[PhysmemError], message: str, state: dict[str, Any]) -> PhysmemError:
    exc = cls.__new__(cls)
    PhysmemError.__init__(exc, message, errno=state.get("errno"))
    exc.__dict__.update(state)
    return exc


class PhysmemOSError(PhysmemError, OSError):
    """The kernel refused or failed an operation (an ``OSError`` with ``errno`` set)."""


class PermissionDenied(PhysmemOSError, PermissionError):
    """The caller lacks the privilege the operation needs."""


class PfnUnavailable(PermissionDenied):
    """Page frame numbers are hidden: the kernel zeroes them for callers without CAP_SYS_ADMIN."""


class ProcessGone(PhysmemOSError, ProcessLookupError):
    """The process does not exist, or exited while it was being read."""


class FileMissing(PhysmemOSError, FileNotFoundError):
    """A /proc or /sys file is absent (kernel feature not configured, or wrong root path)."""


class FeatureUnavailable(PhysmemOSError):
    """The running kernel lacks a syscall, ioctl or flag; the message names it and its version."""


class OutOfMemory(PhysmemOSError, MemoryError):
    """The kernel could not provide the memory asked for."""


class InvalidArgument(PhysmemError, ValueError):
    """An argument is out of range or malformed; the message names the argument and value."""


class ParseError(PhysmemError, ValueError):
    """A /proc or /sys file held a line physmem cannot read (file, line number and text given)."""

    def __init__(self, message: str, *, path: str | None = None, lineno: int | None = None,
                 line: str | bytes | None = None) -> None:
        where = f"{path or '<input>'}" + (f":{lineno}" if lineno is not None else "")
        text = f": {_excerpt(line)}" if line is not None else ""
        super().__init__(f"{where}: {message}{text}", path=path)
        self.lineno = lineno
        self.line = line


def _excerpt(line: str | bytes) -> str:
    # A damaged file can hold a line of megabytes: the message shows its start and length.
    shown = repr(line)
    unit = "bytes" if isinstance(line, bytes) else "characters"
    return shown if len(shown) <= 200 else f"{shown[:160]}... ({len(line)} {unit})"


class PageNotPresent(PhysmemError, LookupError):
    """A virtual page has no physical frame (never touched, swapped out or unmapped)."""


class HugePagesUnavailable(OutOfMemory):
    """A hugepage pool could not be grown to the size asked for.

    ``obtained`` is how many pages the pool holds after the attempt, ``wanted`` the target.
    """

    def __init__(self, message: str, *, obtained: int, wanted: int, size: int,
                 node: int | None = None) -> None:
        super().__init__(message, errno=_errno.ENOMEM)
        self.obtained, self.wanted, self.size, self.node = obtained, wanted, size, node


class ContiguityUnavailable(OutOfMemory):
    """No run of physically adjacent hugepages is long enough; ``longest`` is the best found (bytes)."""

    def __init__(self, message: str, *, longest: int, wanted: int) -> None:
        super().__init__(message, errno=_errno.ENOMEM)
        self.longest, self.wanted = longest, wanted


class DmaPoolExhausted(OutOfMemory):
    """A DmaPool has no free block big enough; ``largest`` is its largest free block (bytes)."""

    def __init__(self, message: str, *, wanted: int, available: int, largest: int) -> None:
        super().__init__(message, errno=_errno.ENOMEM)
        self.wanted, self.available, self.largest = wanted, available, largest


class NotContiguous(PhysmemError, ValueError):
    """A physically contiguous answer was asked of a scatter (multi-segment) buffer."""


class PhysicalAddressChanged(PhysmemError, RuntimeError):
    """Pages of a DMA buffer moved or vanished since it was allocated."""


class PinUnavailable(PhysmemOSError):
    """Memory could not be pinned for the long term. ``cause`` is ``"memlock"``
    (RLIMIT_MEMLOCK), ``"disabled"`` (kernel.io_uring_disabled), ``"seccomp"`` (a seccomp
    filter blocks io_uring), ``"unsupported"`` (no io_uring, or too old) or ``"kernel"``."""

    def __init__(self, message: str, *, cause: str, errno: int | None = None,
                 address: int | None = None) -> None:
        super().__init__(message, errno=errno, address=address)
        self.cause = cause


class NotTracked(PhysmemError, RuntimeError):
    """Memory asked about is not tracked for writes: the process never enabled tracking for
    it (``physmem.track.enable``), stopped, or unmapped it; ``pid`` and ``address`` say where."""


class MissingDependency(PhysmemError, ImportError):
    """An optional package is not installed; the message says which and how to install it."""


_E = TypeVar("_E", bound=PhysmemError)


def error_from_errno(
    err: int,
    what: str,
    *,
    path: str | os.PathLike[str] | None = None,
    address: int | None = None,
    pid: int | None = None,
    hint: str | None = None,
) -> PhysmemOSError:
    """Build the domain error for ``errno`` ``err``; ``what`` says what was being done."""
    text = f"{what}: {os.strerror(err)}"
    if path is not None:
        text += f" ({os.fspath(path)})"
    cls: type[PhysmemOSError]
    if pid is not None and (err == _errno.ESRCH or (err == _errno.ENOENT and _pid_dir_gone(path))):
        cls = ProcessGone
        text = f"{what}: process {pid} does not exist or has exited"
    elif err == _errno.ESRCH:
        cls = ProcessGone
    elif err in (_errno.EACCES, _errno.EPERM):
        cls = PermissionDenied
        if hint is None:
            hint = ("refused even to root: the target may be protected (ptrace access mode "
                    "check, another user namespace, or a kernel without the feature enabled)"
                    if os.geteuid() == 0 else "run as root or grant the needed capability")
    elif err == _errno.ENOENT:
        cls = FileMissing
    elif err in (_errno.ENOSYS, _errno.ENOTTY, _errno.EOPNOTSUPP):
        cls = FeatureUnavailable
    elif err == _errno.ENOMEM:
        cls = OutOfMemory
    else:
        cls = PhysmemOSError
    if hint:
        text += f"; {hint}"
    return cls(text, errno=err, path=path, address=address, pid=pid)


def _pid_dir_gone(path: str | os.PathLike[str] | None) -> bool:
    # ENOENT on /proc/<pid>/X means the process is gone only if /proc/<pid> itself is.
    if path is None:
        return True
    return not os.path.isdir(os.path.dirname(os.fspath(path)))


@contextlib.contextmanager
def translate_os_errors(
    what: str,
    *,
    path: str | os.PathLike[str] | None = None,
    pid: int | None = None,
    address: int | None = None,
) -> Iterator[None]:
    """Re-raise any plain ``OSError`` inside the block as its physmem subclass."""
    try:
        yield
    except PhysmemError:
        raise
    except OSError as exc:
        if exc.errno is None:
            raise
        raise error_from_errno(
            exc.errno, what, path=path if path is not None else exc.filename,
            pid=pid, address=address,
        ) from exc


