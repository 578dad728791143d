"""topology.discover() on real captured sysfs trees, checked against hwloc's lstopo output."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

import lstopo_text
from physmem import topology
from physmem.topology import format_cpulist, parse_cpulist, parse_cpumask
from sysfs_trees import Trees, archives, lstopo_text as lstopo_of

WITH_LSTOPO = [n for n in archives() if lstopo_of(n)]
BUGGY = "8em64t-2s2ca2c-buggynuma"


def _ranges(text: str) -> set[int]:
    # Independent of physmem's parser: the plain "a-b,c" form only.
    out: set[int] = set()
    for part in filter(None, text.strip().strip("\x00").split(",")):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


@pytest.fixture(scope="session")
def trees(tmp_path_factory):
    return Trees(tmp_path_factory)


def _read(root):
    return topology.discover(sys_root=str(root / "sys"), proc_root=str(root / "proc"))


@pytest.mark.parametrize("name", archives())
def test_every_tree_reads_and_serialises(trees, name):
    topo = _read(trees[name])
    assert topo.nodes and topo.cpus
    json.dumps(topo.to_dict())


@pytest.mark.parametrize("name", [n for n in WITH_LSTOPO if n != BUGGY])
def test_node_cpus_memory_distances_match_lstopo(trees, name):
    expected = lstopo_text.parse(lstopo_of(name))
    topo = _read(trees[name])
    by_node = topo.cpus_by_node()
    # Nodes hwloc shows are exactly the nodes with valid CPUs or memory.
    shown = {n.id for n in topo.nodes if by_node[n.id] or n.has_memory}
    assert shown == set(expected.nodes)
    for nid, node in expected.nodes.items():
        assert by_node[nid] == node.cpus, nid
        assert lstopo_text.matches(topo.node(nid).mem_total, node.local), (nid, node.local)
    for (a, b), d in expected.distances.items():
        assert topo.distance(a, b) == d
    # Every PU hwloc shows is valid here, and no other CPU is (offline/hidden ones excluded).
    assert topo.valid_cpus == set(expected.pus)
    assert not (topo.valid_cpus & expected.hidden_pus)
    for pu, where in expected.pus.items():
        cpu = topo.cpu(pu)
        if where["core"] is not None:
            assert cpu.core_id == where["core"], pu
        if where["package"] is not None:
            assert cpu.package_id == where["package"], pu


def test_offline_cpus_are_known_but_not_valid(trees):
    topo = _read(trees["16em64t-4s2c2t-offlines"])
    offline = {c.id for c in topo.cpus if not c.online}
    assert offline == {2, 5, 13, 14}
    assert not offline & topo.valid_cpus


def test_offline_node_and_orphan_cpus_are_reported(trees):
    root = trees["offline-cpu0-node0"]
    topo = _read(root)
    online = _ranges((root / "sys/devices/system/cpu/online").read_text())
    node1 = _ranges((root / "sys/devices/system/node/node1/cpulist").read_text())
    assert [n.id for n in topo.nodes] == [1]
    assert topo.cpus_by_node() == {1: online & node1}
    assert any(format_cpulist(online - node1) in a for a in topo.anomalies)
    assert topo.distance(1, 1) == 10


def test_cgroup2_cpuset_restricts_valid_cpus(trees):
    root = trees["32amd64-4s2n4c-cgroup2"]
    topo = _read(root)
    rel = (root / "proc/self/cpuset").read_text().strip().lstrip("/")
    allowed = _ranges((root / "cgroup/unified" / rel / "cpuset.cpus.effective").read_text())
    assert topo.cpuset.version == 2 and topo.cpuset.cpus == allowed
    for node in topo.nodes:
        cpulist = _ranges((root / f"sys/devices/system/node/node{node.id}/cpulist").read_text())
        assert topo.cpus_by_node()[node.id] == cpulist & allowed
    # Nodes left without allowed CPUs are kept (and empty), not dropped.
    assert len(topo.cpus_by_node()) == 8 and not topo.cpus_by_node()[7]


def test_cgroup1_noprefix_cpuset(trees):
    root = trees["40intel64-2g2n4c+pcilocality"]
    topo = _read(root)
    assert topo.cpuset.version == 1
    assert topo.cpuset.path == (root / "proc/self/cpuset").read_text().strip()
    assert topo.cpuset.cpu_exclusive is False


def test_pci_locality(trees):
    root = trees["40intel64-2g2n4c+pcilocality"]
    topo = _read(root)
    devdir = root / "sys/bus/pci/devices"
    assert [d.address for d in topo.pci_devices] == sorted(os.listdir(devdir))
    for dev in topo.pci_devices:
        raw = (devdir / dev.address / "numa_node").read_text().strip()
        assert dev.numa_node == (None if raw == "-1" else int(raw))
        mask = int((devdir / dev.address / "local_cpus").read_text().replace(",", ""), 16)
        assert dev.local_cpus == {b for b in range(mask.bit_length()) if mask >> b & 1}
        assert dev.class_ == int((devdir / dev.address / "class").read_text(), 16)
    # The InfiniBand HCA behind ib0 is the one device firmware placed: on node 2.
    ib = os.path.basename(os.path.dirname(os.path.dirname(os.path.realpath(root / "sys/class/net/ib0"))))
    (hca,) = [d for d in topo.pci_devices if d.numa_node is not None]
    assert hca.address == ib and hca.numa_node == 2 and hca.class_ >> 8 == 0x0c06


def test_per_node_hugepage_pools(trees):
    root = trees["40intel64-2g2n4c+pcilocality"]
    topo = _read(root)
    for node in topo.nodes:
        d = root / f"sys/devices/system/node/node{node.id}/hugepages/hugepages-2048kB"
        (pool,) = node.hugepages
        assert (pool.size, pool.node) == (2 << 20, node.id)
        assert pool.total == int((d / "nr_hugepages").read_text())
        assert pool.free == int((d / "free_hugepages").read_text())


def test_buggy_numa_gives_anomalies_not_a_crash(trees):
    topo = _read(trees[BUGGY])
    text = "\n".join(topo.anomalies)
    assert "cpu0 is listed by nodes [0, 1, 2, 3, 4, 5, 6, 7]" in text
    assert "distance 10 is not above the local distance 10" in text
    # The same facts as data, checked against the tree's own cpulist files.
    node_dir = trees[BUGGY] / "sys/devices/system/node"
    listing = {}
    for d in node_dir.glob("node[0-9]*"):
        for cpu in _ranges((d / "cpulist").read_text()):
            listing.setdefault(cpu, []).append(int(d.name[4:]))
    several = {(min(a.cpus), a.nodes) for a in topo.anomalies
               if a.code == topology.Anomaly.CPU_IN_SEVERAL_NODES}
    assert several == {(c, tuple(sorted(n))) for c, n in listing.items() if len(n) > 1}
    assert topo.node_of_cpu(5) == 0


def test_no_numa_in_sysfs_assumes_one_node(trees):
    root = trees["20s390-2g6s4c"]
    topo = _read(root)
    assert not topo.numa_in_sysfs and [n.id for n in topo.nodes] == [0]
    memtotal = next(l for l in (root / "proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    assert topo.nodes[0].mem_total == int(memtotal.split()[1]) * 1024


def test_cpumask_fallback_equals_cpulist(trees):
    # POWER tree has only cpumap; the ARM tree has both: they must agree.
    root = trees["128arm-2pa2n8cluster4co"] / "sys/devices/system/node"
    for node in ("node0", "node1", "node2", "node3"):
        assert parse_cpumask((root / node / "cpumap").read_bytes()) == \
            parse_cpulist((root / node / "cpulist").read_bytes())


def test_missing_files_do_not_traceback(tmp_path, trees):
    # A tree with node files removed or unreadable still reads, or raises a physmem error.
    root = tmp_path / "t"
    shutil.copytree(trees["16amd64-8n2c"], root, symlinks=True)
    os.remove(root / "sys/devices/system/node/node3/distance")
    os.remove(root / "sys/devices/system/node/node3/meminfo")
    shutil.rmtree(root / "sys/devices/system/cpu/cpu4/topology")
    topo = _read(root)
    assert topo.node(3).distances == {} and topo.node(3).mem_total is None
    assert topo.distance(3, 0) is None and topo.cpu(4).core_id is None
    cpus2 = topo.node(2).cpus
    (root / "sys/devices/system/node/node2/cpulist").write_text("garbage\n")
    # A file that does not parse costs its field (here the cpumap fallback supplies it).
    topo = _read(root)
    assert topo.node(2).cpus == cpus2
    assert any("node2/cpulist: ignored" in s for s in topo.skipped), topo.skipped


def test_records_are_frozen(trees):
    topo = _read(trees["16amd64-8n2c"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.nodes[0].id = 5  # type: ignore[misc]
