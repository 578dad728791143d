"""Kernel quirks in sysfs/procfs: a missing or odd file costs its one field, never the reading.

Each test copies a vendored real tree into tmp_path and doctors it the way kernels do: a cpumask
that reads ``(null)``, empty files, files older kernels lack, CPUs without a topology
directory, nodes without meminfo. Expected values come from the raw files, not from physmem.
"""
from __future__ import annotations

import json
import os
import resource
import shutil

import pytest

from physmem import topology
from physmem import validate
from physmem.topology import format_cpulist
from conftest import run_physmem
from sysfs_trees import Trees

TREE = "16amd64-8n2c"


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    return Trees(tmp_path_factory)


@pytest.fixture
def tree(tmp_path, trees):
    root = tmp_path / "t"
    shutil.copytree(trees[TREE], root, symlinks=True)
    return root


def _read(root):
    return topology.discover(sys_root=str(root / "sys"), proc_root=str(root / "proc"))


def _validate(root):
    return validate.run(sys_root=str(root / "sys"), proc_root=str(root / "proc"))


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _raw_int(root, rel):
    return int((root / rel).read_text())


CPU = "sys/devices/system/cpu"
NODE = "sys/devices/system/node"


def test_null_cpumask_is_the_empty_set(tree):
    # CONFIG_NO_HZ_FULL kernel booted without nohz_full=: sysfs prints "(null)", padded.
    _write(tree, f"{CPU}/nohz_full", "  (null)\n")
    _write(tree, f"{CPU}/isolated", "\n")
    topo = _read(tree)
    assert topo.cpu_sets.nohz_full == frozenset() and topo.cpu_sets.isolated == frozenset()
    assert not any(c.nohz_full or c.isolated for c in topo.cpus)
    assert topo.skipped == ()
    report = _validate(tree)
    ids = {f.id for f in report.findings}
    # Every section ran: none reports that it could not read the system.
    assert not any(i.endswith(".unreadable") for i in ids), ids
    assert "isolation.none" in ids


def test_odd_files_cost_one_field(tree):
    shutil.rmtree(tree / f"{CPU}/cpu5/topology")          # no topology directory
    _write(tree, f"{CPU}/cpu3/topology/core_id", "")       # empty file
    _write(tree, f"{CPU}/cpu6/topology/thread_siblings_list", "  (null)\n")
    os.remove(tree / f"{NODE}/node1/meminfo")              # node without meminfo
    _write(tree, f"{NODE}/node4/meminfo", "garbage\n")      # meminfo that does not parse
    _write(tree, f"{NODE}/node0/distance", "10 x 20\n")     # distance that does not parse
    _write(tree, f"{NODE}/node2/cpulist", "garbage\n")      # cpulist bad, cpumap still there
    topo = _read(tree)

    assert topo.cpu(5).core_id is None and topo.cpu(5).package_id is None
    assert topo.cpu(5).thread_siblings == {5}
    assert topo.cpu(3).core_id is None
    assert topo.cpu(3).package_id == _raw_int(tree, f"{CPU}/cpu3/topology/physical_package_id")
    assert topo.cpu(6).thread_siblings == {6}
    assert topo.cpu(7).core_id == _raw_int(tree, f"{CPU}/cpu7/topology/core_id")
    assert topo.node(1).mem_total is None and topo.node(4).mem_total is None
    assert topo.node(0).distances == {} and topo.distance(0, 1) is None
    row1 = [int(v) for v in (tree / f"{NODE}/node1/distance").read_text().split()]
    assert [topo.distance(1, n) for n in range(8)] == row1
    mask = int((tree / f"{NODE}/node2/cpumap").read_text().replace(",", ""), 16)
    assert topo.node(2).cpus == {b for b in range(64) if mask >> b & 1}
    # What was ignored is said, file by file; a missing file is normal and not listed.
    skipped = "\n".join(topo.skipped)
    for rel in ("cpu3/topology/core_id", "node4/meminfo", "node0/distance", "node2/cpulist"):
        assert rel in skipped, (rel, skipped)
    assert "node1/meminfo" not in skipped and "cpu6" not in skipped
    ids = {f.id for f in _validate(tree).findings}
    assert "numa.files_skipped" in ids
    assert not any(i.endswith(".unreadable") for i in ids), ids


def test_files_older_kernels_lack(tree):
    for rel in (f"{CPU}/possible", f"{CPU}/online", f"{NODE}/has_cpu", f"{NODE}/possible"):
        os.remove(tree / rel)
    for cpu in range(16):
        shutil.rmtree(tree / f"{CPU}/cpu{cpu}/topology")
    topo = _read(tree)
    present = set(range(16))
    assert topo.cpu_sets.possible == topo.cpu_sets.online == present
    assert topo.node_sets.has_cpu is None and topo.node_sets.possible is None
    assert all(c.core_id is None for c in topo.cpus)
    assert topo.valid_cpus == present and topo.skipped == ()
    _validate(tree)


def test_no_numa_and_no_meminfo(tree):
    # No node directories (CONFIG_NUMA=n) and no /proc/meminfo in the capture: one node 0,
    # memory unknown.
    shutil.rmtree(tree / NODE)
    topo = _read(tree)
    assert not topo.numa_in_sysfs and [n.id for n in topo.nodes] == [0]
    assert topo.nodes[0].mem_total is None and topo.nodes[0].cpus == set(range(16))
    _write(tree, "proc/meminfo", "MemTotal: lots\n")
    topo = _read(tree)
    assert topo.nodes[0].mem_total is None and "proc/meminfo" in topo.skipped[0]


def test_affinity_and_cpuset_files_that_do_not_parse(tree):
    _write(tree, "proc/self/status", "Name:\tx\nCpus_allowed_list:\t0-3\nMems_allowed_list:\t?\n")
    topo = _read(tree)
    assert topo.affinity.cpus == {0, 1, 2, 3} and topo.affinity.mems is None
    assert topo.valid_cpus == {0, 1, 2, 3}
    assert any("Mems_allowed_list" in s for s in topo.skipped)


def test_numa_node_lists_take_the_sys_root(tree):
    # Like every other reader: the tree's 8 nodes, not this machine's.
    from physmem import numa

    def nodes(name):
        text = (tree / f"{NODE}/{name}").read_text().strip()
        a, _, b = text.partition("-")
        return set(range(int(a), int(b or a) + 1))

    sys_root = str(tree / "sys")
    assert numa.possible_nodes(sys_root) == nodes("possible") == set(range(8))
    assert numa.online_nodes(sys_root=sys_root) == nodes("online")
    shutil.rmtree(tree / NODE)  # CONFIG_NUMA=n: one node
    assert numa.possible_nodes(sys_root) == numa.online_nodes(sys_root) == {0}


def _limited_memory() -> None:
    # 1 GiB of address space: one expanded "0-4294967295" would need far more.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.RLIM_INFINITY))


def test_a_cpu_list_past_the_kernels_limit_costs_one_line(tree):
    """A capture whose CPU list spans 2**32 CPUs: refused before it is expanded, reported in
    one line by `physmem topo`, and the rest of the tree is read (under a memory limit, so
    an expansion would fail this test rather than wake the OOM killer)."""
    _write(tree, f"{CPU}/online", "0-4294967295\n")
    roots = ["--sys-root", str(tree / "sys"), "--proc-root", str(tree / "proc")]
    r = run_physmem("topo", *roots, preexec_fn=_limited_memory, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("physmem: error: ") and f"{CPU}/online: ignored" in line
    assert "not a CPU list (numbers from 0 to 8191)" in line and "0-4294967295" in line
    # The CPUs still come from the tree: present, as its own file lists them.
    present = (tree / CPU / "present").read_text().strip()
    data = json.loads(run_physmem("topo", *roots, "--json", preexec_fn=_limited_memory).stdout)
    assert format_cpulist(c["id"] for c in data["cpus"]) == present
    assert any(f"{CPU}/online" in s for s in data["skipped"])
    # A mask that wide, and a node list, in the same way.
    _write(tree, f"{NODE}/node0/cpulist", "")
    (tree / NODE / "node0" / "cpulist").unlink()
    _write(tree, f"{NODE}/node0/cpumap", "1" + "0" * 3000 + "\n")
    _write(tree, f"{NODE}/possible", "0-18446744073709551615\n")
    r = run_physmem("topo", *roots, preexec_fn=_limited_memory, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    notes = r.stderr.splitlines()
    assert len(notes) == 3 and all(n.startswith("physmem: error: ") for n in notes), notes
    assert any("node0/cpumap: ignored, hex mask with bits set past bit 8191" in n for n in notes)
