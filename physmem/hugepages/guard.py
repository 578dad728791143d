"""The guardian: a process that undoes this process's pool changes the moment it dies.

The changes themselves are recorded in the process's ledger file (_ledger.py), so the
guardian carries no state of its own: it holds the ledger file open (which keeps the
ledger's lock taken while either of them lives) and waits on a socket. When the socket
reaches EOF, this process is gone, however it went (SIGKILL, the OOM killer, a crash); the
guardian takes the pool lock, undoes every claim in the file, removes it and exits. A
guardian killed first loses nothing: the ledger starts a new one at its next change, and
if this process dies before that, whoever takes the pool lock next settles the file.

It is started by exec (so that it holds none of this process's memory; forked where there
is no interpreter to exec), and forks once more on the way, so it is no one's child: a
``while True: os.wait()`` loop of the caller's ends as it would without physmem. A whole
pid namespace killed at once takes the guardian too; the ledger's lock then does its job.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import os

from .._raw import poolguard as _guard
from ..errors import error_from_errno

__all__ = ["Guardian"]


class Guardian:
    """This process's guardian over the ledger file ``claim_fd`` (path ``claim_path``)."""

    def __init__(self, claim_fd: int, lock_path: str, claim_path: str) -> None:
        ret = -_errno.EIO
        sock = -1
        for start in (_guard.spawn, _fork):
            ret, sock = start(claim_fd, lock_path, claim_path)
            if ret < 0:
                continue
            ret = _guard.wait_ready(sock)
            if ret > 0:
                break
            os.close(sock)
        if ret <= 0:
            raise error_from_errno(-ret if ret < 0 else _errno.EIO,
                                   "cannot start the hugepage pool guardian")
        self.pid = ret
        self._sock = sock

    def gone(self) -> bool:
        """Whether the guardian has exited (or was killed)."""
        return self._sock < 0 or _guard.gone(self._sock) != 0

    def close(self) -> None:
        """Let go of it (it then settles the ledger as if this process had died)."""
        if self._sock >= 0:
            os.close(self._sock)
            self._sock = -1

    def forget(self) -> None:
        """In a fork child: the socket is the parent's; keeping it open would hide the
        parent's death from its guardian."""
        if self._sock >= 0:
            with contextlib.suppress(OSError):
                os.close(self._sock)
            self._sock = -1


def _fork(claim_fd: int, lock_path: str, claim_path: str) -> tuple[int, int]:
    return _guard.fork(claim_fd, os.fsencode(lock_path), os.fsencode(claim_path))
