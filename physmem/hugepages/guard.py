"""PoolGuard: a watchdog process that puts hugepage pools back if this process dies.

Growing a pool is persistent: a process killed between growing ``nr_hugepages`` and shrinking
it again would leave the growth behind for good. While armed, a guardian (a forked child that
does nothing but wait on a socket, see csrc/poolguard.c) writes every armed pool back to its
recorded size the moment this process is gone, whatever killed it (SIGKILL, the OOM killer, a
crash). :func:`~physmem.dma.allocate_contiguous` arms one for the few milliseconds between
growing a pool and handing its pages over as surplus pages.
"""
from __future__ import annotations

import os

from .._raw import poolguard as _guard
from ..errors import InvalidArgument, error_from_errno

__all__ = ["PoolGuard"]

# Guardians told to exit but not yet reaped: waiting for one to exit would cost each
# allocation a millisecond, so they are reaped (without blocking) when the next starts.
_exiting: list[int] = []


def _reap() -> None:
    for pid in list(_exiting):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # someone else reaped it
        if done:
            _exiting.remove(pid)


class PoolGuard:
    """A guardian process; :meth:`arm` it before each pool write, :meth:`disarm` when done.

    Use it as a context manager: leaving the block (normally or by an exception) disarms it,
    since this process is alive to restore the pools itself.
    """

    def __init__(self) -> None:
        _reap()
        pid, wfd = _guard.start()
        if pid < 0:
            raise error_from_errno(-pid, "cannot start the hugepage pool guardian (fork)")
        self.pid: int = pid
        self._fd: int = wfd
        self._armed: dict[str, int] = {}

    @property
    def armed(self) -> dict[str, int]:
        """sysfs file -> the value the guardian would write back."""
        return dict(self._armed)

    def arm(self, path: str, value: int) -> None:
        """Write ``value`` into ``path`` should this process die; the first value armed for a
        path wins, so arm with the value from before this process first touched it."""
        if self._fd < 0:
            raise InvalidArgument("the pool guardian was disarmed")
        if path in self._armed:
            return
        if len(self._armed) >= 16:
            raise InvalidArgument("a pool guardian watches at most 16 files")
        ret = _guard.arm(self._fd, os.fsencode(path), value)
        if ret < 0:
            raise error_from_errno(-ret, "cannot arm the hugepage pool guardian", path=path)
        self._armed[path] = value

    def disarm(self) -> None:
        """Tell the guardian to exit without touching anything (it is reaped later)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            _guard.disarm(fd)
            _exiting.append(self.pid)

    def __enter__(self) -> PoolGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disarm()

    def __del__(self) -> None:
        self.disarm()
