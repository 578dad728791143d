"""physmem.Mapping against the real kernel: /proc/self/maps, smaps, status and pagemap are the
independent witnesses."""
from __future__ import annotations

import errno

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import python_env
from physmem import InvalidArgument, Mapping
from physmem.errors import FeatureUnavailable, PhysmemOSError
from physmem.mapping import PAGE_SIZE, Advice, Prot

MiB = 1 << 20


def maps_ranges() -> list[tuple[int, int, str]]:
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            rng, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in rng.split("-"))
            out.append((lo, hi, perms))
    return out


def is_mapped(address: int, size: int) -> bool:
    return any(lo < address + size and address < hi for lo, hi, _ in maps_ranges())


def isolated(m: Mapping) -> Mapping:
    """Give the mapping its own VMA (an anonymous mapping may merge with a neighbour), so its
    smaps entry starts at its address and counts only its pages."""
    m.advise(Advice.DONTDUMP)
    return m


def smaps_field(address: int, field: str) -> int:
    """``field`` (kB) of the smaps entry that starts at ``address``."""
    with open("/proc/self/smaps") as f:
        current = None
        for line in f:
            m = re.match(r"([0-9a-f]+)-[0-9a-f]+ ", line)
            if m:
                current = int(m.group(1), 16)
            elif current == address and line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no smaps entry at {address:#x}")


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def test_anonymous_map_close_and_maps_agree():
    m = Mapping.anonymous(3 * MiB)
    addr = m.address
    assert m.size == len(m) == 3 * MiB and m.page_size == PAGE_SIZE
    assert any(lo <= addr and addr + 3 * MiB <= hi and perms.startswith("rw")
               for lo, hi, perms in maps_ranges())
    a = m.array(np.uint64)
    a[:] = np.arange(len(a))
    assert m.view()[8] == 1
    del a
    m.close()
    assert not is_mapped(addr, 3 * MiB)
    m.close()  # twice is fine
    with pytest.raises(InvalidArgument, match="closed"):
        m.array()


def test_close_and_remap_refused_while_views_exist():
    m = Mapping.anonymous(MiB)
    arr = m.array(np.uint32)[10:20]  # a derived view keeps the export alive
    mv = m.view()[5:]
    with pytest.raises(BufferError, match="export"):
        m.close()
    with pytest.raises(BufferError):
        m.remap(2 * MiB)
    assert is_mapped(m.address, MiB)
    del arr
    with pytest.raises(BufferError):
        m.close()
    mv.release()
    del mv
    m.close()


def test_views_outliving_the_mapping_object_stay_valid():
    m = Mapping.anonymous(MiB)
    addr = m.address
    arr = m.array(np.uint8)
    del m
    arr[:] = 7  # still mapped: would segfault if the memory had gone
    assert is_mapped(addr, MiB) and int(arr.sum()) == 7 * MiB
    del arr
    assert not is_mapped(addr, MiB)


def test_array_shapes_and_readonly():
    with Mapping.anonymous(MiB) as m:
        a = m.array(np.float64, (16, 8), offset=4096)
        assert a.shape == (16, 8) and a.ctypes.data == m.address + 4096
        with pytest.raises(InvalidArgument, match="shape"):
            m.array(np.float64, (MiB,))
        del a
        assert np.asarray(m).ctypes.data == m.address
    with Mapping.anonymous(PAGE_SIZE, prot=Prot.READ) as ro:
        assert ro.view().readonly and not ro.array().flags.writeable


def test_remap_grows_and_moves_with_content_intact():
    m = Mapping.anonymous(4 * MiB)
    a = m.array(np.uint64)
    a[:] = np.arange(len(a)) * 3
    del a
    try:  # forbid growing in place
        blocker = Mapping.anonymous(PAGE_SIZE, address=m.address + 4 * MiB)
    except PhysmemOSError as exc:  # something else already lives there: just as good
        assert exc.errno == errno.EEXIST
        blocker = None
    old = m.address
    with pytest.raises(PhysmemOSError, match="may_move"):
        m.remap(64 * MiB, may_move=False)
    m.remap(64 * MiB)
    assert m.address != old and m.size == 64 * MiB
    assert not is_mapped(old, 4 * MiB)
    b = m.array(np.uint64, 4 * MiB // 8)
    assert np.array_equal(b, np.arange(4 * MiB // 8, dtype=np.uint64) * 3)
    assert not m.array(np.uint64, offset=4 * MiB).any()
    del b
    m.remap(MiB, may_move=False)  # shrink in place
    assert m.size == MiB and not is_mapped(m.address + MiB, 63 * MiB)
    m.close()
    if blocker is not None:
        blocker.close()


def test_remap_dont_unmap_keeps_old_range_empty():
    m = Mapping.anonymous(MiB)
    m.array()[:] = 9
    old = m.remap(MiB, dont_unmap=True)
    assert old is not None and old.address != m.address
    assert int(m.array().min()) == 9 and not old.array().any()
    old.close()
    m.close()


def test_fixed_address_uses_noreplace():
    probe = Mapping.anonymous(2 * MiB)
    addr = probe.address
    probe.close()
    m = Mapping.anonymous(MiB, address=addr)
    assert m.address == addr
    with pytest.raises(PhysmemOSError, match="already mapped"):
        Mapping.anonymous(MiB, address=addr)
    m.close()


def test_mlock_shows_in_smaps_and_vmlck():
    before = status_kb("VmLck")
    with Mapping.anonymous(4 * MiB) as m:
        isolated(m).mlock()
        assert smaps_field(m.address, "Locked") == 4096
        assert status_kb("VmLck") - before == 4096
        m.munlock()
        assert smaps_field(m.address, "Locked") == 0
        assert status_kb("VmLck") == before
    with Mapping.anonymous(4 * MiB) as m:
        isolated(m).mlock(on_fault=True)  # nothing touched yet: nothing locked
        assert smaps_field(m.address, "Locked") == 0
        m.touch(0, MiB, write=True)  # a read would map the shared zero page
        assert smaps_field(m.address, "Locked") == 1024
    with Mapping.anonymous(MiB, locked=True) as m:
        isolated(m)
        assert smaps_field(m.address, "Locked") == 1024
    assert status_kb("VmLck") == before


def test_populate_and_advise_dontneed_in_smaps():
    with Mapping.anonymous(4 * MiB, populate=True) as m:
        isolated(m)
        assert smaps_field(m.address, "Rss") == 4096
        m.advise(Advice.DONTNEED, MiB, MiB)
        assert smaps_field(m.address, "Rss") == 3072
        m.advise(Advice.POPULATE_WRITE)
        assert smaps_field(m.address, "Rss") == 4096


def test_dontfork_range_absent_in_child():
    with Mapping.anonymous(MiB) as keep, Mapping.anonymous(MiB) as gone:
        gone.advise(Advice.DONTFORK)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report what its maps hold, then leave without cleanup
            try:
                os.write(w, bytes([is_mapped(keep.address, MiB), is_mapped(gone.address, MiB)]))
            finally:
                os._exit(0)
        os.close(w)
        seen = os.read(r, 2)
        os.close(r)
        os.waitpid(pid, 0)
        assert seen == bytes([1, 0])


def test_protect_and_refusal_with_views():
    with Mapping.anonymous(PAGE_SIZE) as m:
        m.protect(Prot.READ)
        assert any(lo == m.address and perms.startswith("r--") for lo, _, perms in maps_ranges())
        m.protect(Prot.READ | Prot.WRITE)
        v = m.view()
        with pytest.raises(BufferError):
            m.protect(Prot.READ)
        with pytest.raises(BufferError):
            m.advise(Advice.GUARD_INSTALL)
        v.release()
        m.protect(Prot.NONE)
        with pytest.raises(InvalidArgument, match="PROT|NONE|protect"):
            m.view()


def test_sync_on_file_mapping(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(PAGE_SIZE))
    with open(path, "r+b") as f, Mapping.from_fd(f, PAGE_SIZE) as m:
        m.array()[:5] = np.frombuffer(b"hello", np.uint8)
        m.sync()
        m.sync(asynchronous=True, invalidate=True)
    assert path.read_bytes()[:5] == b"hello"


@pytest.mark.hugepages
def test_hugetlb_mremap_keeps_physical_addresses(hugepage_pool):
    from physmem.pagemap import PageMap

    hugepage_pool(4, 2048)
    huge = 2 * MiB
    m = Mapping.anonymous(2 * huge, page_size=huge)
    assert m.page_size == huge
    isolated(m).array(np.uint8)[::4096] = 1  # fault both huge pages in
    assert smaps_field(m.address, "KernelPageSize") == 2048
    probe = Mapping.anonymous(6 * huge)  # find a free huge-aligned range to move to
    target = (probe.address + huge - 1) // huge * huge
    probe.close()
    with PageMap() as pm:
        before = pm.translate(np.array([m.address, m.address + huge], dtype=np.uint64))
        old = m.address
        m.remap(2 * huge, address=target)
        assert m.address == target != old and not is_mapped(old, 2 * huge)
        after = pm.translate(np.array([m.address, m.address + huge], dtype=np.uint64))
        assert np.array_equal(before, after)
        assert before[0] % huge == 0
        runs = pm.physical_runs(m.address, 2 * huge)
        assert int(runs["nbytes"].sum()) == 2 * huge
    assert int(m.array()[::4096].sum()) == 2 * huge // 4096
    with pytest.raises(InvalidArgument, match="cannot grow a hugetlb"):
        m.remap(4 * huge)
    with pytest.raises(InvalidArgument, match="multiple of the page size"):
        m.remap(huge + PAGE_SIZE)
    m.remap(huge)  # shrinking is allowed
    assert m.size == huge and not is_mapped(target + huge, huge)
    m.close()


def test_invalid_arguments_are_named():
    with pytest.raises(InvalidArgument, match="size=0"):
        Mapping.anonymous(0)
    with pytest.raises(InvalidArgument, match="page_size=12345"):
        Mapping.anonymous(MiB, page_size=12345)
    with pytest.raises(InvalidArgument, match="address=0x1001"):
        Mapping.anonymous(MiB, address=0x1001)
    with pytest.raises(InvalidArgument, match="fd=-1"):
        Mapping.from_fd(-1, MiB)
    with Mapping.anonymous(MiB) as m:
        with pytest.raises(InvalidArgument, match="offset=0x1"):
            m.advise(Advice.DONTNEED, 1, PAGE_SIZE)
        with pytest.raises(InvalidArgument, match="length"):
            m.advise(Advice.DONTNEED, 0, 2 * MiB)
        with pytest.raises(InvalidArgument, match="advice"):
            m.advise(12345)
    if os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        with pytest.raises(InvalidArgument, match="multiple of the page size"):
            Mapping.anonymous(MiB, page_size=2 * MiB)


def test_feature_unavailable_names_flag_and_version(monkeypatch):
    # On this kernel MADV_GUARD_INSTALL exists; pretend the kernel is 6.1 to see the message.
    import physmem._features as feats
    monkeypatch.setattr(feats, "kernel_version", lambda: (6, 1))
    exc = feats.unavailable("madvise MADV_GUARD_INSTALL", "6.13")
    assert isinstance(exc, FeatureUnavailable)
    assert "MADV_GUARD_INSTALL" in str(exc) and "6.13" in str(exc)


def test_nothing_leaks():
    fds = set(os.listdir("/proc/self/fd"))
    n = len(maps_ranges())
    for _ in range(20):
        with Mapping.anonymous(MiB) as m:
            m.array()[:] = 1
            m.remap(2 * MiB)
    assert len(maps_ranges()) <= n and set(os.listdir("/proc/self/fd")) <= fds | {None}


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ is Python 3.12+")
def test_buffer_protocol_312():
    with Mapping.anonymous(PAGE_SIZE) as m:
        mv = memoryview(m)
        with pytest.raises(BufferError):
            m.close()
        mv.release()


def run_child(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python, so a crash (SIGSEGV/SIGBUS) fails the test instead of
    killing pytest."""
    env, cwd = python_env()
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60)


def test_remap_refuses_an_occupied_target():
    # Issue 10.1: MREMAP_FIXED silently replaced m1's pages; m1.close() then unmapped m2's
    # memory and the next access segfaulted.
    proc = run_child("""
        import numpy as np
        from physmem import Mapping
        from physmem.errors import PhysmemOSError
        m1 = Mapping.anonymous(8192)
        m2 = Mapping.anonymous(8192)
        a1 = m1.array()
        a1[:] = 1
        m2.array()[:] = 2
        try:
            m2.remap(8192, address=m1.address)
        except PhysmemOSError as exc:
            assert f"{m1.address:#x}" in str(exc) and exc.address == m1.address, str(exc)
            print("refused")
        assert int(a1.min()) == 1 == int(a1.max()), "m1's pages were replaced"
        del a1
        m1.close()
        assert int(m2.array().min()) == 2 == int(m2.array().max())  # segfaulted before
        m2.close()
        print("intact")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["refused", "intact"]


def test_remap_to_a_free_address_leaves_no_reservation_behind():
    m = Mapping.anonymous(MiB)
    m.array()[:] = 5
    probe = Mapping.anonymous(4 * MiB)
    free = probe.address + MiB
    probe.close()
    before = maps_ranges()
    old = m.address
    m.remap(2 * MiB, address=free)
    assert m.address == free and not is_mapped(old, MiB)
    assert int(m.array()[:MiB].min()) == 5
    # The range holds the moved pages only: nothing left of a PROT_NONE reservation.
    inside = [(max(lo, free), min(hi, free + 2 * MiB), perms) for lo, hi, perms in maps_ranges()
              if lo < free + 2 * MiB and free < hi]
    assert all(perms.startswith("rw") for _, _, perms in inside)
    assert sum(hi - lo for lo, hi, _ in inside) == 2 * MiB
    m.close()
    assert not is_mapped(free, 2 * MiB)
    assert len(maps_ranges()) <= len(before) + 1
    with Mapping.anonymous(2 * MiB) as m:  # onto itself: refused, mapping untouched
        with pytest.raises(PhysmemOSError, match=f"{m.address + MiB:#x}"):
            m.remap(2 * MiB, address=m.address + MiB)
        assert is_mapped(m.address, 2 * MiB) and m.size == 2 * MiB


def test_file_mapping_beyond_end_of_file_is_refused(tmp_path):
    # Issue 10.4: a page wholly past EOF raises SIGBUS on access; from_fd refuses such a map.
    path = tmp_path / "f"
    path.write_bytes(bytes(PAGE_SIZE))
    proc = run_child(f"""
        from physmem import InvalidArgument, Mapping
        f = open({str(path)!r}, "r+b")
        try:
            m = Mapping.from_fd(f, 2 * {PAGE_SIZE})
            m.array()[{PAGE_SIZE} + 100] = 1  # SIGBUS before the fix
        except InvalidArgument as exc:
            assert "4096" in str(exc) and "8192" in str(exc), str(exc)
            print("refused")
        m = Mapping.from_fd(f, {PAGE_SIZE})
        try:
            m.remap(2 * {PAGE_SIZE})
            m.array()[{PAGE_SIZE} + 100] = 1
        except InvalidArgument as exc:
            print("refused")
        m.close()
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["refused", "refused"]
    with open(path, "r+b") as f:  # within the file: fine, also at an offset
        path.write_bytes(bytes(3 * PAGE_SIZE))
        with Mapping.from_fd(f, PAGE_SIZE, 2 * PAGE_SIZE) as m:
            m.array()[:] = 1
        with pytest.raises(InvalidArgument, match="offset"):
            Mapping.from_fd(f, 2 * PAGE_SIZE, 2 * PAGE_SIZE)


BAD_MAPPING_CALLS = [
    ("size", lambda m: Mapping.anonymous(2**64)),
    ("size", lambda m: Mapping.anonymous(3.7)),
    ("size", lambda m: Mapping.anonymous(4096.0)),
    ("address", lambda m: Mapping.anonymous(MiB, address=2**64)),
    ("address", lambda m: Mapping.anonymous(MiB, address=4096.0)),
    ("page_size", lambda m: Mapping.anonymous(MiB, page_size=4096.0)),
    ("page_size", lambda m: Mapping.anonymous(MiB, page_size=2**64)),
    ("prot", lambda m: Mapping.anonymous(MiB, prot=3.7)),
    ("prot", lambda m: Mapping.anonymous(MiB, prot=2**64)),
    ("offset", lambda m: Mapping.from_fd(0, PAGE_SIZE, 2**63)),
    ("offset", lambda m: Mapping.from_fd(0, PAGE_SIZE, 4096.0)),
    ("fd", lambda m: Mapping.from_fd(2**40, PAGE_SIZE)),
    ("fd", lambda m: Mapping.from_fd(1.0, PAGE_SIZE)),
    ("new_size", lambda m: m.remap(2**64)),
    ("new_size", lambda m: m.remap(3.7)),
    ("address", lambda m: m.remap(MiB, address=2**64)),
    ("dtype", lambda m: m.array(dtype="V0")),
    ("dtype", lambda m: m.array(dtype="no such type")),
    ("dtype", lambda m: m.array(dtype=object)),
    ("shape", lambda m: m.array(shape=3.7)),
    ("shape", lambda m: m.array(shape=(2**64, 2**64))),
    ("shape", lambda m: m.array(shape=(-1,))),
    ("offset", lambda m: m.array(offset=2**64)),
    ("offset", lambda m: m.advise(Advice.DONTNEED, 2**64)),
    ("offset", lambda m: m.advise(Advice.DONTNEED, 4096.0)),
    ("length", lambda m: m.advise(Advice.DONTNEED, 0, 2**64)),
    ("length", lambda m: m.touch(0, 3.7)),
    ("advice", lambda m: m.advise(3.0)),
    ("advice", lambda m: m.advise(2**64)),
    ("prot", lambda m: m.protect(1.0)),
    ("length", lambda m: m.sync(length=2**64)),
]


@pytest.mark.parametrize("match,call", BAD_MAPPING_CALLS,
                         ids=[f"{i}-{m}" for i, (m, _) in enumerate(BAD_MAPPING_CALLS)])
def test_out_of_range_and_non_integer_arguments(match, call):
    # Issue 10.10: these reached cffi/numpy and raised OverflowError, ZeroDivisionError or
    # TypeError, or truncated a float silently.
    with Mapping.anonymous(MiB) as m:
        with pytest.raises(InvalidArgument, match=rf"\b{match}\b"):
            call(m)
        assert is_mapped(m.address, MiB)


def libc_mmap(size: int, prot: int) -> int:
    """A private anonymous mapping made by libc's mmap, not physmem: the thing to adopt."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    addr = libc.mmap(None, size, prot, 0x02 | 0x20, -1, 0)  # MAP_PRIVATE | MAP_ANONYMOUS
    assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    return addr


def test_adopting_constructor_refuses_what_is_not_mapped():
    # Mapping(address, size) checked nothing: a view onto an unmapped page, or onto a range
    # running past the end of a real mapping, killed the process with SIGSEGV.
    proc = run_child("""
        from physmem import InvalidArgument, Mapping

        def unmapped(address):
            with open("/proc/self/maps") as f:
                for line in f:
                    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                    if lo <= address < hi:
                        return False
            return True

        m = Mapping.anonymous(4096)
        for address, size in ((0x1000, 4096), (m.address, 1 << 30)):
            try:
                Mapping(address, size).array()[size // 2] = 1  # SIGSEGV before the fix
            except InvalidArgument as exc:
                hole = exc.address
                assert address <= hole < address + size and unmapped(hole), (str(exc), hole)
                assert f"{hole:#x}" in str(exc), str(exc)
                print("refused")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["refused", "refused"]


@pytest.mark.parametrize("match,call", [
    ("address", lambda a: Mapping(7, PAGE_SIZE)),
    ("address", lambda a: Mapping(a + 1, PAGE_SIZE)),
    ("page_size", lambda a: Mapping(a, PAGE_SIZE, page_size=2**63)),
    ("page_size", lambda a: Mapping(a, PAGE_SIZE, page_size=3)),
    ("size", lambda a: Mapping(a, 2**63)),  # raw OverflowError from cffi before
    ("size", lambda a: Mapping(a, 2**64 - a)),
    ("size", lambda a: Mapping(a, 0)),
    ("prot", lambda a: Mapping(a, PAGE_SIZE, prot=2**40)),
], ids=["unaligned", "unaligned2", "page_size-huge", "page_size-3", "size-2**63",
        "size-wraps", "size-0", "prot"])
def test_adopting_constructor_checks_its_arguments(match, call):
    with Mapping.anonymous(2 * PAGE_SIZE) as m:
        with pytest.raises(InvalidArgument, match=rf"\b{match}\b"):
            call(m.address)
        assert is_mapped(m.address, 2 * PAGE_SIZE)


def test_adopting_constructor_takes_a_real_mapping_with_its_permissions():
    import ctypes

    prot_r, prot_rw = 1, 3  # PROT_READ, PROT_READ | PROT_WRITE
    ro = libc_mmap(2 * PAGE_SIZE, prot_r)
    # A write through a READ|WRITE view of read-only memory would be SIGSEGV: refused.
    with pytest.raises(InvalidArgument, match=f"{ro:#x}.*READ"):
        Mapping(ro, 2 * PAGE_SIZE)
    with Mapping(ro, 2 * PAGE_SIZE, prot=Prot.READ) as m:
        assert not m.array().flags.writeable and int(m.array().max()) == 0
    assert not is_mapped(ro, 2 * PAGE_SIZE)  # adopted: close() unmapped it
    rw = libc_mmap(2 * PAGE_SIZE, prot_rw)
    m = Mapping(rw, 2 * PAGE_SIZE)
    m.array()[PAGE_SIZE + 3] = 42
    assert ctypes.string_at(rw + PAGE_SIZE + 3, 1) == b"*"  # read back without physmem
    m.close()
    assert not is_mapped(rw, 2 * PAGE_SIZE)


@pytest.fixture
def empty_2m_pool(is_root):
    """The 2 MiB pool with no page to give (none free, no overcommit); restored after."""
    pool = "/sys/kernel/mm/hugepages/hugepages-2048kB"
    if not os.path.isdir(pool):
        pytest.skip("this kernel has no 2048 kB hugepage pool")
    saved = {}
    for name in ("nr_overcommit_hugepages", "nr_hugepages"):
        with open(f"{pool}/{name}") as f:
            saved[name] = f.read().strip()
    try:
        for name in saved:
            with open(f"{pool}/{name}", "w") as f:
                f.write("0")
        with open(f"{pool}/free_hugepages") as f, open(f"{pool}/resv_hugepages") as g:
            if int(f.read()) - int(g.read()):
                pytest.skip("another process holds free 2 MiB pages")
        yield pool
    finally:
        for name, value in saved.items():
            with open(f"{pool}/{name}", "w") as f:
                f.write(value)


@pytest.mark.hugepages
def test_touch_of_noreserve_hugetlb_with_an_empty_pool_raises_instead_of_sigbus(empty_2m_pool):
    proc = run_child("""
        from physmem import Mapping
        from physmem.errors import HugePagesUnavailable
        m = Mapping.anonymous(2 << 20, page_size=2 << 20, noreserve=True)
        for write in (False, True):
            try:
                m.touch(write=write)  # SIGBUS before the fix
            except HugePagesUnavailable as exc:
                assert "2048 kB" in str(exc) and "nr_hugepages" in str(exc), str(exc)
                assert exc.wanted == 1 and exc.obtained == 0 and exc.size == 2 << 20
                print("refused")
        m.close()
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["refused", "refused"]
    doc = " ".join(Mapping.anonymous.__doc__.split())
    assert "noreserve" in doc and "SIGBUS" in doc


@pytest.mark.hugepages
def test_touch_of_noreserve_hugetlb_takes_the_page_from_the_pool(hugepage_pool):
    pool = hugepage_pool(1, 2048)
    free = int((pool / "free_hugepages").read_text())
    with Mapping.anonymous(2 * MiB, page_size=2 * MiB, noreserve=True) as m:
        assert int((pool / "resv_hugepages").read_text()) == 0  # noreserve: none set aside
        m.touch(MiB, 1, write=True)  # one byte in the middle faults in the whole page
        assert int((pool / "free_hugepages").read_text()) == free - 1


def test_touch_of_a_guard_page_raises_instead_of_sigsegv():
    proc = run_child("""
        import errno
        from physmem import Mapping
        from physmem.errors import FeatureUnavailable, PhysmemOSError
        from physmem.mapping import Advice, PAGE_SIZE
        m = Mapping.anonymous(4 * PAGE_SIZE)
        try:
            m.advise(Advice.GUARD_INSTALL, 2 * PAGE_SIZE, PAGE_SIZE)
        except FeatureUnavailable:
            print("skip")
            raise SystemExit
        m.touch(0, 2 * PAGE_SIZE, write=True)  # the pages before the guard are fine
        try:
            m.touch()  # SIGSEGV before the fix
        except PhysmemOSError as exc:
            assert exc.errno == errno.EFAULT and "SIGSEGV" in str(exc), str(exc)
            print("refused")
    """)
    assert proc.returncode == 0, proc.stderr
    if proc.stdout.split() == ["skip"]:
        pytest.skip("the kernel has no MADV_GUARD_INSTALL (6.13+)")
    assert proc.stdout.split() == ["refused"]


BAD_BOOLS = ["1", 1, 0, 1j, None, object()]


def from_empty_memfd(**kwargs):
    fd = os.memfd_create("empty")
    try:
        return Mapping.from_fd(fd, PAGE_SIZE, **kwargs)
    finally:
        os.close(fd)

BOOL_CALLS = [
    ("shared", lambda m, v: Mapping.anonymous(PAGE_SIZE, shared=v)),
    ("populate", lambda m, v: Mapping.anonymous(PAGE_SIZE, populate=v)),
    ("locked", lambda m, v: Mapping.anonymous(PAGE_SIZE, locked=v)),
    ("noreserve", lambda m, v: Mapping.anonymous(PAGE_SIZE, noreserve=v)),
    ("shared", lambda m, v: from_empty_memfd(shared=v)),
    ("shared", lambda m, v: Mapping(m.address, PAGE_SIZE, shared=v)),
    ("on_fault", lambda m, v: m.mlock(on_fault=v)),
    ("asynchronous", lambda m, v: m.sync(asynchronous=v)),
    ("invalidate", lambda m, v: m.sync(invalidate=v)),
    ("write", lambda m, v: m.touch(write=v)),
    ("may_move", lambda m, v: m.remap(2 * PAGE_SIZE, may_move=v)),
    ("dont_unmap", lambda m, v: m.remap(PAGE_SIZE, dont_unmap=v)),
]


@pytest.mark.parametrize("value", BAD_BOOLS, ids=repr)
@pytest.mark.parametrize("name,call", BOOL_CALLS, ids=[n for n, _ in BOOL_CALLS])
def test_switches_take_only_bools(name, call, value):
    # shared='1' made a shared mapping, mlock(on_fault=1j) locked on fault: truthiness
    # decided. The memfd of from_fd is empty: mapping it would be refused after the switch.
    with Mapping.anonymous(PAGE_SIZE) as m:
        before = maps_ranges()
        with pytest.raises(InvalidArgument, match=rf"^{name} must be True or False"):
            call(m, value)
        assert maps_ranges() == before and m.size == PAGE_SIZE


def test_messages_name_the_protection_flags():
    # Python 3.11 formats an IntFlag as its number: "the Mapping at 0x... is 0".
    with Mapping.anonymous(PAGE_SIZE, prot=Prot.NONE) as m:
        with pytest.raises(InvalidArgument, match=f"{m.address:#x} is NONE: protect"):
            m.view()
    with Mapping.anonymous(PAGE_SIZE, prot=Prot.READ | Prot.WRITE) as m:
        assert "prot=READ|WRITE>" in repr(m)
        view = m.view()
        with pytest.raises(BufferError, match=r"protect\(READ\)"):
            m.protect(Prot.READ)
        view.release()
