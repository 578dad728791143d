"""Raw hugepage pool guardian (csrc/poolguard.h): each returns ``-errno`` on failure."""
from __future__ import annotations

import os
import socket
import sys
from typing import Callable

from . import ffi, lib

arm: Callable[[int, int, bytes, int], int] = lib.pm_guard_arm
clear: Callable[[int, int], int] = lib.pm_guard_clear
wait_ready: Callable[[int], int] = lib.pm_guard_wait_ready

# What the guardian process runs: the C core's serving loop on its stdin, the socket. Python
# starts with -I -S (no site; PYTHON* variables ignored, the rest passed for the dynamic
# loader's sake) and loads the extension by its path, without
# physmem's package (whose imports would triple its start-up); cffi's backend comes by path.
_GUARDIAN = ("import sys; sys.path[:0] = sys.argv[2:]\n"
             "from importlib.machinery import ExtensionFileLoader\n"
             "from importlib.util import module_from_spec, spec_from_loader\n"
             "loader = ExtensionFileLoader('_native', sys.argv[1])\n"
             "native = module_from_spec(spec_from_loader('_native', loader))\n"
             "loader.exec_module(native)\n"
             "native.lib.pm_guard_serve(0)\n")


def serve(fd: int) -> None:
    """Run the guardian loop on ``fd`` (in the guardian process; never returns)."""
    lib.pm_guard_serve(fd)


def fork() -> tuple[int, int]:
    """Fork a guardian: (its pid, the socket's write end), or (-errno, -1)."""
    wfd = ffi.new("int *", -1)
    pid: int = lib.pm_guard_start(wfd)
    return pid, int(wfd[0])


def spawn() -> tuple[int, int]:
    """Start a guardian by exec (it shares no memory with this process, however long it
    lives): (its pid, the socket's write end), or (-errno, -1) where that cannot be done."""
    import importlib

    exe = sys.executable
    if not exe or not os.access(exe, os.X_OK):
        return -2, -1  # ENOENT: embedded interpreters have no executable to start
    from .. import _native

    extension = os.path.abspath(_native.__file__)
    backend_file = importlib.import_module("_cffi_backend").__file__  # the extension needs it
    if backend_file is None:
        return -2, -1
    backend = os.path.dirname(os.path.abspath(backend_file))
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
        try:
            pid = os.posix_spawn(exe, [exe, "-I", "-S", "-c", _GUARDIAN, extension, backend],
                                 os.environ, file_actions=actions, setsid=True,
                                 setsigmask=())
        except OSError as exc:
            ours.close()
            return -(exc.errno or 5), -1
    finally:
        theirs.close()
    return pid, ours.detach()
