"""Memory blocks taken offline and put back by tests: every write of a block's state runs in
a child process interrupted after a timeout (the kernel retries a migration that cannot
finish until a signal), and every block a test touched goes back online, in its zone, by the
``blocks`` fixture's finaliser. Shared by test_dma_offline and test_dma_watch."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

MEMORY = Path("/sys/devices/system/memory")
# Memory hotplug's block size (0: a kernel without it; the tests that need it skip).
BLOCK = int((MEMORY / "block_size_bytes").read_text(), 16) \
    if (MEMORY / "block_size_bytes").exists() else 0
PAGE = os.sysconf("SC_PAGE_SIZE")
# How long a refused offline is given before its writer is interrupted: the same blocks,
# unpinned, go offline in 30-70 ms here, so a pin that held for this long is what stopped it.
PINNED_WAIT = 1.0
# An offline that should succeed returns as soon as it has; this only bounds a broken one.
MOVE_WAIT = 20.0
KPF_LRU, KPF_BUDDY, KPF_HUGE = 1 << 5, 1 << 10, 1 << 17

# The writer: one write of the state file, interrupted by SIGTERM (the kernel's offline loop
# checks for a pending signal and returns EINTR). It says when it is about to write, so the
# timeout covers the write only.
WRITER = r"""
import os, signal, sys
class Interrupted(Exception):
    pass
def interrupt(*_):
    raise Interrupted
signal.signal(signal.SIGTERM, interrupt)
fd = os.open(sys.argv[1], os.O_WRONLY)
print("writing", flush=True)
try:
    os.write(fd, sys.argv[2].encode())
except Interrupted:
    sys.exit(3)
except OSError as exc:
    print(exc.errno, flush=True)
    sys.exit(4)
"""
ONLINE_AS = {"Movable": "online_movable"}   # any other zone: online_kernel


def state(n: int) -> str:
    return (MEMORY / f"memory{n}" / "state").read_text().strip()


def zone(n: int) -> str:
    """The zone an online block is in (valid_zones lists the choices of an offline one)."""
    return (MEMORY / f"memory{n}" / "valid_zones").read_text().strip()


def block_of(pfn: int) -> int:
    return pfn * PAGE // BLOCK


def write_state(n: int, what: str, timeout: float) -> str:
    """Write ``what`` to block ``n``'s state in a child, interrupted after ``timeout``:
    "done", "interrupted" or the errno's name."""
    path = MEMORY / f"memory{n}" / "state"
    child = subprocess.Popen([sys.executable, "-S", "-c", WRITER, str(path), what],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n", child.stderr.read()
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)
            child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out, err = child.communicate()
    if child.returncode == 0:
        return "done"
    if child.returncode == 3:
        return "interrupted"
    if child.returncode == 4:
        return errno.errorcode[int(out)]
    raise AssertionError(f"writing {what} to {path}: exit status {child.returncode}: {err}")


class Blocks:
    """Memory blocks a test takes offline, each put back online in the zone it was in."""

    def __init__(self) -> None:
        self.original: dict[int, str] = {}   # block -> its zone before the test
        self.outcomes: list[str] = []        # "block N: what happened", for the report

    def _touch(self, n: int) -> None:
        if n not in self.original:
            assert state(n) == "online", f"memory{n} is {state(n)} before the test"
            self.original[n] = zone(n)

    def offline(self, n: int, timeout: float) -> str:
        self._touch(n)
        return write_state(n, "offline", timeout)

    def online(self, n: int, as_zone: str | None = None) -> None:
        """Put block ``n`` online in ``as_zone`` (default: its zone before the test), taking
        it offline first if it is online in another zone."""
        self._touch(n)
        want = as_zone or self.original[n]
        if state(n) == "online" and zone(n) != want:
            # A Movable block holds nothing that cannot move, but a page may be held for a
            # moment (direct I/O): try again then.
            for _ in range(3):
                got = write_state(n, "offline", MOVE_WAIT)
                if got == "done":
                    break
            assert got == "done", f"cannot take memory{n} offline to move it to {want}: {got}"
        if state(n) != "online":
            got = write_state(n, ONLINE_AS.get(want, "online_kernel"), MOVE_WAIT)
            assert got == "done", f"cannot put memory{n} online in {want}: {got}"
        assert state(n) == "online" and zone(n) == want, (n, state(n), zone(n))

    def restore(self) -> None:
        failures = []
        for n in self.original:
            try:
                self.online(n)
            except AssertionError as exc:
                failures.append(str(exc))
        assert not failures, failures


@pytest.fixture
def blocks() -> Iterator[Blocks]:
    b = Blocks()
    try:
        yield b
    finally:
        b.restore()
        print(f"\n{len(b.outcomes)} block(s): " + "; ".join(b.outcomes))


def offlinable(n: int) -> bool:
    """Whether block ``n`` is online and holds nothing the kernel could not move: each frame
    free, on an LRU list or hugetlb, by a raw read of /proc/kpageflags."""
    if not (MEMORY / f"memory{n}").is_dir() or state(n) != "online":
        return False
    count = BLOCK // PAGE
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        flags = np.frombuffer(os.pread(fd, count * 8, n * count * 8), dtype=np.uint64)
    finally:
        os.close(fd)
    return len(flags) == count and bool(np.all(flags & np.uint64(KPF_LRU | KPF_BUDDY | KPF_HUGE)))


def make_movable(blocks: Blocks) -> int:
    """An offlinable Normal block put online in ZONE_MOVABLE, where the kernel places nothing
    it cannot move and where hugetlb pages (movable allocations) come from first; ``blocks``
    puts it back in its zone."""
    tried = []
    for n in sorted((int(p.name[6:]) for p in MEMORY.glob("memory[0-9]*")), reverse=True):
        if len(tried) == 4:
            break
        if not offlinable(n) or zone(n) != "Normal":
            continue
        got = blocks.offline(n, MOVE_WAIT)
        tried.append(f"memory{n}: {got}")
        if got == "done":
            blocks.online(n, "Movable")
            return n
    pytest.skip(f"no memory block could be offlined to make a Movable one: {tried}")
