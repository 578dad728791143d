"""The system-wide hugepage pool lock, and this process's ledger of the pool changes it made.

Pool sizes are shared by every process on the machine, and the kernel offers only absolute
writes (``nr_hugepages = N``). Two processes that each read a size and write back their own
idea of it lose each other's changes. So every change physmem makes happens under one lock,
an ``flock`` on ``<run dir>/pools.lock`` (``/run/physmem`` unless ``PHYSMEM_RUN_DIR`` says
otherwise; containers that write pools share it by bind-mounting it), re-reads the counts
under it, and is relative to what it found.

Each change is also written, before the sysfs write, as a claim in this process's ledger
(``<run dir>/claims/<pid>-<random>``, a file of ``struct pm_claim`` records flock'ed by the
process and its guardian for as long as either lives; see csrc/poolguard.h for the record's
states). Whoever takes the pool lock first undoes the claims of every ledger whose lock is
free: its process and guardian are both gone, for instance because a whole container was
SIGKILLed at once. The guardian (guard.py) undoes its own process's claims at once when the
process dies alone.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import fcntl
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from .._forkstate import ProcessLocal
from .._raw import poolguard as _claims
from ..errors import InvalidArgument, PermissionDenied, error_from_errno

if TYPE_CHECKING:
    from .guard import Guardian as _Guardian

__all__ = ["run_dir", "pool_lock", "Ledger", "Claim", "repair", "LOCK_TIMEOUT"]

LOCK_TIMEOUT = 120.0  # seconds to wait for another process's pool change before giving up
_LOCK_NAME = "pools.lock"
_CLAIMS = "claims"


def run_dir() -> str:
    """Where the pool lock and the ledgers live: ``$PHYSMEM_RUN_DIR`` or ``/run/physmem``."""
    return os.environ.get("PHYSMEM_RUN_DIR") or "/run/physmem"


def _open_private_dir(path: str, parent_fd: int | None = None) -> int:
    """An fd of directory ``path`` (made 0700 if missing), refusing a symlink, another
    owner, or write access for others: as root, a directory an unprivileged user could
    plant files or links in would hand them the pool files' undo."""
    name = path if parent_fd is None else os.path.basename(path)
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _refusal(path, exc) from exc
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent_fd)
    except OSError as exc:
        raise _refusal(path, exc) from exc
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise PermissionDenied(
            f"refusing to use {path} for the hugepage pool lock: it is owned by uid "
            f"{st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}; it must belong to uid "
            f"{os.geteuid()} and be writable by it alone (remove it, or set PHYSMEM_RUN_DIR)",
            path=path, errno=_errno.EACCES)
    return fd


def _refusal(path: str, exc: OSError) -> Exception:
    if exc.errno == _errno.ELOOP or exc.errno == _errno.ENOTDIR:
        return PermissionDenied(f"refusing to use {path} for the hugepage pool lock: it is "
                                "not a plain directory (a symlink?)", path=path,
                                errno=exc.errno)
    return error_from_errno(exc.errno or _errno.EIO, "cannot open the hugepage pool lock "
                            "directory (changing pools needs root)", path=path)


class _Process:
    """This process's side of the lock: the lock file's fd, how deep this thread holds it,
    and the ledger once a change was claimed."""

    def __init__(self) -> None:
        self.mutex = threading.RLock()
        self.depth = 0
        self.dir_fd = -1
        self.lock_fd = -1
        self.ledger: Ledger | None = None

    def open(self) -> None:
        if self.lock_fd >= 0:
            return
        base = run_dir()
        dir_fd = _open_private_dir(base)
        try:
            fd = os.open(_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd)
        except OSError as exc:
            os.close(dir_fd)
            raise _refusal(os.path.join(base, _LOCK_NAME), exc) from exc
        self.dir_fd, self.lock_fd = dir_fd, fd

    def forget(self) -> None:
        """In a fork child: the fds are the parent's (closing them releases nothing)."""
        for fd in (self.dir_fd, self.lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.ledger is not None:
            self.ledger.forget()


_process = ProcessLocal(_Process, _Process.forget)


@contextlib.contextmanager
def pool_lock(timeout: float = LOCK_TIMEOUT) -> Iterator[Ledger]:
    """Hold the system-wide pool lock for the block (re-entrant within a thread); yields this
    process's ledger. On first taking it, the claims of dead processes are undone."""
    proc = _process.get()
    if not proc.mutex.acquire(timeout=timeout):
        raise _timed_out(timeout)
    try:
        if proc.depth == 0:
            proc.open()
            _flock(proc.lock_fd, timeout)
            try:
                repair(proc.dir_fd)
                if proc.ledger is not None:
                    proc.ledger.check_guardian()
            except BaseException:
                fcntl.flock(proc.lock_fd, fcntl.LOCK_UN)
                raise
        proc.depth += 1
        try:
            if proc.ledger is None:
                proc.ledger = Ledger(proc.dir_fd)
            yield proc.ledger
        finally:
            proc.depth -= 1
            if proc.depth == 0:
                fcntl.flock(proc.lock_fd, fcntl.LOCK_UN)
    finally:
        proc.mutex.release()


def _flock(fd: int, timeout: float) -> None:
    # Polled, not blocking: a holder stopped by SIGSTOP must not hang this thread for ever.
    # The sleeps stay short, so a waiter gets in between two changes of a busy neighbour.
    deadline = time.monotonic() + timeout
    pause = 50e-6
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            raise _timed_out(timeout)
        time.sleep(pause)
        pause = min(pause * 2, 1e-3)


def _timed_out(timeout: float) -> Exception:
    path = os.path.join(run_dir(), _LOCK_NAME)
    return error_from_errno(_errno.ETIMEDOUT, f"another process held the hugepage pool lock "
                            f"for over {timeout:g} s (`fuser {path}` names it)", path=path)


def repair(dir_fd: int | None = None) -> int:
    """Undo the claims of every dead process's ledger (the caller holds the pool lock, or
    this takes it); returns how many ledgers were settled."""
    if dir_fd is None:
        with pool_lock():
            return 0  # taking the lock repaired already
    try:
        claims_fd = _open_private_dir(os.path.join(run_dir(), _CLAIMS), dir_fd)
    except FileNotFoundError:
        return 0
    settled = 0
    try:
        for name in os.listdir(claims_fd):
            try:
                fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=claims_fd)
            except FileNotFoundError:
                continue  # its guardian settled it a moment ago
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process or guardian lives
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                ret = _claims.undo_file(fd)
                os.unlink(name, dir_fd=claims_fd)
                settled += 1
                if ret < 0:
                    raise error_from_errno(-ret, "cannot undo a dead process's hugepage pool "
                                           "change", path=os.path.join(run_dir(), _CLAIMS, name))
            finally:
                os.close(fd)
    finally:
        os.close(claims_fd)
    return settled


@dataclass
class Claim:
    """One pool file this process changes: ``delta`` is what it added and has not undone."""

    ledger: Ledger
    slot: int
    path: str
    kind: int
    delta: int = 0
    closed: bool = False

    def pending(self, before: int) -> None:
        """About to write the pool file, whose value (persistent pages for a TOTAL claim)
        is ``before``: should the process die before :meth:`held`, undo restores ``before``
        less what earlier writes added."""
        self._write(_claims.PENDING, before)

    def held(self, added: int) -> None:
        """The write is done and added ``added`` (negative: removed) to the file's value."""
        self.delta += added
        self._write(_claims.HELD, 0)

    def undo(self) -> None:
        """Take back ``delta`` now (relative to the current value), and forget the claim."""
        if self.closed:
            return
        if self.delta:
            record = self.record(_claims.HELD, 0)
            ret = _claims.undo(record)
            if ret < 0:
                raise error_from_errno(-ret, "cannot give back a hugepage pool change",
                                       path=self.path)
        self.delta = 0
        self.close()

    def close(self) -> None:
        """Forget the claim, leaving the pool as it is."""
        if not self.closed:
            self.closed = True
            self.ledger.free(self)

    def record(self, state: int, before: int) -> bytes:
        return _claims.claim_bytes(os.fsencode(self.path), self.kind, state, before, self.delta)

    def _write(self, state: int, before: int) -> None:
        if self.closed:
            raise InvalidArgument(f"internal: the claim on {self.path} was closed")
        self.ledger.write(self.slot, self.record(state, before))


class Ledger:
    """This process's claim file and its guardian, made at the first claim."""

    def __init__(self, dir_fd: int) -> None:
        self._dir_fd = dir_fd
        self._fd = -1
        self._path = ""
        self._slots: list[Claim | None] = []
        self._mutex = threading.Lock()
        self._guardian: _Guardian | None = None

    @property
    def path(self) -> str:
        """The claim file ('' until the first claim)."""
        return self._path

    @property
    def guardian_pid(self) -> int | None:
        return None if self._guardian is None else self._guardian.pid

    def claim(self, path: str, kind: int) -> Claim:
        """A new claim on pool file ``path`` (``TOTAL``: nr_hugepages; ``CEILING``:
        nr_overcommit_hugepages). Call under the pool lock."""
        with self._mutex:
            self._open()
            slot = next((i for i, c in enumerate(self._slots) if c is None), len(self._slots))
            claim = Claim(self, slot, path, kind)
            if slot == len(self._slots):
                self._slots.append(claim)
            else:
                self._slots[slot] = claim
        return claim

    def claims(self) -> list[Claim]:
        with self._mutex:
            return [c for c in self._slots if c is not None]

    def write(self, slot: int, record: bytes) -> None:
        os.pwrite(self._fd, record, slot * _claims.CLAIM_SIZE)

    def free(self, claim: Claim) -> None:
        with self._mutex:
            if self._fd >= 0 and self._slots[claim.slot] is claim:
                os.pwrite(self._fd, bytes(_claims.CLAIM_SIZE), claim.slot * _claims.CLAIM_SIZE)
                self._slots[claim.slot] = None

    def check_guardian(self) -> None:
        """Start a new guardian if this process's one died (killed by hand): the claims are
        in the file, so nothing is lost, but a death from now on must be seen at once."""
        if self._guardian is not None and self._guardian.gone():
            self._guardian.close()
            self._guardian = _start_guardian(self._fd, self._path)

    def _open(self) -> None:
        if self._fd >= 0:
            return
        claims_dir = os.path.join(run_dir(), _CLAIMS)
        claims_fd = _open_private_dir(claims_dir, self._dir_fd)
        try:
            name = f"{os.getpid()}-{secrets.token_hex(8)}"
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=claims_fd)
        finally:
            os.close(claims_fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
        self._fd, self._path = fd, os.path.join(claims_dir, name)
        self._guardian = _start_guardian(fd, self._path)

    def forget(self) -> None:
        """In a fork child: drop the parent's fds without touching the file or its lock."""
        for fd in (self._fd,):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._guardian is not None:
            self._guardian.forget()
        self._fd = -1


def _start_guardian(claim_fd: int, claim_path: str) -> _Guardian:
    from .guard import Guardian

    return Guardian(claim_fd, os.path.join(run_dir(), _LOCK_NAME), claim_path)

