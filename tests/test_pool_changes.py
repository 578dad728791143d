"""Pool changes that compose: concurrent allocators in several processes and threads, admins
reserving and releasing at once, whole containers killed mid-allocation, and the pool lock's
own files. Every pool count is read with plain open() (tests/conftest.py pool_counts), never
through physmem.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import HUGEPAGES, pool_counts, python_env, wait_until

pytestmark = [pytest.mark.root, pytest.mark.hugepages]

POOL_2M = HUGEPAGES / "hugepages-2048kB"
SECONDS = float(os.environ.get("PHYSMEM_CONCURRENCY_SECONDS", "10"))


def pools() -> dict[str, tuple[int, int, int, int]]:
    """(nr, free, surplus, overcommit) of every pool."""
    out = {}
    for pool in sorted(HUGEPAGES.iterdir()):
        c = pool_counts(pool)
        out[pool.name] = (c["nr_hugepages"], c["free_hugepages"], c["surplus_hugepages"],
                          c["nr_overcommit_hugepages"])
    return out


def memory_of(state: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The pages alone (nr, free, surplus), without the ceilings."""
    return {k: v[:3] for k, v in state.items()}


def stuck_surplus_raw(pool: Path = POOL_2M) -> int:
    """Free pages counted as surplus beyond those in use and reserved, from the raw counts."""
    c = pool_counts(pool)
    return max(0, c["surplus_hugepages"] - (c["nr_hugepages"] - c["free_hugepages"])
               - c.get("resv_hugepages", 0))


ALLOCATOR = r"""
import sys, threading, time
import numpy as np
from physmem.dma import allocate_contiguous
seconds, size = float(sys.argv[1]), sys.argv[2]
ok, failed, errors = [0], [0], []
def loop():
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with allocate_contiguous(size, reserve=True) as buf:
                np.frombuffer(buf.view(), dtype=np.uint8)[::4096] = 1
            ok[0] += 1
        except Exception as exc:
            failed[0] += 1
            errors.append(repr(exc)[:1500])
threads = [threading.Thread(target=loop) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
print(ok[0], failed[0], errors[:3], flush=True)
"""


def test_two_processes_and_two_threads_each_allocate_at_once(empty_2m_pool):
    """Two processes with two threads each allocate 64 MiB with reserve=True for SECONDS
    (PHYSMEM_CONCURRENCY_SECONDS; 30 for the full run): every allocation succeeds, and the
    pools end exactly as they began. With read-then-write pool updates all of them failed.

    The pool starts with no free page: free pages a machine keeps are taken first, and where
    thousands of them are scattered four allocators at once each hold part of them while
    looking for a run (a run is then found in 4 of 5 attempts; one allocator alone always
    finds it). That is contention for adjacent pages, not the accounting tested here."""
    before = pools()
    env, cwd = python_env()
    procs = [subprocess.Popen([sys.executable, "-c", ALLOCATOR, str(SECONDS), "64M"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=cwd) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=SECONDS + 120)
        assert p.returncode == 0, err
        ok, failed, *_ = out.split(" ", 2)
        results.append((int(ok), int(failed), out))
    assert all(failed == 0 for _, failed, _ in results), results
    assert all(ok > 0 for ok, _, _ in results), results
    assert wait_until(lambda: pools() == before), (pools(), before)
    assert stuck_surplus_raw() == 0


PROBE_LOCK = r"""
from physmem.errors import PhysmemError
from physmem.hugepages._ledger import pool_lock
try:
    with pool_lock(timeout=0.3):
        print("free", flush=True)
except PhysmemError:
    print("held", flush=True)
"""


def test_a_growing_search_holds_the_pool_lock_between_its_growths(pools_restored, monkeypatch):
    """From an allocation's first growth to its last page given back, no other process may
    change the pools: the kernel makes a gigantic page (to demote) only in a 1 GiB range with
    no hugetlb page in it, and another allocator's hundreds of scattered pages, held between
    two of its growths, left no such range (1 allocation in a few hundred failed, with two
    processes of two threads each, on a machine with a hundred free 2 MiB blocks whose
    buddies were busy). Another process asks for the lock while this one looks for a run
    among pages it just grew."""
    from physmem.dma import allocate as _alloc
    from physmem.dma import allocate_contiguous

    seen: list[str] = []
    best_fit = _alloc._best_fit
    env, cwd = python_env()

    def probing(*args, **kwargs):
        if not seen:
            seen.append(subprocess.run([sys.executable, "-c", PROBE_LOCK], env=env, cwd=cwd,
                                       capture_output=True, text=True, timeout=60).stdout.strip())
        return best_fit(*args, **kwargs)

    monkeypatch.setattr(_alloc, "_best_fit", probing)
    with allocate_contiguous(4 << 20, reserve=True):
        pass
    assert seen == ["held"]
    seen.clear()
    monkeypatch.setattr(_alloc, "_best_fit", best_fit)
    # Once the buffer is made, the lock is free again.
    assert subprocess.run([sys.executable, "-c", PROBE_LOCK], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60).stdout.strip() == "free"


RESERVER = r"""
import sys, time
from physmem.hugepages import reserve
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    with reserve(int(sys.argv[2]) + 8, "2M"):
        n += 1
print(n, flush=True)
"""


def test_reserve_and_release_in_two_processes_compose(pools_restored):
    """Administrators' reserve()/release() in two processes at once: each gives back exactly
    its own growth, so the pool ends as it began (read-then-write left it 8 pages up)."""
    before = pools()
    free = before[POOL_2M.name][1]
    env, cwd = python_env()
    procs = [subprocess.Popen([sys.executable, "-c", RESERVER, str(min(SECONDS, 5)), str(free)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=cwd) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert int(out) > 0
    assert wait_until(lambda: pools() == before), (pools(), before)


LOOP = ("import numpy as np\n"
        "from physmem.dma import allocate_contiguous\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    with allocate_contiguous('64M', reserve=True) as buf:\n"
        "        np.frombuffer(buf.view(), dtype=np.uint8)[::4096] = 1\n")


def _namespace_init(unshare_pid: int) -> int:
    """The host pid of the first process of the pid namespace `unshare --fork` made."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
    assert wait_until(lambda: children.read_text().split() != [], 10)
    return int(children.read_text().split()[0])


def _demoted_left(now: dict, before: dict) -> bool:
    """Whether the 2 MiB pool holds whole demoted gigantic pages more than ``before``, free
    and persistent (a kill inside a demotion's window), and nothing else changed."""
    (nr, free, surplus, *_), (nr0, free0, surplus0, *_) = now[POOL_2M.name], before[POOL_2M.name]
    extra, per_gigantic = nr - nr0, (1 << 30) // (2 << 20)
    others = {k: v for k, v in now.items() if k != POOL_2M.name}
    return (extra > 0 and extra % per_gigantic == 0 and free - free0 == extra
            and surplus == surplus0 and others == {k: v for k, v in before.items()
                                                   if k != POOL_2M.name})


def _kill_and_settle(kill, before: dict, tally: dict) -> None:
    kill()
    # The kernel frees the memory of the dead by itself: the pages come back unaided...
    if not wait_until(lambda: memory_of(pools()) == memory_of(before)):
        # ... except where the kill fell inside a demotion (a gigantic page split into pool
        # pages for a moment, to be given back): those stay until the next process takes
        # the pool lock and settles the dead one's ledger, as a raised ceiling does.
        left = pools()
        tally["demotion left" if _demoted_left(left, before) else "left for the lock"] += 1
        from physmem.hugepages import _ledger

        with _ledger.pool_lock():
            pass
        assert wait_until(lambda: memory_of(pools()) == memory_of(before)), (left, pools(), before)
    if pools() != before:
        tally["ceiling left raised"] += 1
        # The ledger's lock is free: the next process to take the pool lock settles it.
        from physmem.hugepages import _ledger

        with _ledger.pool_lock():
            pass
    assert pools() == before
    assert stuck_surplus_raw() == 0


@pytest.mark.parametrize("how", ["pid-namespace", "cgroup"])
def test_killing_a_whole_container_mid_allocation_leaves_the_pools(pools_restored, how):
    """SIGKILL of a whole pid namespace (its init dies, and with it the guardian) or
    cgroup.kill of a cgroup, ten times at random moments of allocate/close loops: the
    memory is back unaided every time (surplus pages die with their file); what a kill may
    leave is a raised overcommit ceiling, settled by the next process to take the pool lock."""
    cgroup_root = Path("/sys/fs/cgroup/unified")
    if how == "cgroup" and not (cgroup_root / "cgroup.procs").exists():
        pytest.skip("no cgroup2 hierarchy at /sys/fs/cgroup/unified")
    if how == "cgroup":
        probe = cgroup_root / f"physmem-probe-{os.getpid()}"
        probe.mkdir()
        try:
            if not (probe / "cgroup.kill").exists():
                pytest.skip("this kernel has no cgroup.kill (Linux 5.14+)")
        finally:
            probe.rmdir()
    before = pools()
    env, cwd = python_env()
    rng = random.Random(int(os.environ.get("PHYSMEM_KILL_SEED", "21")))
    tally = {"ceiling left raised": 0, "demotion left": 0, "left for the lock": 0}
    for i in range(10):
        if how == "pid-namespace":
            proc = subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-c", LOOP],
                                    stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
            init = _namespace_init(proc.pid)
            assert proc.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.05, 0.5))

            def kill() -> None:
                os.kill(init, signal.SIGKILL)  # the namespace's pid 1: all of it goes
                proc.wait(timeout=30)
        else:
            group = cgroup_root / f"physmem-test-{os.getpid()}-{i}"
            group.mkdir()
            proc = subprocess.Popen(
                [sys.executable, "-c",
                 f"import os, sys; open('{group}/cgroup.procs', 'w').write(str(os.getpid()))\n"
                 f"os.execv(sys.executable, [sys.executable, '-c', {LOOP!r}])"],
                stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
            assert proc.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.05, 0.5))

            def kill() -> None:
                (group / "cgroup.kill").write_text("1")
                proc.wait(timeout=30)
                assert wait_until(lambda: not (group / "cgroup.procs").read_text().strip())
                group.rmdir()
        try:
            _kill_and_settle(kill, before, tally)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"{how}: {tally}")


def test_stuck_surplus_pages_are_found_and_freed(tmp_path, pools_restored):
    """Free pages the kernel counts as surplus but will never free (nr == surplus == free,
    no holder): stuck_surplus() and `hugepages audit` count them and free_stuck_surplus()
    (`audit --clean`) frees them. Found here
    in a copy of a pool's sysfs files holding the numbers a red-team run left behind; on the
    live pool it is a no-op that changes nothing."""
    from physmem.hugepages import free_stuck_surplus, stuck_surplus

    sys_root = tmp_path / "sys"
    pool = sys_root / "kernel/mm/hugepages/hugepages-2048kB"
    pool.mkdir(parents=True)
    for name, value in {"nr_hugepages": 412, "free_hugepages": 412, "surplus_hugepages": 412,
                        "resv_hugepages": 0, "nr_overcommit_hugepages": 0}.items():
        (pool / name).write_text(f"{value}\n")
    (sys_root / "devices/system/node").mkdir(parents=True)
    assert stuck_surplus("2M", sys_root=str(sys_root)) == 412
    from physmem.hugepages import audit

    [found] = [p for p in audit(sys_root=str(sys_root)).pools if p.size == 2 << 20]
    assert found.stuck == 412 and found.total == found.free == found.surplus == 412
    (pool / "resv_hugepages").write_text("12\n")   # reserved ones are not stuck
    assert stuck_surplus("2M", sys_root=str(sys_root)) == 400
    before = pools()
    assert stuck_surplus("2M") == stuck_surplus_raw() == 0
    assert free_stuck_surplus("2M") == 0
    assert pools() == before


def test_the_pool_lock_refuses_a_directory_a_neighbour_could_plant_in(tmp_path):
    """As root, the lock and ledgers live in a directory of root's alone: a symlink planted
    where it should be, or a directory others may write, is refused with the path named."""
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "run"
    link.symlink_to(target)
    writable = tmp_path / "open"
    writable.mkdir()
    writable.chmod(0o777)
    code = ("from physmem.errors import PermissionDenied\n"
            "from physmem.hugepages import _ledger\n"
            "try:\n"
            "    with _ledger.pool_lock():\n"
            "        print('taken')\n"
            "except PermissionDenied as exc:\n"
            "    print('refused:', exc)\n")
    env, cwd = python_env()
    for path in (link, writable):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**env, "PHYSMEM_RUN_DIR": str(path)}, cwd=cwd, timeout=60)
        assert proc.stdout.startswith("refused:") and str(path) in proc.stdout, proc
    assert list(target.iterdir()) == [], "nothing was made through the symlink"
    ok = tmp_path / "private"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "PHYSMEM_RUN_DIR": str(ok)}, cwd=cwd, timeout=60)
    assert proc.stdout == "taken\n", proc
    assert (ok / "pools.lock").exists() and oct(ok.stat().st_mode & 0o777) == "0o700"
