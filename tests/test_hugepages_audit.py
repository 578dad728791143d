"""physmem hugepages audit against the kernel: a child leaves hugetlbfs files and a hugetlb
memfd behind when SIGKILLed; the audit must find exactly the orphan, and --clean must remove
it alone, giving its pages back (checked with the pool's own sysfs counters and os.stat)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import python_env, run_physmem

POOL = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
MB2 = 2 << 20


def count(name: str) -> int:
    return int((POOL / name).read_text())


@pytest.fixture
def mount(tmp_path: Path, is_root: None) -> Iterator[Path]:
    target = tmp_path / "huge"
    target.mkdir()
    subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", str(target)],
                   check=True)
    persistent = count("nr_hugepages") - count("surplus_hugepages")
    try:
        yield target
    finally:
        for f in target.iterdir():
            f.unlink()
        subprocess.run(["umount", str(target)], check=True)
        (POOL / "nr_hugepages").write_text(str(persistent))


CHILD = """
import mmap, os, sys
d = sys.argv[1]
def make(name, pages, touch):
    fd = os.open(os.path.join(d, name), os.O_CREAT | os.O_RDWR)
    os.ftruncate(fd, pages << 21)
    m = mmap.mmap(fd, pages << 21)
    for i in range(touch):
        m[i << 21] = 1
    return fd, m
keep = [make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))]
mfd = os.memfd_create("spdk_test", os.MFD_HUGETLB)
os.ftruncate(mfd, 2 << 21)
mm = mmap.mmap(mfd, 2 << 21)
mm[0] = 1
print(os.getpid(), flush=True)
sys.stdin.read()
"""


def start(directory: Path, name: str, pages: int, touch: int) -> subprocess.Popen:
    env, cwd = python_env()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), name, str(pages),
                              str(touch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=env, cwd=cwd)
    assert int(child.stdout.readline()) == child.pid
    return child


def kill(child: subprocess.Popen) -> None:
    child.kill()
    child.wait()


def test_audit_finds_the_orphan_and_clean_removes_only_it(mount: Path) -> None:
    from physmem.hugepages import audit

    (POOL / "nr_hugepages").write_text(str(count("nr_hugepages") + 12))
    crashed = start(mount, "rtemap_0", 4, 3)  # 3 pages faulted in a 4-page file
    alive = start(mount, "live_0", 2, 2)
    try:
        report = audit()
        by_pid = {m.pid for m in report.mappings}
        assert {crashed.pid, alive.pid} <= by_pid
        memfds = [f for f in report.fds if f.pid == crashed.pid and "memfd:spdk_test" in f.target]
        assert memfds and memfds[0].pages == 1
        # Rsvd, the kernel's own count: 1 unfaulted page of rtemap_0 and 1 of each child's
        # 2-page memfd; in use: 3 + 1 pages of one child, 2 + 1 of the other.
        pool = next(p for p in report.pools if p.size == MB2 and p.node is None)
        assert pool.reserved == count("resv_hugepages") == 3
        assert pool.reserved_attributed == 3
        assert pool.held == pool.in_use == count("nr_hugepages") - count("free_hugepages") == 7
        kill(crashed)
        free_before = count("free_hugepages")
        report = audit()
        orphans = {f.path: f for f in report.orphans}
        assert list(orphans) == [str(mount / "rtemap_0")]
        # Independent: the file's allocated blocks as stat reports them.
        assert orphans[str(mount / "rtemap_0")].bytes == os.stat(mount / "rtemap_0").st_blocks * 512 == 3 * MB2
        assert orphans[str(mount / "rtemap_0")].pages == 3
        pool = next(p for p in report.pools if p.size == MB2 and p.node is None)
        assert pool.orphaned == 3 and pool.in_use == count("nr_hugepages") - count("free_hugepages")
        live = next(f for f in report.files if f.path == str(mount / "live_0"))
        assert live.holders == (alive.pid,) and not live.orphan

        out = run_physmem("hugepages", "audit", "--clean", "--yes", "--json")
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["removed"] == [{"path": str(mount / "rtemap_0"), "bytes": 3 * MB2}]
        assert data["orphans"] == []
        assert sorted(p.name for p in mount.iterdir()) == ["live_0"]
        assert count("free_hugepages") == free_before + 3, "exactly the orphan's pages came back"
    finally:
        kill(alive)
        if crashed.poll() is None:
            kill(crashed)


def test_surplus_held_by_an_orphan_is_reported(mount: Path) -> None:
    from physmem.hugepages import audit

    persistent = count("nr_hugepages") - count("surplus_hugepages")
    (POOL / "nr_hugepages").write_text(str(persistent + 4))
    crashed = start(mount, "spdk_leftover", 2, 2)
    # Shrink the pool under the in-use pages: they become surplus (the kernel's own count).
    (POOL / "nr_hugepages").write_text(str(persistent))
    kill(crashed)
    deadline = time.monotonic() + 5
    while count("surplus_hugepages") != 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the memfd's surplus page goes back asynchronously
    assert count("surplus_hugepages") == 2
    pool = next(p for p in audit().pools if p.size == MB2 and p.node is None)
    assert pool.surplus == 2 and pool.surplus_unheld == 2 and pool.orphaned == 2
    text = run_physmem("hugepages", "audit")
    assert "spdk_leftover" in text.stdout and "orphan" in text.stdout
    out = run_physmem("hugepages", "audit", "--json")
    assert [o["path"] for o in json.loads(out.stdout)["orphans"]] == [str(mount / "spdk_leftover")]
    assert json.loads(out.stdout)["orphans"][0]["bytes"] == 2 * MB2


def test_clean_without_yes_refuses_off_a_terminal(mount: Path) -> None:
    (POOL / "nr_hugepages").write_text(str(count("nr_hugepages") + 3))  # file + memfd
    crashed = start(mount, "rtemap_9", 1, 1)
    kill(crashed)
    out = run_physmem("hugepages", "audit", "--clean", stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "--yes" in out.stderr   # usage error: --yes missing
    assert (mount / "rtemap_9").exists(), "nothing removed without --yes"
    assert "rtemap_9" in out.stdout  # it said what it would remove
    out = run_physmem("hugepages", "list", "--clean")
    assert out.returncode == 2 and "audit" in out.stderr
