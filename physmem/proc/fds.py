"""/proc/<pid>/fd and /proc/<pid>/map_files: which files a process holds open or maps.

Each entry is a magic link: ``readlink`` gives the name, ``stat`` the file itself (its
device, inode, size and allocated blocks; on hugetlbfs ``st_blksize`` is the huge page size),
even for deleted files and memfds. Reading another process's entries needs
CAP_SYS_ADMIN-level access (PTRACE_MODE_READ).
"""
from __future__ import annotations

from typing import NamedTuple

from ..errors import ParseError
from ._read import is_dir, listdir, pid_path, read_bytes, readlink, stat, u64

__all__ = ["FileStat", "OpenFile", "pids", "open_files", "fd_targets", "mapped_file",
           "mount_id", "namespace"]


class FileStat(NamedTuple):
    """What ``stat`` says of a file held or mapped by a process."""

    device: int        # st_dev (compare with os.makedev(major, minor) of /proc/<pid>/maps)
    inode: int
    size: int          # st_size, bytes
    allocated: int     # st_blocks * 512: bytes of pages the file holds
    block_size: int    # st_blksize: the huge page size on hugetlbfs


class OpenFile(NamedTuple):
    """One open file descriptor of a process."""

    fd: int
    target: str        # readlink: a path, "/memfd:NAME (deleted)", "pipe:[...]"...
    stat: FileStat


def _stat(path: str, what: str, pid: int | None = None) -> FileStat:
    st = stat(path, what, pid)
    return FileStat(st.st_dev, st.st_ino, st.st_size, st.st_blocks * 512, st.st_blksize)


def pids(proc_root: str = "/proc") -> list[int]:
    """Every process id listed in ``proc_root``, ascending."""
    return sorted(int(n) for n in listdir(proc_root) if n.isdigit())


def open_files(pid: int | None = None, proc_root: str = "/proc") -> list[OpenFile]:
    """The open file descriptors of ``pid`` (default: this process) with their targets.

    A descriptor closed while it is read is skipped; a vanished process raises ProcessGone.
    """
    base = pid_path(proc_root, pid, "fd")
    names = listdir(base, pid)
    out = []
    for name in names:
        if not name.isdigit():
            continue
        link = f"{base}/{name}"
        what = "cannot read an open file"
        try:
            out.append(OpenFile(int(name), readlink(link, what, pid), _stat(link, what, pid)))
        except FileNotFoundError:
            if not is_dir(base):
                raise
            continue  # closed meanwhile
    return sorted(out)


def fd_targets(pid: int | None = None, proc_root: str = "/proc") -> dict[int, str]:
    """fd -> what it refers to (``readlink``), without stat'ing each: cheaper than
    :func:`open_files` where only the kind of file matters."""
    base = pid_path(proc_root, pid, "fd")
    out = {}
    for name in listdir(base, pid):
        if not name.isdigit():
            continue
        link = f"{base}/{name}"
        try:
            out[int(name)] = readlink(link, "cannot read an open file", pid)
        except FileNotFoundError:
            if not is_dir(base):
                raise
    return out


def mapped_file(pid: int | None, start: int, end: int, proc_root: str = "/proc") -> FileStat:
    """``stat`` of the file behind the mapping ``[start, end)`` of ``pid``, also when it has
    no name left (deleted files, shared anonymous hugetlb memory)."""
    path = pid_path(proc_root, pid, f"map_files/{start:x}-{end:x}")
    return _stat(path, "cannot stat a mapped file", pid)


def mount_id(fd: int, proc_root: str = "/proc") -> int:
    """The mount a descriptor of this process is on (``mnt_id`` of /proc/self/fdinfo): the
    one identity that tells two mounts of one filesystem apart, and a mount from the one
    stacked over it."""
    path = pid_path(proc_root, None, f"fdinfo/{fd}")
    for line in read_bytes(path).splitlines():
        key, _, value = line.partition(b":")
        if key == b"mnt_id":
            try:
                return u64(value.strip())
            except ValueError:
                break
    raise ParseError("no 'mnt_id:' number", path=path)


def namespace(kind: str, pid: int | None = None, proc_root: str = "/proc") -> int:
    """The inode number that names the ``kind`` (``pid``, ``mnt``, ``net``...) namespace of
    ``pid`` (default: this process), from the ``ns/<kind>`` link (``pid:[4026531836]``).
    Another process's needs ptrace access to it (root)."""
    link = pid_path(proc_root, pid, f"ns/{kind}")
    target = readlink(link, "cannot read a namespace link", pid)
    prefix = f"{kind}:["
    if not (target.startswith(prefix) and target.endswith("]")):
        raise ParseError(f"not a '{prefix}INODE]' link: {target!r}", path=link)
    try:
        return u64(target[len(prefix):-1].encode())
    except ValueError:
        raise ParseError(f"not a '{prefix}INODE]' link: {target!r}", path=link) from None
