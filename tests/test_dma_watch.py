"""The move watchdog (physmem.dma.watch, ``physmem dma watch``) against pages the kernel
really moves: copy on write after fork (4 KiB and hugetlb), MADV_DONTNEED and a refault,
munmap, a process exiting, and memory offline of a block under an unpinned DmaBuffer. Every
move is checked against a plain pread of /proc/PID/pagemap made by the test itself."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from _dma_target import HUGE, Target, dma_target, raw_frames  # noqa: F401 (a fixture)
from _memory_blocks import BLOCK, MOVE_WAIT, blocks, make_movable  # noqa: F401 (a fixture)
from conftest import PAGE, python_env

from physmem.cli import Exit
from physmem.dma import DmaPool, Move, allocate_contiguous, allocate_scatter, watch
from physmem.errors import InvalidArgument

def frames_of(pid: int, pages: list[int]) -> dict[int, int | None]:
    """Each page's frame, read with a plain pagemap pread: address -> physical address."""
    return dict(zip(pages, raw_frames(pid, pages)))


def expand(moves: list[Move], unit_of) -> dict[int, tuple[int | None, int | None]]:
    """Each Move as the pages it covers: address -> (old, new)."""
    out = {}
    for m in moves:
        unit = unit_of(m.address)
        assert m.size % unit == 0 and m.size > 0, m
        for off in range(0, m.size, unit):
            assert m.address + off not in out, f"page {m.address + off:#x} reported twice"
            out[m.address + off] = (None if m.old is None else m.old + off,
                                    None if m.new is None else m.new + off)
    return out


def pages_of(t: Target, *names: str) -> list[int]:
    out = []
    for name in names:
        address, length = t.maps[name]
        unit = HUGE if name == "hugetlb" else PAGE
        out += range(address, address + length, unit)
    return out


def assert_moves_match_pagemap(moves, before, after, unit_of):
    """The moves are exactly the pages whose raw frames differ, old and new as read."""
    changed = {v: (before[v], after[v]) for v in before if before[v] != after[v]}
    assert expand(moves, unit_of) == changed


@pytest.mark.root
@pytest.mark.hugepages
def test_watch_reports_what_the_kernel_did_to_another_process(dma_target, hugepage_pool):
    hugepage_pool(2)
    t = dma_target("--hugetlb")
    pid = t.pid
    unit_of = lambda a: HUGE if t.maps["hugetlb"][0] <= a < sum(t.maps["hugetlb"]) else PAGE  # noqa: E731
    pages = pages_of(t, "anon", "hugetlb")
    with watch(t.maps["anon"], pid=pid) as w:
        w.add(t.maps["hugetlb"], pid=pid)
        assert w.pages == 16 + 1 and w.bytes == 16 * PAGE + HUGE and w.pids == {pid}
        assert w.check() == []

        # Copy on write: a fork child shares every private page; the parent's writes give
        # it new frames (the child still holds the old ones, so they must differ).
        before = frames_of(pid, pages)
        assert t.ask("fork").startswith("forked")
        for name, off in (("anon", 0), ("anon", 3 * PAGE), ("anon", 4 * PAGE), ("hugetlb", 0)):
            assert t.ask(f"write {name} {off}") == "ok"
        moves = w.check()
        after = frames_of(pid, pages)
        assert_moves_match_pagemap(moves, before, after, unit_of)
        anon = t.maps["anon"][0]
        assert {anon, anon + 3 * PAGE, anon + 4 * PAGE, t.maps["hugetlb"][0]} <= set(
            expand(moves, unit_of))
        assert all(m.kind == "moved" for m in moves) and all(m.pid == pid for m in moves)
        # Pages 3 and 4 are adjacent virtually; they are one Move only if both frames are.
        assert w.check() == []

        # MADV_DONTNEED: the pages vanish; a read brings back the shared zero page.
        before = after
        assert t.ask(f"dontneed anon {8 * PAGE} {4 * PAGE}") == "ok"
        moves = w.check()
        after = frames_of(pid, pages)
        assert_moves_match_pagemap(moves, before, after, unit_of)
        assert {m.kind for m in moves} == {"vanished"}
        assert sum(m.size for m in moves) == 4 * PAGE
        before = after
        assert t.ask(f"read anon {8 * PAGE}") == "ok"
        moves = w.check()
        after = frames_of(pid, pages)
        assert_moves_match_pagemap(moves, before, after, unit_of)
        assert [m.kind for m in moves] == ["appeared"] and moves[0].size == PAGE

        # munmap: the huge page vanishes, as one entry.
        before = after
        assert t.ask("unmap hugetlb") == "ok"
        moves = w.check()
        after = frames_of(pid, pages)
        assert_moves_match_pagemap(moves, before, after, unit_of)
        assert [(m.kind, m.size) for m in moves] == [("vanished", HUGE)]

        # The process exits: what was left vanishes, once, and the watch lets it go.
        present = {v for v, f in after.items() if f is not None}
        t.stop()
        moves = w.check()
        assert set(expand(moves, unit_of)) == present
        assert all(m.new is None for m in moves)
        assert w.exited == {pid} and w.pids == frozenset() and w.check() == []
        assert not os.path.exists(f"/proc/{pid}")


@pytest.mark.root
def test_follow_yields_a_move_as_it_happens(dma_target):
    t = dma_target()
    with watch(t.maps["anon"], pid=t.pid) as w:
        assert t.ask("fork").startswith("forked")
        # The write comes from another thread while follow() is checking.
        writer = threading.Thread(target=t.ask, args=("write anon 0",))
        writer.start()
        t0 = time.monotonic()
        got = next(w.follow(0.01, timeout=30), None)
        writer.join(30)
        assert got is not None and time.monotonic() - t0 < 30
        assert got.address == t.maps["anon"][0] and got.kind == "moved"
        assert frames_of(t.pid, [got.address])[got.address] == got.new
        # Nothing more happens: follow ends at its timeout with nothing.
        assert list(w.follow(0.01, timeout=0.1)) == []


@pytest.mark.root
def test_a_process_that_exits_with_nothing_present_leaves_quietly(dma_target):
    t = dma_target()
    address, length = t.maps["anon"]
    with watch((address, length), pid=t.pid) as w:
        assert t.ask(f"dontneed anon 0 {length}") == "ok"
        moves = w.check()
        assert {m.kind for m in moves} == {"vanished"} and sum(m.size for m in moves) == length
        t.stop()
        assert w.check() == [] and w.exited == {t.pid}


@pytest.mark.root
@pytest.mark.hugepages
def test_a_buffer_is_watched_from_the_layout_a_device_was_given(pools_restored):
    buf = allocate_contiguous("4M", reserve=True, pin=False)
    try:
        with watch(buf) as w:
            assert w.pages == 2 and w.bytes == 4 << 20
            assert w.check() == []   # where verify() found it
            address, size = buf.address, buf.size
            heads = list(range(address, address + size, HUGE))
            before = frames_of(os.getpid(), heads)
            assert before == {v: buf.virt_to_phys(v - address) for v in heads}
            with DmaPool.from_buffer(buf) as pool, watch(pool) as by_pool:
                assert by_pool.pages == 2 and by_pool.check() == []
            buf.close()
            moves = w.check()   # closing unmaps the pages: both vanish
            assert expand(moves, lambda a: HUGE) == {v: (before[v], None) for v in heads}
    finally:
        buf.close()


@pytest.mark.root
@pytest.mark.hugepages
def test_memory_offline_moves_an_unpinned_buffer_and_the_watch_sees_it(pools_restored, blocks):
    """An unpinned buffer in a block the kernel takes offline moves, and the watch reports
    exactly the pages our own pagemap reads saw move; a pinned buffer beside it does not.

    The block is made for it: an offlinable Normal block put online in ZONE_MOVABLE, which
    holds nothing the kernel cannot move and where new pool pages (movable allocations) come
    from first. Blocks left where they were hold some page the kernel cannot move, on a
    machine that has run for a while, and refused every offline."""
    if not BLOCK:
        pytest.skip("no /sys/devices/system/memory: this kernel has no memory hotplug")
    t = make_movable(blocks)
    pinned = allocate_contiguous("2M", reserve=True, pin=True)   # pinning moves it out of t
    try:
        buf = allocate_scatter("64M", reserve=True, pin=False)
        try:
            with watch(pinned) as w:
                w.add(buf)
                heads = list(range(buf.address, buf.address + buf.size, HUGE))
                before = frames_of(os.getpid(), heads)
                inside = {v for v, f in before.items() if f // BLOCK == t}
                assert inside, f"no page of the unpinned buffer in the Movable memory{t}"
                assert pinned.phys // BLOCK != t
                assert w.check() == []
                got = blocks.offline(t, MOVE_WAIT)
                assert got == "done", f"the Movable memory{t} did not go offline: {got}"
                moves = w.check()
                after = frames_of(os.getpid(), heads)
                assert all(after[v] // BLOCK != t for v in inside)
                assert_moves_match_pagemap([m for m in moves if m.address != pinned.address],
                                           before, after, lambda a: HUGE)
                assert set(expand(moves, lambda a: HUGE)) >= inside
                assert not [m for m in moves if m.address == pinned.address]
                assert pinned.phys == frames_of(os.getpid(), [pinned.address])[pinned.address]
                blocks.outcomes.append(f"memory{t} (Movable): {len(inside)} pages of the "
                                       f"unpinned buffer moved out")
        finally:
            buf.close()
    finally:
        pinned.close()


def test_targets_are_checked_at_the_boundary():
    with pytest.raises(InvalidArgument, match="cannot watch"):
        watch("0x1000")
    with pytest.raises(InvalidArgument, match="not aligned"):
        watch((0x1001, PAGE))
    with pytest.raises(InvalidArgument, match="no mapping at 0x1000"):
        watch((0x1000, PAGE))
    with pytest.raises(InvalidArgument, match="interval"):
        next(watch().follow(0))
    w = watch()
    w.close()
    with pytest.raises(InvalidArgument, match="closed"):
        w.check()


def test_unprivileged_watch_says_frames_are_hidden(run_unprivileged):
    r = run_unprivileged("""
        import mmap, ctypes
        from physmem.dma import watch
        from physmem.errors import PfnUnavailable
        m = mmap.mmap(-1, 4096); m[0] = 1
        a = ctypes.addressof(ctypes.c_char.from_buffer(m))
        try:
            watch((a, 4096))
        except PfnUnavailable as e:
            print("hidden", isinstance(e, PermissionError), "CAP_SYS_ADMIN" in str(e))
    """)
    assert r.stdout.split() == ["hidden", "True", "True"], r.stderr


# -- the command ------------------------------------------------------------------------------

def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env, cwd = python_env()
    return subprocess.run([sys.executable, "-m", "physmem.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)


class Watcher:
    """``physmem dma watch`` running, its lines read with deadlines."""

    def __init__(self, *args: str) -> None:
        env, cwd = python_env()
        self.proc = subprocess.Popen([sys.executable, "-m", "physmem.cli", "dma", "watch", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=cwd)

    def line(self, stream, timeout: float = 30) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        assert box and box[0], f"no line within {timeout} s"
        return box[0]

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@pytest.mark.root
def test_cli_prints_json_lines_as_pages_move_and_exits_9(dma_target):
    t = dma_target()
    address, length = t.maps["anon"]
    w = Watcher("--pid", str(t.pid), "--range", f"{address:#x}:{length}", "--interval",
                "0.01", "--json")
    try:
        # The start-up line comes once the baseline is read: only then may pages move.
        assert "16 pages" in w.line(w.proc.stderr)
        before = frames_of(t.pid, [address])
        assert t.ask("fork").startswith("forked")
        assert t.ask("write anon 0") == "ok"
        event = json.loads(w.line(w.proc.stdout))
        assert event["kind"] == "moved" and event["pid"] == t.pid
        assert (event["address"], event["size"]) == (address, PAGE)
        assert event["old"] == before[address] and event["new"] == frames_of(
            t.pid, [address])[address]
        w.proc.send_signal(signal.SIGINT)
        code, out, err = w.finish()
        assert code == Exit.MOVED == 9, err
        assert "Traceback" not in err
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


@pytest.mark.root
def test_cli_exit_statuses_nothing_moved_and_process_gone(dma_target):
    t = dma_target()
    address, length = t.maps["locked"]
    r = run_cli("dma", "watch", "--pid", str(t.pid), "--range", f"{address}:{length}",
                "--count", "3", "--interval", "0.01")
    assert r.returncode == Exit.OK and r.stdout == "", r.stderr
    assert "8 pages (32.0 KiB)" in r.stderr and "3 checks" in r.stderr
    # Without --range: what the process holds resident (mlocked, hugetlb).
    w = Watcher("--pid", str(t.pid), "--interval", "0.01")
    try:
        head = w.line(w.proc.stderr)
        assert f"16 pages (64.0 KiB) of process {t.pid}" in head   # both mlocked mappings
        t.stop()
        code, out, err = w.finish()
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
    assert code == Exit.NOT_FOUND == 5, err
    assert f"process {t.pid} exited" in err
    lines = out.splitlines()
    assert lines and all(" vanished: " in ln and ln.endswith("-> none") for ln in lines)


def test_cli_usage_errors():
    for args, needle in ((["--pid", "1", "--range", "0x1000"], "ADDR:LEN"),
                         (["--pid", "1", "--range", "zz:4096"], "not an integer"),
                         (["--pid", "1", "--range", "0x1000:4q"], "not a size"),
                         (["--pid", "1", "--all"], "--all applies to `dma audit` only"),
                         (["--range", "0x1000:4096"], "--pid"),
                         (["--pid", "1", "--interval", "0"], "seconds")):
        r = run_cli("dma", "watch", *args)
        assert r.returncode == Exit.USAGE, (args, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
    r = run_cli("dma", "audit", "--pid", "1", "--count", "2")
    assert r.returncode == Exit.USAGE and "--count applies to `dma watch` only" in r.stderr


def test_cli_a_process_that_does_not_exist_is_5():
    free = next(p for p in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{p}"))
    r = run_cli("dma", "watch", "--pid", str(free), "--range", "0x1000:4096")
    assert r.returncode == Exit.NOT_FOUND, r.stderr
    assert r.stderr.startswith("physmem: error:") and "Traceback" not in r.stderr
