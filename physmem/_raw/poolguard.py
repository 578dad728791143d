"""Raw pool claims and guardian (csrc/poolguard.h): each returns ``-errno`` on failure."""
from __future__ import annotations

import errno as _errno
import os
import socket
import sys
from typing import Callable, Final

from . import ffi, lib

CLAIM_SIZE: Final[int] = ffi.sizeof("struct pm_claim")
PATH_MAX: Final[int] = lib.PM_CLAIM_PATH_MAX
FREE: Final[int] = lib.PM_CLAIM_FREE
PENDING: Final[int] = lib.PM_CLAIM_PENDING
HELD: Final[int] = lib.PM_CLAIM_HELD
TOTAL: Final[int] = lib.PM_CLAIM_TOTAL
CEILING: Final[int] = lib.PM_CLAIM_CEILING

undo_file: Callable[[int], int] = lib.pm_claims_undo
wait_ready: Callable[[int], int] = lib.pm_guard_wait_ready
gone: Callable[[int], int] = lib.pm_guard_gone


def claim_bytes(path: bytes, kind: int, state: int, before: int, delta: int) -> bytes:
    """One claim record as the C core lays it out (``struct pm_claim``)."""
    c = ffi.new("struct pm_claim *")
    if len(path) >= PATH_MAX:
        raise ValueError(f"internal: pool path longer than {PATH_MAX - 1} bytes: {path!r}")
    ffi.memmove(c.path, path, len(path))
    c.kind, c.state, c.before, c.delta = kind, state, before, delta
    return bytes(ffi.buffer(c))


def undo(record: bytes) -> int:
    """Undo one claim record (bytes of ``struct pm_claim``) now: 0 or -errno."""
    c = ffi.new("struct pm_claim *")
    ffi.memmove(c, record, CLAIM_SIZE)
    ret: int = lib.pm_claim_undo(c)
    return ret


def fork(claim_fd: int, lock_path: bytes, claim_path: bytes) -> tuple[int, int]:
    """Start a guardian by double fork: (0, this end of its socket), or (-errno, -1)."""
    sock = ffi.new("int *", -1)
    ret: int = lib.pm_guard_start(claim_fd, lock_path, claim_path, sock)
    return (ret, -1) if ret < 0 else (0, int(sock[0]))


# What the exec'd guardian runs: fork once more (so that it is no one's child), then the C
# core's serving loop on its stdin (the socket) and fd 3 (the claim file). Python starts
# with -I -S (no site; PYTHON* variables ignored, the rest passed for the dynamic loader's
# sake) and loads the extension by its path, without physmem's package (whose imports would
# triple its start-up); cffi's backend comes by path.
_GUARDIAN = ("import os, sys; sys.path[:0] = sys.argv[2:3]\n"
             "if os.fork(): os._exit(0)\n"
             "from importlib.machinery import ExtensionFileLoader\n"
             "from importlib.util import module_from_spec, spec_from_loader\n"
             "loader = ExtensionFileLoader('_native', sys.argv[1])\n"
             "native = module_from_spec(spec_from_loader('_native', loader))\n"
             "loader.exec_module(native)\n"
             "native.lib.pm_guard_serve(0, 3, os.fsencode(sys.argv[3]), "
             "os.fsencode(sys.argv[4]))\n")


def spawn(claim_fd: int, lock_path: str, claim_path: str) -> tuple[int, int]:
    """Start a guardian by exec (it shares no memory with this process, however long it
    lives): (0, this end of its socket), or (-errno, -1) where that cannot be done."""
    import importlib

    if max(len(os.fsencode(lock_path)), len(os.fsencode(claim_path))) >= PATH_MAX:
        return -_errno.ENAMETOOLONG, -1  # the guardian would only exit (pm_guard_serve)
    exe = sys.executable
    if not exe or not os.access(exe, os.X_OK):
        return -_errno.ENOENT, -1  # embedded interpreters have no executable to start
    from .. import _native

    extension = os.path.abspath(_native.__file__)
    backend_file = importlib.import_module("_cffi_backend").__file__  # the extension needs it
    if backend_file is None:
        return -_errno.ENOENT, -1
    backend = os.path.dirname(os.path.abspath(backend_file))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0),
                   (os.POSIX_SPAWN_DUP2, claim_fd, 3),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
        try:
            pid = os.posix_spawn(exe, [exe, "-I", "-S", "-c", _GUARDIAN, extension, backend,
                                       lock_path, claim_path],
                                 os.environ, file_actions=actions, setsid=True,
                                 setsigmask=())
        except OSError as exc:
            ours.close()
            return -(exc.errno or _errno.EIO), -1
    finally:
        theirs.close()
    # The middle process exits once it has forked the guardian.
    while True:
        try:
            os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    return 0, ours.detach()
