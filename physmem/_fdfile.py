"""An owned file descriptor with the lifecycle every physmem file object shares."""
from __future__ import annotations

import os
from typing import TypeVar

from .errors import InvalidArgument
from .proc._read import open_fd

_T = TypeVar("_T", bound="FdFile")


class FdFile:
    """An owned fd: ``close()``, context manager, closed on collection.

    File readers open ``path`` with :meth:`_open`; objects made by a syscall (memfd,
    userfaultfd) set ``_fd`` themselves.
    """

    path: str = ""
    _fd: int = -1

    def _open(self, path: str, what: str, *, pid: int | None = None) -> None:
        self.path = path
        self._fd = open_fd(path, what, pid)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        return self._fd_open()

    def _fd_open(self) -> int:
        """The fd, or InvalidArgument naming the file if closed."""
        if self._fd < 0:
            where = f"{self.path}: " if self.path else ""
            raise InvalidArgument(f"{where}the {type(self).__name__} is closed")
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
