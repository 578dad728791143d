"""topology, hugepage pools, balancing and overcommit on this machine's kernel,
checked against lscpu, numactl and the raw /proc and /sys files."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from physmem import hugepages, overcommit, sysctl, topology
from physmem.numa import balancing, set_balancing
from physmem.numa import BalancingMode


@pytest.fixture(scope="session")
def numactl():
    if shutil.which("numactl") is None:
        pytest.skip("numactl is not installed and could not be installed (.ci/run installs it)")
    return shutil.which("numactl")


def test_cpus_agree_with_lscpu():
    out = subprocess.run(["lscpu", "-p=CPU,CORE,SOCKET,NODE,ONLINE", "-a"], capture_output=True,
                         text=True, check=True).stdout
    topo = topology.discover()
    rows = [l.split(",") for l in out.splitlines() if not l.startswith("#")]
    assert {int(r[0]) for r in rows} == {c.id for c in topo.cpus}
    for cpu, core, socket, node, online in rows:
        c = topo.cpu(int(cpu))
        assert c.online == (online == "Y")
        if socket:
            assert c.package_id == int(socket)
        if node:
            assert c.node == int(node)
    # lscpu numbers cores logically; the sibling grouping must agree, not the numbers.
    by_core: dict[str, set[int]] = {}
    for r in rows:
        by_core.setdefault(r[1], set()).add(int(r[0]))
    for group in by_core.values():
        for cpu in group:
            assert topo.cpu(cpu).thread_siblings >= group & topo.cpu_sets.online


def test_nodes_agree_with_numactl(numactl):
    before = topology.discover()
    out = subprocess.run([numactl, "--hardware"], capture_output=True, text=True, check=True).stdout
    after = topology.discover()
    lines = out.splitlines()
    nodes = [int(x) for x in lines[0].split("(")[1].rstrip(")").replace("-", " ").split()] \
        if "-" not in lines[0] else None
    for line in lines:
        if line.startswith("node ") and " cpus:" in line:
            nid = int(line.split()[1])
            cpus = {int(x) for x in line.split(":")[1].split()}
            assert after.node(nid).cpus & after.cpu_sets.online == cpus
        if line.startswith("node ") and " size:" in line:
            nid = int(line.split()[1])
            mb = int(line.split(":")[1].split()[0])
            # numactl prints MemTotal >> 20; memory may be hot-added between our two reads.
            lo, hi = sorted((before.node(nid).mem_total >> 20, after.node(nid).mem_total >> 20))
            assert lo <= mb <= hi
    k = lines.index("node distances:")
    header = [int(x) for x in lines[k + 1].split()[1:]]
    for row in lines[k + 2 : k + 2 + len(header)]:
        a = int(row.split(":")[0])
        for b, d in zip(header, row.split(":")[1].split()):
            assert after.distance(a, b) == int(d)
    if nodes is not None:
        assert [n.id for n in after.nodes] == nodes


def test_process_affinity_matches_sched_getaffinity():
    topo = topology.discover()
    assert topo.affinity.cpus == os.sched_getaffinity(0)
    assert topo.valid_cpus <= os.sched_getaffinity(0)


def test_cmdline_is_this_kernels():
    with open("/proc/cmdline") as f:
        raw = f.read().strip()
    assert topology.discover().cmdline.raw == raw


def test_hugepage_pools_agree_with_meminfo_and_sysfs():
    default = hugepages.default_size()
    info = {l.split(":")[0]: l.split(":")[1].split() for l in open("/proc/meminfo")}
    assert default == int(info["Hugepagesize"][0]) * 1024
    sizes = hugepages.supported_sizes()
    assert sizes == sorted(int(d[len("hugepages-"):-2]) * 1024
                           for d in os.listdir("/sys/kernel/mm/hugepages"))
    pools = hugepages.pools()
    glob = {p.size: p for p in pools if p.node is None}
    assert glob[default].total == int(info["HugePages_Total"][0])
    assert glob[default].free == int(info["HugePages_Free"][0])
    assert glob[default].reserved == int(info["HugePages_Rsvd"][0])
    assert glob[default].surplus == int(info["HugePages_Surp"][0])
    if "Hugetlb" in info:  # every size, gigantic ones included
        assert sum(p.size * p.total for p in glob.values()) == int(info["Hugetlb"][0]) * 1024
    for p in pools:
        if p.node is not None:
            d = f"/sys/devices/system/node/node{p.node}/hugepages/hugepages-{p.size // 1024}kB"
            assert p.total == int(open(f"{d}/nr_hugepages").read())


def test_hugepage_sizes_fixture_counts_gigantic(tmp_path_factory):
    from sysfs_trees import unpack

    root = unpack("2i386-2t-hugepagesizecount", tmp_path_factory)
    pools = hugepages.pools(str(root / "sys"), str(root / "proc"))
    assert [(p.size, p.total) for p in pools] == [(2 << 20, 1), (16 << 30, 1)]
    assert pools[1].gigantic


def test_set_balancing_round_trip(sysctl_restored):
    sysctl_restored("kernel.numa_balancing")
    prev = set_balancing(BalancingMode.NORMAL)
    assert balancing().mode == BalancingMode.NORMAL
    assert sysctl.read_int("kernel.numa_balancing") == 1
    assert set_balancing(False) == BalancingMode.NORMAL and not balancing().enabled
    assert isinstance(prev, BalancingMode)
    with pytest.raises(ValueError):
        set_balancing(7)


@pytest.mark.root
def test_balancing_scan_settings_from_a_real_debugfs(tmp_path):
    mnt = tmp_path / "kernel" / "debug"
    mnt.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "debugfs", "none", str(mnt)]).returncode:
        pytest.skip("cannot mount debugfs here")
    try:
        b = balancing(sys_root=str(tmp_path))
        if b.settings_path is None:  # lockdown refuses debugfs reads: said, not raised
            assert "not readable" in b.settings_note
        else:
            assert b.scan_period_min_ms is not None and b.scan_period_min_ms <= b.scan_period_max_ms
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_commit_limit_recomputed_equals_meminfo():
    s = overcommit.current()
    # Memory may be hot-added between the kernel's computation and ours; retry once.
    if s.commit_limit != s.commit_limit_computed:
        s = overcommit.current()
    assert s.commit_limit == s.commit_limit_computed
    assert s.headroom == s.commit_limit - s.committed_as


@pytest.mark.parametrize("using", ["ratio", "kbytes"])
def test_set_headroom_gives_the_headroom(sysctl_restored, using):
    for name in ("vm.overcommit_memory", "vm.overcommit_ratio", "vm.overcommit_kbytes"):
        sysctl_restored(name)
    want = 256 << 20
    value = overcommit.set_headroom(want, using=using)
    assert sysctl.read_int(f"vm.overcommit_{using}") == value
    s = overcommit.current()
    # Committed_AS drifts a little between computing and reading back.
    assert s.headroom >= want - (16 << 20)
    assert overcommit.set_policy(overcommit.OvercommitPolicy.NEVER) in set(overcommit.OvercommitPolicy)
    assert overcommit.current().enforced
    with pytest.raises(ValueError):
        overcommit.set_policy(5)
