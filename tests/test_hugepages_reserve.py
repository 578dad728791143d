"""physmem.hugepages reservation, compaction and mounts against the kernel's own counters."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import settled
from physmem.errors import HugePagesUnavailable, InvalidArgument
from physmem.hugepages import compact, hugetlbfs_mounts, parse_size, pools, reserve, set_pool_size

POOL_2M = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
POOL_1G = Path("/sys/kernel/mm/hugepages/hugepages-1048576kB")


def meminfo(field: str) -> int:
    for line in open("/proc/meminfo"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def count(pool: Path, name: str) -> int:
    return int((pool / name).read_text())


def test_reserve_grows_by_the_shortfall_and_restores(pools_restored):
    before = count(POOL_2M, "nr_hugepages")
    free = count(POOL_2M, "free_hugepages")
    with reserve(free + 6, "2M") as res:
        assert res.previous == before and res.size == 2 << 20
        assert count(POOL_2M, "free_hugepages") >= free + 6
        # The default-size pool is what meminfo reports: an independent reading.
        assert meminfo("HugePages_Total") == res.total == before + 6
        assert meminfo("HugePages_Free") == res.free
        again = reserve(free + 6, "2M")  # already satisfied: writes nothing
        assert again.total == res.total
    assert count(POOL_2M, "nr_hugepages") == before == meminfo("HugePages_Total")


def test_reserve_restores_when_the_block_raises(pools_restored):
    before = count(POOL_2M, "nr_hugepages")
    with pytest.raises(RuntimeError):
        with reserve(count(POOL_2M, "free_hugepages") + 2, 2 << 20):
            assert count(POOL_2M, "nr_hugepages") == before + 2
            raise RuntimeError("boom")
    assert count(POOL_2M, "nr_hugepages") == before


def test_shortfall_raises_with_the_obtained_count_and_buddyinfo(pools_restored):
    if not POOL_1G.exists():
        pytest.skip("no 1 GiB pool")
    before = count(POOL_1G, "nr_hugepages")
    impossible = meminfo("MemTotal") // (1 << 20) + 4  # more gigantic pages than RAM holds
    # Refused before the pool is touched: trying would turn all free memory into hugepages.
    for partial in (False, True):
        with pytest.raises(HugePagesUnavailable) as err:
            reserve(impossible, "1G", allow_partial=partial)
        exc = err.value
        assert isinstance(exc, MemoryError) and exc.wanted == impossible and exc.obtained == 0
        assert f"by {impossible} pages" in str(exc) and "MemAvailable is" in str(exc)
        assert "force=True" in str(exc)
        assert count(POOL_1G, "nr_hugepages") == before, "nothing was written"
    # Within the margin the kernel is asked; what it gave is reported and put back.
    part = reserve(1, "1G", allow_partial=True)
    try:
        assert part.total == count(POOL_1G, "nr_hugepages") and part.free <= part.total
    finally:
        part.release()
    assert count(POOL_1G, "nr_hugepages") == before


def test_node_pool_and_bad_arguments(pools_restored):
    node_pool = Path("/sys/devices/system/node/node0/hugepages/hugepages-2048kB")
    before = count(node_pool, "nr_hugepages")
    with reserve(count(node_pool, "free_hugepages") + 1, "2M", node=0) as res:
        assert count(node_pool, "nr_hugepages") == res.total == before + 1
        assert any(p.node == 0 and p.size == 2 << 20 and p.total == before + 1 for p in pools())
    assert count(node_pool, "nr_hugepages") == before
    with pytest.raises(InvalidArgument, match="NUMA node 7 does not exist"):
        reserve(1, "2M", node=7)
    with pytest.raises(InvalidArgument, match="no 3M hugepage pool"):
        reserve(1, "3M")
    with pytest.raises(InvalidArgument, match="count"):
        reserve(-1)
    with pytest.raises(InvalidArgument, match="not a size"):
        reserve(1, "two megabytes")
    assert parse_size("2M") == 2 << 20 and parse_size("1GiB") == 1 << 30 and parse_size(4096) == 4096


def compaction_scanned() -> int:
    """Pages the kernel's compaction scanners have looked at, from /proc/vmstat."""
    stat = dict(line.split() for line in open("/proc/vmstat"))
    return int(stat["compact_migrate_scanned"]) + int(stat["compact_free_scanned"])


def test_set_pool_size(pools_restored):
    assert set_pool_size(count(POOL_2M, "nr_hugepages") + 1, "2M") == meminfo("HugePages_Total")


def test_compact_runs_the_kernels_compaction(is_root):
    # A full compaction (all nodes, or one) scans every zone before the write returns.
    for kwargs in ({}, {"node": 0}):
        before = compaction_scanned()
        compact(**kwargs)
        assert compaction_scanned() > before, kwargs
    with pytest.raises(InvalidArgument):
        compact(node=9)


def test_compact_writes_the_kernels_files(tmp_path):
    # Which file each form writes, on a made-up tree: the sysctl, or the node's own file.
    (tmp_path / "proc" / "sys" / "vm").mkdir(parents=True)
    (tmp_path / "proc" / "sys" / "vm" / "compact_memory").write_text("")
    node = tmp_path / "sys" / "devices" / "system" / "node" / "node1"
    node.mkdir(parents=True)
    (node / "compact").write_text("")
    compact(proc_root=str(tmp_path / "proc"), sys_root=str(tmp_path / "sys"))
    assert (tmp_path / "proc" / "sys" / "vm" / "compact_memory").read_text().strip() == "1"
    assert (node / "compact").read_text() == ""
    compact(node=1, proc_root=str(tmp_path / "proc"), sys_root=str(tmp_path / "sys"))
    assert (node / "compact").read_text().strip() == "1"
    with pytest.raises(InvalidArgument, match="NUMA node 0"):
        compact(node=0, sys_root=str(tmp_path / "sys"))


@pytest.fixture
def hugetlbfs_mount(tmp_path, is_root):
    target = tmp_path / "huge 1G"
    target.mkdir()
    subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=1G", "none", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_mounts_lists_hugetlbfs_with_page_sizes(hugetlbfs_mount):
    found = {m.path: m for m in hugetlbfs_mounts()}
    assert str(hugetlbfs_mount) in found
    assert found[str(hugetlbfs_mount)].page_size == 1 << 30
    # Independent: findmnt's view of every hugetlbfs mount.
    listed = json.loads(subprocess.run(["findmnt", "-J", "-t", "hugetlbfs"], capture_output=True,
                                       text=True, check=True).stdout)["filesystems"]
    assert {f["target"] for f in listed} == set(found)


def sysfs_pools() -> dict[tuple[int, int | None], dict[str, int]]:
    """Every pool's counters by (size, node), read from sysfs with plain open(): the
    system-wide directories (node None) and each node's."""
    dirs = [(None, d) for d in Path("/sys/kernel/mm/hugepages").iterdir()]
    for node in Path("/sys/devices/system/node").glob("node[0-9]*"):
        dirs += [(int(node.name[4:]), d) for d in (node / "hugepages").iterdir()]
    return {(int(d.name[10:-2]) << 10, n): {f.name: int(f.read_text()) for f in d.iterdir()
                                            if f.name.endswith("_hugepages")}
            for n, d in dirs}


def test_cli_hugepages_list_matches_sysfs(capsys):
    from physmem.cli import main

    def check() -> None:
        assert main(["hugepages", "list", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        raw = sysfs_pools()
        assert {(r["size"], r["node"]) for r in rows} == set(raw)
        for r in rows:
            c = raw[(r["size"], r["node"])]
            assert (r["total"], r["free"], r["surplus"]) == \
                (c["nr_hugepages"], c["free_hugepages"], c["surplus_hugepages"]), r
            assert r["reserved"] == c.get("resv_hugepages")
            assert r["overcommit"] == c.get("nr_overcommit_hugepages")

    settled(check)   # another process may resize a pool between the two readings
    assert main(["hugepages", "reserve"]) == 2


def test_cli_hugepages_reserve_and_release(pools_restored, capsys):
    from physmem.cli import main

    free = count(POOL_2M, "free_hugepages")
    assert main(["hugepages", "reserve", str(free + 2), "--size", "2M", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["free"] == count(POOL_2M, "free_hugepages") >= free + 2
    assert main(["hugepages", "release", "--size", "2M", "--json"]) == 0
    capsys.readouterr()
    assert count(POOL_2M, "free_hugepages") == 0
    assert os.path.exists(POOL_2M)


def test_reserve_with_progress_grows_page_by_page(pools_restored):
    free = count(POOL_2M, "free_hugepages")
    steps = []
    with reserve(free + 3, "2M", progress=lambda done, wanted: steps.append((done, wanted))) as res:
        assert steps == [(1, 3), (2, 3), (3, 3)]
        assert res.free == count(POOL_2M, "free_hugepages") >= free + 3


@pytest.mark.parametrize("argv,needle", [
    (["release", "--node", "7"], "--node 7: no such NUMA node on this machine (online nodes: 0"),
    (["list", "--node", "9"], "--node 9: no such NUMA node"),
    (["list", "--size", "3M", "--node", "9"], "--size 3M: this kernel has no such hugepage pool (sizes: 2M"),
    (["release", "--size", "3M"], "--size 3M"),
    (["reserve", "1", "--size", "3M"], "--size 3M"),
    (["list", "3"], "takes no COUNT"),
    (["release", "-1"], "COUNT: -1 is negative: it must be 0 or more"),
    (["list", "--force"], "--force applies to `hugepages reserve`"),
])
def test_cli_nonexistent_nodes_and_sizes_are_errors(argv, needle):
    from conftest import run_physmem

    proc = run_physmem("hugepages", *argv)
    assert proc.returncode == 2, proc.stdout   # usage error, per the one exit-status table
    assert needle in proc.stderr


def test_cli_list_filters_by_size_and_node(capsys):
    from physmem.cli import main

    assert main(["hugepages", "list", "--size", "2M", "--node", "0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["size"], r["node"]) for r in rows] == [(2 << 20, 0)]
    assert rows[0]["total"] == count(Path("/sys/devices/system/node/node0/hugepages/hugepages-2048kB"),
                                     "nr_hugepages")


def test_cli_release_count_and_size_act_only_on_what_was_asked(pools_restored, capsys):
    from physmem.cli import main

    reserve(5, "2M")  # kept: pools_restored puts the pool back
    free = count(POOL_2M, "free_hugepages")
    assert free >= 5
    assert main(["hugepages", "release", "3", "--size", "2M", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert count(POOL_2M, "free_hugepages") == free - 3, "released exactly 3, not everything"
    assert [r["size"] for r in out] == [2 << 20], "only the pool it acted on is printed"
    assert main(["hugepages", "release", "--size", "2M"]) == 0
    text = capsys.readouterr().out
    assert "2M pool" in text and "1G" not in text
    assert count(POOL_2M, "free_hugepages") == 0


def test_reserve_force_and_cli_refusal(pools_restored):
    from conftest import run_physmem

    before = count(POOL_2M, "nr_hugepages")
    pages = meminfo("MemTotal") // 2048  # all of the machine's memory in 2 MiB pages
    proc = run_physmem("hugepages", "reserve", str(pages), "--size", "2M")
    assert proc.returncode == 1   # refused for want of memory now, not a malformed request
    assert "--force" in proc.stderr and "MemAvailable" in proc.stderr and "force=True" not in proc.stderr
    # One page more than the machine has: no margin or --force could give it, a usage error
    # (as `physmem alloc` of more than the machine's memory).
    proc = run_physmem("hugepages", "reserve", str(pages + 1), "--size", "2M", "--force")
    assert proc.returncode == 2 and "is more than this machine's memory" in proc.stderr
    assert count(POOL_2M, "nr_hugepages") == before


def test_release_restores_the_persistent_size_not_the_surplus(pools_restored):
    """A pool that had surplus pages: release() must not turn them into persistent pages."""
    import mmap

    (POOL_2M / "nr_hugepages").write_text(str(count(POOL_2M, "nr_hugepages") + 2))
    fd = os.memfd_create("surplus", os.MFD_HUGETLB)
    try:
        os.ftruncate(fd, 4 << 20)
        m = mmap.mmap(fd, 4 << 20)
        m[0] = m[2 << 20] = 1
        # Shrinking to the pages in use less ours frees the pool's free pages (a machine may
        # keep a pool) and leaves our two as surplus.
        persistent0 = (count(POOL_2M, "nr_hugepages") - count(POOL_2M, "surplus_hugepages")
                       - count(POOL_2M, "free_hugepages") - 2)
        (POOL_2M / "nr_hugepages").write_text(str(persistent0))  # our 2 pages: surplus now
        assert count(POOL_2M, "surplus_hugepages") >= 2
        with reserve(count(POOL_2M, "free_hugepages") + 1, "2M"):
            pass
        assert count(POOL_2M, "nr_hugepages") - count(POOL_2M, "surplus_hugepages") == persistent0
        m.close()
    finally:
        os.close(fd)
    assert count(POOL_2M, "surplus_hugepages") == 0
