"""The files of the hugetlbfs mounts, reached through descriptors only, and their removal.

A mount is opened from ``/`` one component at a time, never through a symlink, and taken only
if the directory reached is that very mount: the mount id and device mountinfo gives it. A
path moved, swapped for a symlink or covered by a later mount (a tmpfs mounted over the
hugetlbfs) leads elsewhere and is refused. Below the mount, every directory is opened
relative to its parent, again without following symlinks, and one on another mount (another
filesystem, a bind mount, even of this hugetlbfs) is not entered. Names an unprivileged user
controls (a directory above the mount, or inside it) therefore cannot lead a walk or a
removal off the hugetlbfs: every name is resolved relative to a directory checked to be on
it, and unlinked relative to that same directory.

Removal (:class:`Remover`) takes a write lease on the file: the kernel grants one only while
no one else has the file open or mapped, in any process of any pid namespace, and an open by
anyone later has to wait until the lease is given up (at most ``fs.lease-break-time``).
"""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import signal
import stat
from typing import Iterator, NamedTuple

from ..errors import PhysmemError
from ..proc import MountInfo, mountinfo
from ..proc.fds import mount_id

__all__ = ["HUGETLBFS", "hugetlbfs_mounts", "open_mount", "mount_files", "Remover", "Staged"]

HUGETLBFS = "hugetlbfs"
HIDDEN_PREFIX = ".physmem-removing-"

# O_PATH to pass through the directories above a mount (search permission suffices);
# O_RDONLY where a directory is listed. O_NOFOLLOW everywhere: a symlink is never followed
# (with O_DIRECTORY, a symlink fails with ENOTDIR instead of being opened itself).
_PASS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The file itself: a lease needs a real open file, not an O_PATH one. O_NONBLOCK so that a
# FIFO put in the file's place cannot block the open (the type is checked right after).
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# The lease-break signal: the kernel sends SIGIO by default, which would end the process.
# SIGURG is ignored unless a handler was installed on purpose.
_BREAK_SIGNAL = signal.SIGURG


def hugetlbfs_mounts(proc_root: str = "/proc") -> list[MountInfo]:
    """The hugetlbfs mounts of this process's mount namespace, bottom first."""
    return [m for m in mountinfo(proc_root) if m.fstype == HUGETLBFS]


def _on_mount(fd: int, mount: MountInfo, proc_root: str) -> int | None:
    """``fd`` if it is a directory of ``mount`` itself (its device and mount id), else
    None, ``fd`` closed."""
    try:
        if os.fstat(fd).st_dev == mount.device and mount_id(fd, proc_root) == mount.mount_id:
            return fd
    except (OSError, PhysmemError):
        pass
    os.close(fd)
    return None


def open_mount(mount: MountInfo, proc_root: str = "/proc") -> int | None:
    """A descriptor (for listing) of the directory mounted as ``mount``; None where its path
    no longer leads to that mount (moved, a symlink on the way, another mount on top)."""
    parts = mount.path.split("/")[1:]
    if not mount.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    fd = -1
    try:
        fd = os.open("/", _PASS)
        for i, part in enumerate(parts):
            below = os.open(part, _DIR if i == len(parts) - 1 else _PASS, dir_fd=fd)
            os.close(fd)
            fd = below
    except OSError:
        if fd >= 0:
            os.close(fd)
        return None
    return _on_mount(fd, mount, proc_root)


def open_dir(parent: int, name: str, mount: MountInfo, proc_root: str = "/proc") -> int | None:
    """A descriptor of the directory ``name`` in ``parent``, None unless it is a directory
    of ``mount`` itself (not a symlink, not another mount)."""
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except OSError:
        return None
    return _on_mount(fd, mount, proc_root)


def mount_files(mount: MountInfo, root: int, proc_root: str = "/proc"
                ) -> Iterator[tuple[tuple[str, ...], os.stat_result]]:
    """(names from the mount's root, ``lstat``) of every regular file of ``mount`` below the
    directory ``root`` (which stays open), in name order, directories depth first."""
    stack: list[tuple[tuple[str, ...], int]] = [((), os.dup(root))]
    try:
        while stack:
            rel, fd = stack.pop()
            try:
                with os.scandir(fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
                subdirs = []
                for e in entries:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    if st.st_dev != mount.device:
                        continue  # another filesystem is mounted here
                    if stat.S_ISREG(st.st_mode):
                        yield rel + (e.name,), st
                    elif stat.S_ISDIR(st.st_mode):
                        subdirs.append(e.name)
                for name in reversed(subdirs):
                    sub = open_dir(fd, name, mount, proc_root)
                    if sub is not None:
                        stack.append((rel + (name,), sub))
            except OSError:
                pass  # a directory removed while it is listed
            finally:
                os.close(fd)
    finally:
        for _, fd in stack:
            os.close(fd)


class Staged(NamedTuple):
    """A file :meth:`Remover.stage` holds a write lease on, moved to a hidden name."""

    parent: int    # the directory it is in, checked to be on its mount
    name: str      # its name there
    hidden: str    # the name it has until it is removed or put back
    fd: int        # the open file holding the lease
    device: int
    inode: int


class Remover:
    """Descriptors of the mounts, directories and files of one batch of removals; closing
    it gives up every lease. Two steps, so that one scan of the processes can be made
    between them while the leases hold: :meth:`stage` takes the lease and hides the name
    (an open that started before it still has to pass the lease), :meth:`finish` removes
    the file, or puts it back if the lease was broken meanwhile."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._mounts: dict[tuple[str, int], MountInfo] | None = None
        self._dirs: dict[tuple[str, int, tuple[str, ...]], int | None] = {}
        self._files: list[int] = []

    def __enter__(self) -> Remover:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._files:
            os.close(fd)  # gives up the lease
        for d in self._dirs.values():
            if d is not None:
                os.close(d)
        self._files, self._dirs = [], {}

    def _mount(self, path: str, device: int) -> MountInfo | None:
        if self._mounts is None:
            # Of several hugetlbfs mounts of one filesystem at one path, the last (top) one
            # is the one the path leads to.
            self._mounts = {(m.path, m.device): m for m in hugetlbfs_mounts(self.proc_root)}
        return self._mounts.get((path, device))

    def _dir(self, mount_path: str, device: int, rel: tuple[str, ...]) -> int | None:
        key = (mount_path, device, rel)
        if key not in self._dirs:
            fd = None
            mount = self._mount(mount_path, device)
            if mount is not None and not rel:
                fd = open_mount(mount, self.proc_root)
            elif mount is not None:
                parent = self._dir(mount_path, device, rel[:-1])
                if parent is not None:
                    fd = open_dir(parent, rel[-1], mount, self.proc_root)
            self._dirs[key] = fd
        return self._dirs[key]

    def stage(self, mount_path: str, device: int, inode: int, rel: tuple[str, ...]
              ) -> Staged | str:
        """Lease the file ``rel`` of the mount at ``mount_path`` and hide its name, if it is
        still the regular file (``device``, ``inode``) and nobody has it open; otherwise the
        reason it is kept."""
        parent = self._dir(mount_path, device, rel[:-1])
        if parent is None:
            return ("its hugetlbfs mount or a directory on its path is gone, moved, or "
                    "covered by another mount")
        name = rel[-1]
        try:
            fd = os.open(name, _FILE, dir_fd=parent)
        except FileNotFoundError:
            return "removed meanwhile"
        except OSError as exc:
            return f"cannot open it: {os.strerror(exc.errno or errno.EIO)}"
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (device, inode):
                return "replaced by another file since the audit"
            reason = self._lease(fd)
            if reason:
                return reason
            hidden = HIDDEN_PREFIX + secrets.token_hex(8)
            try:
                os.rename(name, hidden, src_dir_fd=parent, dst_dir_fd=parent)
            except OSError as exc:
                return f"cannot rename it: {os.strerror(exc.errno or errno.EIO)}"
            staged = Staged(parent, name, hidden, fd, device, inode)
            if not self._holds(staged):
                # The name was swapped between the open and the rename (possible only for
                # whoever may write this directory): give the other file its name back.
                return "replaced by another file since the audit" + self._put_back(staged)
            self._files.append(fd)
            fd = -1
            return staged
        finally:
            if fd >= 0:
                os.close(fd)

    @staticmethod
    def _lease(fd: int) -> str:
        try:
            fcntl.fcntl(fd, fcntl.F_SETSIG, _BREAK_SIGNAL)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EBUSY):
                return "open or mapped by a process (one the audit may not see)"
            if exc.errno == errno.EACCES:
                return "no lease: neither its owner nor CAP_LEASE"
            if exc.errno == errno.EINVAL:
                return "the kernel grants no file leases (fs.leases-enable is 0)"
            return f"no lease: {os.strerror(exc.errno or errno.EIO)}"
        return ""

    def _holds(self, s: Staged) -> bool:
        try:
            st = os.stat(s.hidden, dir_fd=s.parent, follow_symlinks=False)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (s.device, s.inode)

    @staticmethod
    def _put_back(s: Staged) -> str:
        """The hidden file under its name again (never over a file made since with that
        name); what became of it, for the reason."""
        try:
            os.link(s.hidden, s.name, src_dir_fd=s.parent, dst_dir_fd=s.parent,
                    follow_symlinks=False)
        except OSError as exc:
            return f"; left as {s.hidden} ({os.strerror(exc.errno or errno.EIO)})"
        try:
            os.unlink(s.hidden, dir_fd=s.parent)
        except OSError:
            pass
        return ""

    def finish(self, s: Staged, held_by: tuple[int, ...] = ()) -> str:
        """Remove the staged file unless its lease was broken (someone opened it since
        :meth:`stage`) or ``held_by`` names processes holding it; '' when removed, else the
        reason it was put back."""
        if fcntl.fcntl(s.fd, fcntl.F_GETLEASE) != fcntl.F_WRLCK:
            return "opened meanwhile" + self._put_back(s)
        if held_by:
            return f"held by pid {', '.join(map(str, held_by))}" + self._put_back(s)
        if not self._holds(s):
            return "its hidden name was taken over by another file"
        try:
            os.unlink(s.hidden, dir_fd=s.parent)
        except OSError as exc:
            return f"cannot remove it: {os.strerror(exc.errno or errno.EIO)}" + self._put_back(s)
        return ""
