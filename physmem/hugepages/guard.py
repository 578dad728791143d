"""PoolGuard: a watchdog process that puts hugepage pools back if this process dies.

Growing a pool is persistent: a process killed between growing ``nr_hugepages`` and shrinking
it again would leave the growth behind for good. A guardian (a separate process that does
nothing but wait on a socket, see csrc/poolguard.c) writes every armed pool back to its
recorded size the moment this process is gone, whatever killed it (SIGKILL, the OOM killer, a
crash). :func:`~physmem.dma.allocate_contiguous` arms one for the few milliseconds between
growing a pool and handing its pages over as surplus pages.

One guardian serves the whole process: it is started (by exec, so that it holds none of this
process's memory) at the first :class:`PoolGuard`, and each PoolGuard arms and clears its own
records in it. Forking a guardian per allocation cost a millisecond, and more after it: every
page the process wrote next took a copy-on-write fault. A child made by ``os.fork`` starts its
own guardian, since the socket it inherits would hide the child's death from its parent's.
"""
from __future__ import annotations

import errno as _errno
import itertools
import os
import threading

from .._raw import poolguard as _guard
from ..errors import InvalidArgument, error_from_errno

__all__ = ["PoolGuard"]

_RECORDS = 64  # PM_GUARD_RECORDS: the guardian keeps at most this many records at once


class _Guardian:
    """This process's guardian: its pid, the socket to it, and how many records it holds."""

    def __init__(self) -> None:
        # Exec'd where this interpreter can be started again; forked otherwise (embedded
        # Python), or if the exec'd one does not come up.
        for start in (_guard.spawn, _guard.fork):
            pid, fd = start()
            if pid < 0:
                ret = pid
                continue
            ret = _guard.wait_ready(fd)
            if ret == 0:
                break
            os.close(fd)
            _reap(pid)
        if ret < 0:
            raise error_from_errno(-ret, "cannot start the hugepage pool guardian")
        self.pid = pid
        self.fd = fd
        self.records = 0
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)
            _reap(self.pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


_lock = threading.Lock()
_shared: _Guardian | None = None
_tokens = itertools.count(1)


def _current() -> _Guardian:
    global _shared
    if _shared is None or _shared.closed:
        _shared = _Guardian()
    return _shared


def _after_fork_in_child() -> None:
    """The inherited socket must go: while the child held it open, the parent's death would
    not reach the parent's guardian. The child starts its own when it needs one."""
    global _shared, _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork
    if _shared is not None and not _shared.closed:
        _shared.closed = True
        try:
            os.close(_shared.fd)
        except OSError:
            pass
    _shared = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class PoolGuard:
    """Records in this process's guardian; :meth:`arm` before each pool write, :meth:`disarm`
    when done (the guardian keeps serving the process).

    Use it as a context manager: leaving the block (normally or by an exception) disarms it,
    since this process is alive to restore the pools itself.
    """

    def __init__(self) -> None:
        with _lock:
            self._guardian: _Guardian | None = _current()
        self.pid: int = self._guardian.pid
        self._token = next(_tokens) & 0xFFFFFFFF
        self._armed: dict[str, int] = {}

    @property
    def armed(self) -> dict[str, int]:
        """sysfs file -> the value the guardian would write back."""
        return dict(self._armed)

    def arm(self, path: str, value: int) -> None:
        """Write ``value`` into ``path`` should this process die; the first value armed for a
        path wins, so arm with the value from before this process first touched it."""
        if self._guardian is None:
            raise InvalidArgument("the pool guardian was disarmed")
        if path in self._armed:
            return
        if len(self._armed) >= 16:
            raise InvalidArgument("a pool guardian watches at most 16 files")
        wanted = {**self._armed, path: value}
        with _lock:
            g = self._guardian
            ret = -_errno.EPIPE
            if not g.closed and g is _shared:
                if g.records >= _RECORDS:
                    raise InvalidArgument(f"at most {_RECORDS} pool records may be armed at once")
                ret = _guard.arm(g.fd, self._token, os.fsencode(path), value)
                if ret >= 0:
                    g.records += 1
            if ret in (-_errno.EPIPE, -_errno.ECONNRESET):
                # The guardian is gone (killed by hand), or this is a fork child holding a
                # guard of its parent's: give every record of this guard to a live one.
                if g is _shared:
                    g.close()
                g = self._guardian = _current()
                self.pid = g.pid
                for p, v in wanted.items():
                    ret = _guard.arm(g.fd, self._token, os.fsencode(p), v)
                    if ret < 0:
                        break
                    g.records += 1
        if ret < 0:
            raise error_from_errno(-ret, "cannot arm the hugepage pool guardian", path=path)
        self._armed[path] = value

    def disarm(self) -> None:
        """Forget this guard's records: the pools are settled (the guardian keeps serving)."""
        g, self._guardian = self._guardian, None
        if g is None or not self._armed:
            return
        with _lock:
            if not g.closed and g is _shared:
                _guard.clear(g.fd, self._token)
                g.records -= len(self._armed)

    def __enter__(self) -> PoolGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disarm()

    # No __del__ that disarms: a guard collected while armed was never settled by its owner
    # (a restore-on-close buffer left open at exit is one), so its records stay and the
    # guardian restores the pools when the process is gone.
