"""physmem.MemFd against the real kernel: seals enforced by write/ftruncate/mmap themselves,
/proc/self/fd for names and leaks."""
from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import python_env
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
        assert exc.value.errno == errno.EBUSY
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
        # Past the end of a hugetlb file too: refused up front (nothing is touched here).
        with pytest.raises(InvalidArgument, match="truncate"):
            f.map(4 * MiB)
        with pytest.raises(InvalidArgument, match=f"{m.address:#x}"):
            f.truncate(0)
        assert os.fstat(f.fd).st_size == 2 * MiB
        m.close()
        f.truncate(0)


def test_invalid_arguments():
    with pytest.raises(InvalidArgument, match="^name must be a str"):
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


def run_child(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python, so a SIGBUS fails the test instead of killing pytest."""
    env, cwd = python_env()
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60)


def test_map_past_end_of_file_is_refused_not_sigbus():
    # map(size=8192) of a 4096-byte memfd, then a write at 5000, would be a SIGBUS.
    proc = run_child("""
        from physmem import InvalidArgument, MemFd
        f = MemFd("x", size=4096)
        for size, offset in ((8192, 0), (4096, 4096)):
            try:
                m = f.map(size=size, offset=offset)
                m.array()[1000] = 1  # SIGBUS before the fix
            except InvalidArgument as exc:
                assert "truncate" in str(exc) and "4096" in str(exc), str(exc)
                print("refused")
        m = f.map()
        try:
            m.remap(8192)  # growing the mapping past the end: refused as well
            m.array()[5000] = 1
        except InvalidArgument as exc:
            print("refused")
        f.truncate(8192)
        m.remap(8192)  # now the file covers it
        m.array()[5000] = 7
        assert f.read(1, 5000) == b"\\x07"
        print("grown")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["refused", "refused", "refused", "grown"]


def test_truncate_refuses_to_cut_under_a_live_mapping():
    proc = run_child("""
        import mmap
        from physmem import InvalidArgument, MemFd
        f = MemFd("cut", size=3 * 4096)
        m = f.map(4096, 4096)  # file bytes 4096..8191
        for size in (4096, 0):
            try:
                f.truncate(size)
                m.array()[0] = 1  # SIGBUS before the fix
            except InvalidArgument as exc:
                assert f"{m.address:#x}" in str(exc), str(exc)
                print("refused")
        f.truncate(8192)  # the mapping still lies within the file
        m.close()
        raw = mmap.mmap(f.fd, 8192)  # a mapping made without physmem counts too
        try:
            f.truncate(4096)
            raw[5000] = 1
        except InvalidArgument:
            print("refused")
        raw.close()
        f.truncate(0)
        print("done")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["refused", "refused", "refused", "done"]


def test_seals_is_a_seal_flag():
    # The return type never depends on the data (no bare 0 where no seal is set).
    with MemFd("flags") as f:
        assert type(f.seals) is Seal and f.seals == Seal(0)
        f.add_seals(Seal.GROW)
        raw = fcntl.fcntl(f.fd, 1034)  # F_GET_SEALS, independently of physmem
        assert type(f.seals) is Seal and f.seals == Seal(raw) == Seal.GROW


def test_read_is_capped_at_the_end_of_the_file():
    with MemFd("rd", size=PAGE_SIZE) as f:
        f.write(b"abc", PAGE_SIZE - 3)
        assert f.read(2**62, PAGE_SIZE - 3) == b"abc"  # tried to allocate 4 EiB before
        assert f.read(10, 2 * PAGE_SIZE) == b""
        assert f.read(0) == b""


BAD_MEMFD_CALLS = [
    ("size", lambda f: MemFd("x", size=2**64)),
    ("size", lambda f: MemFd("x", size=3.7)),
    ("page_size", lambda f: MemFd("x", page_size=4096.0)),
    ("size", lambda f: f.truncate(2**64)),
    ("size", lambda f: f.truncate(2**63)),
    ("size", lambda f: f.truncate(4096.0)),
    ("length", lambda f: f.punch_hole(0, 2**64)),
    ("length", lambda f: f.punch_hole(0, 0)),
    ("offset", lambda f: f.punch_hole(2**63, 1)),
    ("offset", lambda f: f.punch_hole(1.5, 1)),
    ("offset", lambda f: f.write(b"x", offset=2**63)),
    ("offset", lambda f: f.write(b"x", offset=-1)),
    ("offset", lambda f: f.write(b"x", offset=1.0)),
    ("data", lambda f: f.write("text")),
    ("length", lambda f: f.read(-1)),
    ("length", lambda f: f.read(3.7)),
    ("offset", lambda f: f.read(1, 2**63)),
    ("size", lambda f: f.map(size=2**64)),
    ("size", lambda f: f.map(size=4096.0)),
    ("offset", lambda f: f.map(offset=2**63)),
    ("offset", lambda f: f.map(offset=-4096)),
    ("seals", lambda f: f.add_seals(1.0)),
    ("seals", lambda f: f.add_seals(2**64)),
]


@pytest.mark.parametrize("match,call", BAD_MEMFD_CALLS,
                         ids=[f"{i}-{m}" for i, (m, _) in enumerate(BAD_MEMFD_CALLS)])
def test_out_of_range_and_non_integer_arguments(match, call):
    # Unchecked, these would raise OverflowError/TypeError/OSError from cffi or os, or
    # truncate a float silently.
    with MemFd("bad", size=PAGE_SIZE) as f:
        with pytest.raises(InvalidArgument, match=rf"\b{match}\b"):
            call(f)
        assert f.size == PAGE_SIZE and f.seals == Seal(0)


@pytest.mark.parametrize("value", ["1", 1, 0, 1j, None, object()],
                         ids=lambda v: "object()" if type(v) is object else repr(v))
@pytest.mark.parametrize("name", ["cloexec", "sealing", "noexec"])
def test_switches_take_only_bools(name, value):
    # cloexec=0 left the fd open across exec although 0 reads as "off"; truthiness decided.
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(InvalidArgument, match=rf"^{name} must be True or False"):
        MemFd("b", **{name: value})
    assert set(os.listdir("/proc/self/fd")) == before  # nothing was created


@pytest.mark.parametrize("value", ["1", 1, 1j, None], ids=repr)
@pytest.mark.parametrize("name", ["shared", "populate", "locked"])
def test_map_switches_take_only_bools(name, value):
    with MemFd("b", size=PAGE_SIZE) as f:
        with pytest.raises(InvalidArgument, match=rf"^{name} must be True or False"):
            f.map(**{name: value})


def test_messages_name_the_seals():
    # Python 3.11 formats an IntFlag as its number: repr said seals=6, a refused truncate
    # "the memfd is sealed (6)".
    with MemFd("sealed", size=PAGE_SIZE) as f:
        f.add_seals(Seal.SHRINK | Seal.GROW)
        assert "seals=SHRINK|GROW>" in repr(f)
        with pytest.raises(PermissionDenied, match=r"sealed \(SHRINK\|GROW\)"):
            f.truncate(2 * PAGE_SIZE)
    with MemFd("open", size=PAGE_SIZE) as f:
        assert "seals=0>" in repr(f)
