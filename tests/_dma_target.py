"""A process for the DMA audit and watch tests to look at from outside.

``python _dma_target.py [--hugetlb] [--buffers] [--file PATH]`` maps one of each kind of
memory (with mmap and libc, not physmem; ``--hugetlb`` adds a private 2 MiB hugetlb page,
``--buffers`` a pinned and an unpinned physmem DmaBuffer, ``--file`` a shared file mapping),
prints ``{"pid": ..., "maps": {name: [address, length]}, ...}`` as one JSON line, then obeys
one command per stdin line, answering each with one line:

* ``fork``: a child that shares the private pages until ``exit`` (``forked PID``);
* ``write NAME OFFSET`` / ``read NAME OFFSET``: touch one byte (``ok``);
* ``dontneed NAME OFFSET LENGTH``: MADV_DONTNEED (``ok``);
* ``unmap NAME``: munmap (``ok``);
* ``exit``: end, the fork child too.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import queue
import subprocess
import sys
import threading
from typing import Iterator

import pytest

from conftest import address_of as address

HUGE = 2 << 20
PAGE = mmap.PAGESIZE
MAP_HUGETLB = 0x40000
MADV_MERGEABLE, MADV_WIPEONFORK = 12, 18

libc = ctypes.CDLL(None, use_errno=True)
libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def check(ret: int, what: str) -> None:
    if ret:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def touch(m: mmap.mmap, step: int = PAGE) -> None:
    for off in range(0, len(m), step):
        m[off] = 1


def main() -> None:
    maps: dict[str, mmap.mmap] = {}
    private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    maps["anon"] = mmap.mmap(-1, 16 * PAGE, flags=private)
    touch(maps["anon"])
    maps["locked"] = mmap.mmap(-1, 8 * PAGE, flags=private)
    check(libc.mlock(address(maps["locked"]), 8 * PAGE), "mlock")
    maps["locked_dontfork"] = mmap.mmap(-1, 8 * PAGE, flags=private)
    check(libc.mlock(address(maps["locked_dontfork"]), 8 * PAGE), "mlock")
    maps["locked_dontfork"].madvise(mmap.MADV_DONTFORK)
    maps["wipeonfork"] = mmap.mmap(-1, 4 * PAGE, flags=private)
    check(libc.madvise(address(maps["wipeonfork"]), 4 * PAGE, MADV_WIPEONFORK), "madvise")
    touch(maps["wipeonfork"])
    maps["mergeable"] = mmap.mmap(-1, 4 * PAGE, flags=private)
    check(libc.madvise(address(maps["mergeable"]), 4 * PAGE, MADV_MERGEABLE), "madvise")
    touch(maps["mergeable"])
    # Transparent huge pages: a 2 MiB-aligned stretch asked for with MADV_HUGEPAGE.
    thp_area = mmap.mmap(-1, 3 * HUGE, flags=private)
    base = address(thp_area)
    aligned = -base % HUGE
    check(libc.madvise(base + aligned, HUGE, mmap.MADV_HUGEPAGE), "madvise")
    for off in range(aligned, aligned + HUGE, PAGE):
        thp_area[off] = 1
    if "--hugetlb" in sys.argv:
        maps["hugetlb"] = mmap.mmap(-1, HUGE, flags=private | MAP_HUGETLB)
        maps["hugetlb"][0] = 1
    fd = os.memfd_create("dma-target-shmem")
    os.ftruncate(fd, 4 * PAGE)
    maps["memfd"] = mmap.mmap(fd, 4 * PAGE)
    touch(maps["memfd"])
    maps["shared_anon"] = mmap.mmap(-1, 4 * PAGE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    touch(maps["shared_anon"])
    if "--file" in sys.argv:
        f = open(sys.argv[sys.argv.index("--file") + 1], "r+b")
        maps["file"] = mmap.mmap(f.fileno(), 4 * PAGE)
        touch(maps["file"])
    ranges = {name: [address(m), len(m)] for name, m in maps.items()}
    ranges["thp"] = [base + aligned, HUGE]
    buffers = []
    if "--buffers" in sys.argv:
        from physmem.dma import allocate_contiguous

        pinned = allocate_contiguous("2M", reserve=True, pin=True)
        unpinned = allocate_contiguous("2M", reserve=True, pin=False)
        buffers = [pinned, unpinned]
        ranges["pinned_buffer"] = [pinned.address, pinned.size]
        ranges["unpinned_buffer"] = [unpinned.address, unpinned.size]
    print(json.dumps({"pid": os.getpid(), "maps": ranges}), flush=True)
    child = None
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        if cmd == "exit":
            break
        if cmd == "fork":
            read_end, write_end = os.pipe()
            child = os.fork()
            if child == 0:
                os.close(write_end)
                os.read(read_end, 1)   # until the parent's end closes
                os._exit(0)
            os.close(read_end)
            print(f"forked {child}", flush=True)
            continue
        m = maps[words[1]]
        if cmd == "write":
            m[int(words[2])] = 7
        elif cmd == "read":
            m[int(words[2])]
        elif cmd == "dontneed":
            m.madvise(mmap.MADV_DONTNEED, int(words[2]), int(words[3]))
        elif cmd == "unmap":
            maps.pop(words[1]).close()
        print("ok", flush=True)
    del buffers
    if child:
        os.kill(child, 9)
        os.waitpid(child, 0)


PFN_MASK = (1 << 55) - 1


def raw_frames(pid: int, pages) -> list[int | None]:
    """Physical address of each page (None: not present), from a plain pread of
    /proc/PID/pagemap: the independent reading every DMA test checks physmem against."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        out = []
        for v in pages:
            entry = int.from_bytes(os.pread(fd, 8, v // PAGE * 8), "little")
            out.append((entry & PFN_MASK) * PAGE if entry >> 63 else None)
        return out
    finally:
        os.close(fd)


@pytest.fixture
def dma_target() -> Iterator[type]:
    """``dma_target(*args)`` starts a :class:`Target`; every one is ended after the test."""
    made: list[Target] = []

    def start(*args: str) -> Target:
        made.append(Target(*args))
        return made[-1]

    yield start
    for t in made:
        t.stop()


class Target:
    """The test side: starts this script (``args`` as above) and talks to it; every wait has
    a deadline. ``pid``, ``maps`` (name -> (address, length)); ``ask(command)`` returns the
    reply line; ``stop()`` ends it (also at garbage collection of the fixture)."""

    def __init__(self, *args: str, timeout: float = 60.0) -> None:
        from conftest import python_env

        env, cwd = python_env()
        self.timeout = timeout
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        first = json.loads(self._line())
        self.pid: int = first["pid"]
        self.maps: dict[str, tuple[int, int]] = {k: tuple(v) for k, v in first["maps"].items()}

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _line(self) -> str:
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"the DMA target said nothing for {self.timeout} s") from None
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"the DMA target ended: {err[-3000:]}")
        return line.strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._line()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("exit\n")
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


if __name__ == "__main__":
    main()
