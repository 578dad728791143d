"""physmem.MemFd against the real kernel: seals enforced by write/ftruncate/mmap themselves,
/proc/self/fd for names and leaks."""
from __future__ import annotations

import os

import numpy as np
import pytest

from physmem import InvalidArgument, MemFd, PermissionDenied
from physmem.errors import PhysmemOSError
from physmem.mapping import PAGE_SIZE, Prot
from physmem.memfd import Seal

MiB = 1 << 20


def fd_links() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:  # listdir's own fd, closed by now
            pass
    return out


def test_memfd_shows_in_proc_and_closes():
    before = set(os.listdir("/proc/self/fd"))
    f = MemFd("physmem-test", size=MiB)
    assert os.readlink(f"/proc/self/fd/{f.fd}") == "/memfd:physmem-test (deleted)"
    assert f.size == MiB and os.fstat(f.fd).st_size == MiB
    assert os.get_inheritable(f.fd) is False  # cloexec
    fd = f.fd
    f.close()
    f.close()
    assert not any(link.startswith("/memfd:physmem-test") for link in fd_links())
    assert set(os.listdir("/proc/self/fd")) <= before | {str(fd)}  # listdir's own fd
    with pytest.raises(InvalidArgument, match="closed"):
        f.truncate(0)


def test_map_shares_pages_with_the_file():
    with MemFd("share", size=2 * PAGE_SIZE) as f:
        m = f.map()
        m.array()[:5] = np.frombuffer(b"abcde", np.uint8)
        assert f.read(5) == b"abcde"
        f.write(b"XY", PAGE_SIZE)
        assert bytes(m.view()[PAGE_SIZE:PAGE_SIZE + 2]) == b"XY"
        f.punch_hole(0, PAGE_SIZE)
        assert f.read(5) == bytes(5) and f.size == 2 * PAGE_SIZE
        m.close()


def test_seal_write_refuses_writes_and_writable_maps():
    with MemFd("sealw", size=PAGE_SIZE) as f:
        m = f.map()
        with pytest.raises(PhysmemOSError, match="writable shared mappings") as exc:
            f.add_seals(Seal.WRITE)  # a writable shared mapping exists: EBUSY
        assert exc.value.errno == 16
        m.close()
        f.add_seals(Seal.WRITE)
        assert f.seals & Seal.WRITE
        with pytest.raises(PermissionDenied):
            f.write(b"x")
        with pytest.raises(PermissionDenied):
            f.map()  # writable shared map refused
        ro = f.map(prot=Prot.READ)
        assert ro.view().readonly
        ro.close()


def test_seal_grow_shrink():
    with MemFd("sealgs", size=2 * PAGE_SIZE) as f:
        f.add_seals(Seal.GROW | Seal.SHRINK)
        with pytest.raises(PermissionDenied, match="sealed"):
            f.truncate(4 * PAGE_SIZE)
        with pytest.raises(PermissionDenied):
            f.truncate(PAGE_SIZE)
        with pytest.raises(PermissionDenied):
            f.write(b"x", 2 * PAGE_SIZE)  # writing past the end would grow it
        assert f.size == 2 * PAGE_SIZE
        f.write(b"inside", 0)  # writes within stay allowed


def test_future_write_keeps_existing_maps_writable():
    with MemFd("future", size=PAGE_SIZE) as f:
        m = f.map()
        f.add_seals(Seal.FUTURE_WRITE)
        m.array()[0] = 42  # the existing mapping keeps writing
        assert f.read(1) == b"\x2a"
        with pytest.raises(PermissionDenied):
            f.write(b"x")
        with pytest.raises(PermissionDenied):
            f.map()
        m.close()


def test_seal_seal_and_exec_and_unsealable():
    with MemFd("ss") as f:
        f.add_seals(Seal.SEAL)
        with pytest.raises(PermissionDenied, match="SEAL"):
            f.add_seals(Seal.GROW)
    with MemFd("nosealing", sealing=False) as f:
        assert f.seals & Seal.SEAL  # the kernel seals a non-sealable memfd with SEAL
        with pytest.raises(PermissionDenied):
            f.add_seals(Seal.GROW)
    with MemFd("noexec", noexec=True) as f:
        assert f.seals & Seal.EXEC  # MFD_NOEXEC_SEAL (6.3) implies F_SEAL_EXEC
        assert not os.fstat(f.fd).st_mode & 0o111


@pytest.mark.hugepages
def test_hugetlb_memfd(hugepage_pool):
    hugepage_pool(2, 2048)
    with MemFd("huge", size=2 * MiB, page_size=2 * MiB) as f:
        assert f.page_size == 2 * MiB
        m = f.map()
        m.array()[::4096] = 3
        assert m.page_size == 2 * MiB
        with pytest.raises(InvalidArgument, match="multiple of the page size"):
            f.truncate(MiB)
        m.close()


def test_invalid_arguments():
    with pytest.raises(InvalidArgument, match="name="):
        MemFd("x" * 300)
    with pytest.raises(InvalidArgument, match="size=-1"):
        MemFd("x", size=-1)
    with pytest.raises(InvalidArgument, match="page_size=3"):
        MemFd("x", page_size=3)
    with MemFd("x") as f:
        with pytest.raises(InvalidArgument, match="nothing to map"):
            f.map()
        with pytest.raises(InvalidArgument, match="seals="):
            f.add_seals(1 << 20)
