"""physmem.UserFaultFd against the real kernel: faulting threads get the right bytes, WP
faults and fork/remap/unmap events arrive, and nothing leaks (/proc/self/fd)."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from physmem import InvalidArgument, Mapping, MemFd, UserFaultFd
from physmem.mapping import PAGE_SIZE, Advice, hugepage_sizes
from physmem.userfaultfd import EventKind, FaultFlag, Feature, Ioctl, Mode

from conftest import python_env

# Without root the kernel refuses userfaultfd() unless vm.unprivileged_userfaultfd=1.
pytestmark = pytest.mark.root(reason="userfaultfd needs root (or vm.unprivileged_userfaultfd=1)")

MiB = 1 << 20


def uffd_fds() -> int:
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[userfaultfd]"
        except OSError:
            pass
    return n


@pytest.fixture
def no_uffd_leak():
    before = uffd_fds()
    yield
    assert uffd_fds() == before


def touch_in_thread(m: Mapping, *, write: bool = False, offset: int = 0,
                    length: int | None = None) -> tuple[threading.Thread, dict]:
    """Fault the range from another thread (Mapping.touch drops the GIL)."""
    out: dict = {}

    def run():
        out["sum"] = m.touch(offset, length, write=write)
        out["tid"] = threading.get_native_id()

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_negotiation_and_ioctls(no_uffd_leak):
    with UserFaultFd(features=Feature.THREAD_ID) as u:
        assert u.features == Feature.THREAD_ID
        assert u.available_features & Feature.THREAD_ID
        assert u.ioctls & Ioctl.REGISTER and u.ioctls & Ioctl.API
        with Mapping.anonymous(MiB) as m:
            ioctls = u.register(m)
            assert ioctls & Ioctl.COPY and ioctls & Ioctl.ZEROPAGE
            u.unregister(m)


def test_flags_are_named_in_repr_and_errors(no_uffd_leak):
    # Python 3.11 formats an IntFlag as a bare number; the reader must see the names.
    with UserFaultFd(features=Feature.THREAD_ID) as u:
        assert "features=THREAD_ID" in repr(u)
        with Mapping.anonymous(MiB) as m:
            u.register(m)
            with u.serve_zero():
                with pytest.raises(InvalidArgument, match=r"\bWP\b") as e:
                    u.register(m, mode=Mode.MISSING | Mode.WP)
                assert "3" not in str(e.value).split(":")[0].split()


def test_missing_faults_served_by_hand_with_thread_id(no_uffd_leak):
    src = np.arange(2 * PAGE_SIZE, dtype=np.uint8) ^ 0x5A
    with UserFaultFd(features=Feature.THREAD_ID) as u, Mapping.anonymous(2 * PAGE_SIZE) as m:
        u.register(m, mode=Mode.MISSING)
        t, out = touch_in_thread(m, offset=PAGE_SIZE + 123, length=1)
        assert u.wait(5)
        (ev,) = u.read_events()
        assert ev.kind is EventKind.PAGEFAULT and not ev.flags & FaultFlag.WRITE
        assert ev.address & ~(PAGE_SIZE - 1) == m.address + PAGE_SIZE
        assert u.copy(m.address + PAGE_SIZE, src[PAGE_SIZE:]) == PAGE_SIZE
        t.join(5)
        assert not t.is_alive() and out["tid"] == ev.thread_id
        assert out["sum"] == int(src[PAGE_SIZE + 123])
        u.zeropage(m.address, PAGE_SIZE)
        assert not m.array()[:PAGE_SIZE].any()
        with pytest.raises(OSError, match="already present"):
            u.zeropage(m.address, PAGE_SIZE)


def test_serve_python_handler_gives_right_bytes(no_uffd_leak):
    size = 4 * MiB
    src = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8)
    with UserFaultFd() as u, Mapping.anonymous(size) as m:
        u.register(m)
        seen = []
        base = m.address

        def handler(ev):
            seen.append(ev.address)
            off = (ev.address - base) & ~(PAGE_SIZE - 1)
            return src[off:off + PAGE_SIZE]

        server = u.serve(handler)
        t, out = touch_in_thread(m)
        t.join(30)
        server.stop()
        assert server.faults == size // PAGE_SIZE == len(seen)
        assert out["sum"] == int(src[::PAGE_SIZE].astype(np.int64).sum())
        assert np.array_equal(m.array(), src)


def test_serve_from_native_and_serve_zero(no_uffd_leak):
    size = 8 * MiB
    src = np.arange(size // 8 - 100, dtype=np.uint64)  # shorter than the mapping: zeros after
    with UserFaultFd() as u, Mapping.anonymous(size) as m:
        u.register(m)
        server = u.serve_from(src)
        t, _ = touch_in_thread(m)
        t.join(30)
        server.stop()
        assert server.faults == size // PAGE_SIZE and server.errors == 0
        got = m.array(np.uint64)
        assert np.array_equal(got[:len(src)], src) and not got[len(src):].any()
        del got  # else closing the mapping is refused (BufferError)
    with UserFaultFd() as u, Mapping.anonymous(MiB) as m:
        m2 = m  # keep a name for clarity
        u.register(m2)
        with u.serve_zero() as server:
            m2.touch(write=True)  # served from C; the GIL is not needed
        assert server.faults == MiB // PAGE_SIZE
        assert not m2.array().any()


def test_handler_exception_fills_zeros_and_is_raised_by_stop(no_uffd_leak):
    with UserFaultFd() as u, Mapping.anonymous(PAGE_SIZE) as m:
        u.register(m)

        def handler(ev):
            raise KeyError("boom")

        server = u.serve(handler)
        assert m.touch() == 0  # did not hang
        with pytest.raises(KeyError, match="boom"):
            server.stop()


def test_write_protect_faults_reported(no_uffd_leak):
    with UserFaultFd(features=Feature.PAGEFAULT_FLAG_WP) as u, \
            Mapping.anonymous(4 * PAGE_SIZE) as m:
        m.array()[:] = 1  # WP needs present pages
        ioctls = u.register(m, mode=Mode.WP)
        assert ioctls & Ioctl.WRITEPROTECT
        u.writeprotect(m.address, 4 * PAGE_SIZE, True)
        m.touch()  # reads do not fault
        events = []

        def handler(ev):
            events.append(ev)
            u.writeprotect(ev.address & ~(PAGE_SIZE - 1), PAGE_SIZE, False)  # wakes the writer

        server = u.serve(handler)
        m.touch(2 * PAGE_SIZE, PAGE_SIZE, write=True)
        server.stop()
        assert len(events) == 1
        assert events[0].flags & FaultFlag.WP and events[0].flags & FaultFlag.WRITE
        assert events[0].address & ~(PAGE_SIZE - 1) == m.address + 2 * PAGE_SIZE


def test_minor_faults_continue_on_shmem(no_uffd_leak):
    with MemFd("minor", size=PAGE_SIZE) as f, UserFaultFd(features=Feature.MINOR_SHMEM) as u:
        f.write(b"page cache!")
        m = f.map()
        u.register(m, mode=Mode.MINOR)
        events = []

        def handler(ev):
            events.append(ev)
            u.continue_(ev.address & ~(PAGE_SIZE - 1), PAGE_SIZE)

        server = u.serve(handler)
        m.touch()
        server.stop()
        assert len(events) == 1 and events[0].flags & FaultFlag.MINOR
        assert bytes(m.view()[:11]) == b"page cache!"
        m.close()


def test_fork_remap_unmap_remove_events(no_uffd_leak):
    features = Feature.EVENT_FORK | Feature.EVENT_REMAP | Feature.EVENT_UNMAP | \
        Feature.EVENT_REMOVE
    with UserFaultFd(features=features) as u:
        m = Mapping.anonymous(4 * PAGE_SIZE)
        u.register(m)
        server = u.serve_zero()
        m.touch(write=True)
        pid = os.fork()  # blocks until the native server has read the FORK event
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        m.advise(Advice.DONTNEED, 0, PAGE_SIZE)  # REMOVE
        old = m.address
        m.remap(8 * PAGE_SIZE)  # REMAP (the kernel moves it or grows it in place)
        moved = m.address
        m.close()  # UNMAP
        # The kernel lets munmap return once the event is read; the server files it just
        # after, so collect until the last one is in.
        events, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                e.kind is EventKind.UNMAP and e.start == moved for e in events):
            events += server.events()
        server.stop()
        kinds = [e.kind for e in events]
        assert EventKind.FORK in kinds and EventKind.REMOVE in kinds and EventKind.UNMAP in kinds
        fork = next(e for e in events if e.kind is EventKind.FORK)
        assert os.readlink(f"/proc/self/fd/{fork.fd}") == "anon_inode:[userfaultfd]"
        os.close(fork.fd)  # the child's uffd is ours to close
        rem = next(e for e in events if e.kind is EventKind.REMOVE)
        assert (rem.start, rem.end) == (old, old + PAGE_SIZE)
        if moved != old:
            remap = next(e for e in events if e.kind is EventKind.REMAP)
            assert (remap.from_, remap.to, remap.length) == (old, moved, 4 * PAGE_SIZE)
        unmaps = [(e.start, e.end) for e in events if e.kind is EventKind.UNMAP]
        assert (moved, moved + 8 * PAGE_SIZE) in unmaps  # close()


def test_move_and_poison(no_uffd_leak):
    with UserFaultFd(features=Feature.MOVE | Feature.POISON) as u, \
            Mapping.anonymous(2 * PAGE_SIZE) as dst, Mapping.anonymous(PAGE_SIZE) as src:
        src.array()[:] = 0xAB
        u.register(dst)
        assert u.move(dst.address, src.address, PAGE_SIZE) == PAGE_SIZE
        assert int(dst.array()[:PAGE_SIZE].min()) == 0xAB
        assert not src.array().any()  # the page moved away: src reads fresh zeros
        assert u.poison(dst.address + PAGE_SIZE, PAGE_SIZE) == PAGE_SIZE
    with UserFaultFd() as u, Mapping.anonymous(PAGE_SIZE) as m:
        u.register(m)
        with pytest.raises(InvalidArgument, match="Feature.MOVE"):
            u.move(m.address, m.address, PAGE_SIZE)


def test_close_wakes_blocked_faulter_and_invalid_arguments(no_uffd_leak):
    u = UserFaultFd()
    m = Mapping.anonymous(PAGE_SIZE)
    u.register(m)
    t, out = touch_in_thread(m)
    assert u.wait(5)
    u.close()  # no server: closing resolves the fault as if never registered
    t.join(5)
    assert not t.is_alive() and out["sum"] == 0
    with pytest.raises(InvalidArgument, match="closed"):
        u.register(m)
    with UserFaultFd() as u2:
        with pytest.raises(InvalidArgument, match="aligned"):
            u2.register(m.address + 1, PAGE_SIZE)
        with pytest.raises(InvalidArgument, match="length is required"):
            u2.register(m.address)
        with pytest.raises(InvalidArgument, match="mode"):
            u2.register(m, mode=0)
        with pytest.raises(InvalidArgument, match="register a range"):
            u2.serve_from(b"x")
        u2.register(m)
        s = u2.serve_zero()
        with pytest.raises(InvalidArgument, match="already running"):
            u2.serve_zero()
        s.stop()
        with pytest.raises(InvalidArgument, match="cpu="):
            u2.serve_from(b"x", cpu=10_000)
    m.close()
    with pytest.raises(InvalidArgument, match="features="):
        UserFaultFd(features=1 << 40)


def native_server_cpus() -> set[int]:
    """The CPUs the (one) native server thread may run on, from /proc."""
    (tid,) = [t for t in os.listdir("/proc/self/task")
              if open(f"/proc/self/task/{t}/comm").read().strip() == "physmem-uffd"]
    return os.sched_getaffinity(int(tid))


def wait_for_cpus(want: set[int], timeout: float = 5) -> set[int]:
    deadline = time.monotonic() + timeout
    while (got := native_server_cpus()) != want and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_native_server_follows_the_faulting_thread(no_uffd_leak):
    a, b = sorted(os.sched_getaffinity(0))[:2]
    allowed = os.sched_getaffinity(0)
    size = 2048 * PAGE_SIZE  # past the 1024 faults after which the server looks again
    src = np.random.default_rng(2).integers(0, 256, size, dtype=np.uint8)
    try:
        os.sched_setaffinity(0, {a})
        with UserFaultFd(features=Feature.THREAD_ID) as u, Mapping.anonymous(size) as m:
            u.register(m)
            server = u.serve_from(src, follow=True)
            assert wait_for_cpus({a}) == {a}  # starts on the caller's CPU

            def fault_from_b():
                os.sched_setaffinity(0, {b})
                m.touch()

            t = threading.Thread(target=fault_from_b)
            t.start()
            t.join(30)
            assert native_server_cpus() == {b}  # moved to the faulter's
            server.stop()
            assert server.faults == size // PAGE_SIZE and server.errors == 0
            assert np.array_equal(m.array(), src)
    finally:
        os.sched_setaffinity(0, allowed)


def test_native_server_placement_options(no_uffd_leak):
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    with UserFaultFd() as u, Mapping.anonymous(MiB) as m:
        u.register(m)
        with u.serve_zero(cpu=cpu) as server:
            assert wait_for_cpus({cpu}) == {cpu}
            m.touch()
        assert server.faults == m.size // PAGE_SIZE
        with Mapping.anonymous(PAGE_SIZE) as fresh:
            u.register(fresh)
            with u.serve_zero() as server:  # by default left to the scheduler: never pinned
                fresh.touch()  # served: the thread is past its start and in its loop
                assert native_server_cpus() == allowed
            assert server.faults == 1  # m's pages were served by the first server


# ---- no input may leave a faulting thread waiting -----------------------------------------
# The faulting part runs in a child process: were a fault left unresolved, the child is
# killed at the timeout and the test fails, instead of the suite hanging.

_PRELUDE = '''
import errno, json, os, sys, threading
from physmem import InvalidArgument, Mapping, UserFaultFd
from physmem._raw import ffi, lib
from physmem.mapping import PAGE_SIZE

def raw(address, length):
    """The bytes at address, read through /proc/self/mem: not through physmem."""
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        return os.pread(fd, length, address)
    finally:
        os.close(fd)

def report(**kw):
    print(json.dumps(kw))
'''


def run_isolated(code: str, timeout: float = 20) -> dict:
    """Run ``code`` in a child Python (it ends with ``report(...)``); return what it reported.
    A child that does not finish in ``timeout`` seconds has a thread stuck in a fault."""
    env, cwd = python_env()
    try:
        p = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
                           capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"a faulting thread hung (child killed after {timeout} s); stderr: {err}")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("bad", ["12345", "'str'", "bytes(PAGE_SIZE + 1)", "object()",
                                 "memoryview(bytes(2 * PAGE_SIZE))[::2]"])
def test_handler_returning_no_page_is_zero_filled_and_recorded(bad):
    r = run_isolated(f'''
        u = UserFaultFd()
        m = Mapping.anonymous(2 * PAGE_SIZE)
        u.register(m)
        good = bytes([0x5A]) * PAGE_SIZE
        server = u.serve(lambda ev: {bad} if ev.address < m.address + PAGE_SIZE else good)
        m.touch(0, PAGE_SIZE)          # the bad answer
        m.touch(PAGE_SIZE, PAGE_SIZE)  # the thread survived it: the next fault is served
        errors = [type(e).__name__ for e in server.exceptions]
        try:
            server.stop()
            raised = None
        except Exception as exc:
            raised = type(exc).__name__
        report(first=raw(m.address, PAGE_SIZE) == bytes(PAGE_SIZE),
               second=raw(m.address + PAGE_SIZE, PAGE_SIZE) == good,
               faults=server.faults, fallbacks=server.fallbacks, errors=errors, raised=raised)
    ''')
    assert r["first"] and r["second"]
    assert (r["faults"], r["fallbacks"]) == (1, 1)
    assert r["errors"] == ["InvalidArgument"] and r["raised"] == "InvalidArgument"


@pytest.mark.parametrize("page_size", [1 << 21, 64, 2**64, 1.5, "4096"])
def test_server_page_size_is_checked_against_the_ranges(page_size, no_uffd_leak):
    with UserFaultFd() as u, Mapping.anonymous(PAGE_SIZE) as m:
        u.register(m)
        with pytest.raises(InvalidArgument, match="page_size"):
            u.serve_zero(page_size=page_size)
        with pytest.raises(InvalidArgument, match="page_size"):
            u.serve_from(b"x", page_size=page_size)
        with pytest.raises(InvalidArgument, match="page_size"):
            u.serve(lambda ev: None, page_size=page_size)
        assert not u._servers
        with u.serve_zero(page_size=PAGE_SIZE) as server:  # the range's own: accepted
            huge = min(hugepage_sizes())
            with Mapping.anonymous(2 * huge) as other:
                # A range of another page size cannot join a running server.
                aligned = (other.address + huge - 1) & ~(huge - 1)
                with pytest.raises(InvalidArgument, match="stop"):
                    u.register(aligned, huge, page_size=huge)
            m.touch()
        assert server.faults == 1


@pytest.mark.parametrize("kind", ["PM_UFFD_SERVE_ZERO", "PM_UFFD_SERVE_FROM"])
@pytest.mark.parametrize("page_size", [1 << 21, 64, 8192])
def test_native_server_resolves_a_fault_it_cannot_fill(kind, page_size):
    # Below the Python checks: the C server itself must answer every fault.
    r = run_isolated(f'''
        u = UserFaultFd()
        m = Mapping.anonymous(PAGE_SIZE)
        u.register(m)
        src = bytes([0xAB]) * PAGE_SIZE
        keep = ffi.from_buffer("char[]", src)
        out = ffi.new("struct pm_uffd_server **")
        rc = lib.pm_uffd_server_start(u.fd, lib.{kind}, int(ffi.cast("uintptr_t", keep)),
                                      len(src), m.address, {page_size}, 0, -1, -1, out)
        assert rc == 0, rc
        m.touch(write=True)
        st = ffi.new("struct pm_uffd_server_stats *")
        lib.pm_uffd_server_stop(out[0], st)
        report(zeros=raw(m.address, PAGE_SIZE) == bytes(PAGE_SIZE), faults=st.faults,
               errors=st.errors, fallbacks=st.fallbacks, last_error=st.last_error)
    ''')
    assert r["zeros"]
    assert (r["faults"], r["errors"], r["fallbacks"]) == (0, 1, 1)
    assert r["last_error"] < 0


def test_servers_zero_fill_hugetlb_ranges_registered_as_base_pages(hugepage_pool):
    # Registered by address, the range is taken to have base pages: a 4 KiB fill of a hugetlb
    # page fails (EINVAL), and both servers must resolve the fault with a zeroed huge page.
    hugepage_pool(2)
    r = run_isolated('''
        def free_hugepages():
            with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
                return int(f.read())
        HUGE = 2 << 20
        out = {}
        for name in ("native", "python"):
            u = UserFaultFd()
            m = Mapping.anonymous(HUGE, page_size=HUGE)
            u.register(m.address, HUGE)
            before = free_hugepages()
            if name == "native":
                server = u.serve_zero()
            else:
                server = u.serve(lambda ev: bytes([1]) * PAGE_SIZE)
            m.touch(HUGE - PAGE_SIZE, PAGE_SIZE, write=True)
            used = before - free_hugepages()
            zeros = raw(m.address, HUGE) == bytes(HUGE)
            if name == "native":
                server.stop()
                out[name] = [used, zeros, server.faults, server.errors, server.fallbacks,
                             server.last_error]
            else:
                server.stop(raise_errors=False)
                out[name] = [used, zeros, server.faults, [str(e) for e in server.exceptions],
                             server.fallbacks]
            u.close()
            m.close()
        report(**out)
    ''')
    assert r["native"] == [1, True, 0, 1, 1, errno.EINVAL]
    used, zeros, faults, errors, fallbacks = r["python"]
    assert (used, zeros, faults, fallbacks) == (1, True, 0, 1)
    assert len(errors) == 1 and "Invalid argument" in errors[0]


@pytest.mark.parametrize("answer", ["raise KeyError", "bytes(PAGE_SIZE)"])
def test_python_server_failing_a_wp_fault_lifts_the_protection(answer):
    r = run_isolated(f'''
        from physmem.userfaultfd import Feature, Mode
        u = UserFaultFd(features=Feature.PAGEFAULT_FLAG_WP)
        m = Mapping.anonymous(PAGE_SIZE)
        m.array()[:] = 7
        u.register(m, mode=Mode.WP)
        u.writeprotect(m.address, PAGE_SIZE, True)
        def handler(ev):
            if "{answer}".startswith("raise"):
                {answer}
            return {answer.split()[-1] if answer.startswith("raise") else answer}
        server = u.serve(handler)
        m.touch(write=True)
        server.stop(raise_errors=False)  # the counts are final once the thread has stopped
        report(data=raw(m.address, PAGE_SIZE) == bytes([7]) * PAGE_SIZE,
               faults=server.faults, fallbacks=server.fallbacks,
               errors=[type(e).__name__ for e in server.exceptions])
    ''')
    want = "KeyError" if answer.startswith("raise") else "InvalidArgument"
    assert r == {"data": True, "faults": 0, "fallbacks": 1, "errors": [want]}


def test_native_servers_refuse_ranges_registered_for_wp_or_minor(no_uffd_leak):
    with UserFaultFd(features=Feature.PAGEFAULT_FLAG_WP) as u, \
            Mapping.anonymous(PAGE_SIZE) as m, Mapping.anonymous(PAGE_SIZE) as wp:
        wp.array()[:] = 1
        u.register(wp, mode=Mode.WP)
        with pytest.raises(InvalidArgument, match="MISSING faults only"):
            u.serve_zero()
        with pytest.raises(InvalidArgument, match="MISSING faults only"):
            u.serve_from(b"x")
        u.register(wp, mode=Mode.WP | Mode.MISSING)
        u.register(wp, mode=Mode.MISSING)  # the kernel keeps WP | MISSING: still refused
        with pytest.raises(InvalidArgument, match="MISSING faults only"):
            u.serve_zero()
        u.unregister(wp)
        u.register(wp, mode=Mode.WP)
        u.register(wp, mode=Mode.MISSING)  # this replaces WP
        u.register(m)
        with u.serve_zero():
            with pytest.raises(InvalidArgument, match="MISSING faults only"):
                u.register(wp, mode=Mode.WP | Mode.MISSING)
            m.touch()


@pytest.mark.parametrize("mode", ["WP", "MINOR"])
def test_native_server_answers_wp_and_minor_faults(mode):
    # Below the Python checks: the C server lifts the protection / maps the page cache page
    # rather than leaving the thread waiting (or re-faulting forever).
    r = run_isolated(f'''
        from physmem import MemFd
        from physmem.userfaultfd import Feature, Mode
        if "{mode}" == "WP":
            u = UserFaultFd(features=Feature.PAGEFAULT_FLAG_WP)
            m = Mapping.anonymous(PAGE_SIZE)
            m.array()[:] = 7
            u.register(m, mode=Mode.WP)
            u.writeprotect(m.address, PAGE_SIZE, True)
        else:
            f = MemFd("minor", size=PAGE_SIZE)
            f.write(bytes([7]) * PAGE_SIZE)
            u = UserFaultFd(features=Feature.MINOR_SHMEM)
            m = f.map()
            u.register(m, mode=Mode.MINOR)
        out = ffi.new("struct pm_uffd_server **")
        assert lib.pm_uffd_server_start(u.fd, lib.PM_UFFD_SERVE_ZERO, 0, 0, 0, PAGE_SIZE, 1,
                                        -1, -1, out) == 0
        m.touch(write="{mode}" == "WP")
        st = ffi.new("struct pm_uffd_server_stats *")
        lib.pm_uffd_server_stop(out[0], st)
        report(data=raw(m.address, PAGE_SIZE) == bytes([7]) * PAGE_SIZE, faults=st.faults,
               errors=st.errors, last_error=st.last_error)
    ''')
    assert r == {"data": True, "faults": 0, "errors": 1, "last_error": -errno.EOPNOTSUPP}


# ---- arguments are checked at the boundary ------------------------------------------------

def test_every_entry_point_checks_its_arguments(no_uffd_leak):
    with UserFaultFd() as u, Mapping.anonymous(PAGE_SIZE) as m:
        a = m.address
        bad_calls = {
            "features": lambda: UserFaultFd(features=1.5),
            "mode": lambda: u.register(m, mode=1 << 70),
            "address": lambda: u.register(2**64, PAGE_SIZE),
            "length": lambda: u.register(a, 2**64),
            "page_size": lambda: u.register(a, PAGE_SIZE, page_size=3 * PAGE_SIZE),
            "address ": lambda: u.register(1.5, PAGE_SIZE),
            "src": lambda: u.copy(a, 2**64, PAGE_SIZE),
            "src ": lambda: u.copy(a, "a string"),
            " src": lambda: u.copy(a, memoryview(bytes(2 * PAGE_SIZE))[::2]),
            "length ": lambda: u.copy(a, b"x" * PAGE_SIZE, 1.5),
            "address  ": lambda: u.zeropage(-1, PAGE_SIZE),
            "length  ": lambda: u.wake(a, 2**64),
            "src  ": lambda: u.move(a, 2**64, PAGE_SIZE) if u.features & Feature.MOVE else
            u.copy(a, -1, PAGE_SIZE),
            "timeout": lambda: u.wait(1e300),
            "timeout ": lambda: u.wait(-1),
            "timeout  ": lambda: u.wait(float("nan")),
            "timeout   ": lambda: u.wait("1"),
            "max_events": lambda: u.read_events(0),
            "max_events ": lambda: u.read_events(1.5),
            "page_size ": lambda: u.serve_zero(page_size=2**64),
            "cpu": lambda: u.serve_zero(cpu=2**40),
            "cpu ": lambda: u.serve_zero(cpu=1.5),
            "base": lambda: u.serve_from(b"x", base=2**64),
            "buffer": lambda: u.serve_from(memoryview(bytes(2 * PAGE_SIZE))[::2], base=a),
            "handler": lambda: u.serve(12345),
        }
        for name, call in bad_calls.items():
            with pytest.raises(InvalidArgument, match=name.strip()):
                call()
        assert not u._servers
        # At most 64 events are read per call whatever is asked: no 48 TB buffer.
        assert u.read_events(2**40) == []
        assert u.wait(0) is False and u.wait(0.01) is False
