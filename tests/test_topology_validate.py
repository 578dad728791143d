"""cmdline parsing, cpus.plan and the validator on doctored copies of the fixture trees."""
from __future__ import annotations

import json
import os

import pytest

from physmem import placement, topology, validate
from physmem.errors import InvalidArgument
from physmem.hugepages.sizes import architecture_sizes, explain_size

from conftest import run_physmem
from physmem.topology import parse_cmdline, parse_cpulist
from physmem.findings import Severity
from sysfs_trees import Trees, doctored_copy, put


@pytest.fixture(scope="session")
def trees(tmp_path_factory):
    return Trees(tmp_path_factory)


@pytest.fixture
def doctored(trees, tmp_path_factory):
    """``doctored(name, cmdline)``: a copy of a fixture tree to change with ``put``."""
    def make(name, cmdline=None):
        root = doctored_copy(trees[name], tmp_path_factory)
        if cmdline is not None:
            put(root / "proc/cmdline", cmdline + "\n")
        return root
    return make


def run(root, sections=None):
    return validate.run(sections, sys_root=str(root / "sys"), proc_root=str(root / "proc"))


def test_cpulist_forms():
    assert parse_cpulist(b"0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert parse_cpulist(b"0-7:2/4") == {0, 1, 4, 5}
    assert parse_cpulist(b"") == frozenset()
    with pytest.raises(ValueError, match="not a CPU list"):
        parse_cpulist(b"3-1")


def test_cmdline_isolation_and_hugepages():
    c = parse_cmdline(b"ro isolcpus=managed_irq,domain,2-5 nohz_full=2-5 rcu_nocbs=2-7 "
                      b"irqaffinity=0-1 hugepagesz=1G hugepages=4 hugepages=0:2,1:3 "
                      b"default_hugepagesz=2M numa_balancing=disable transparent_hugepage=never "
                      b"-- isolcpus=1", possible=range(8))
    assert c.isolcpus == {2, 3, 4, 5} and c.isolcpus_flags == {"managed_irq", "domain"}
    assert c.nohz_full == {2, 3, 4, 5} and c.rcu_nocbs == set(range(2, 8))
    assert c.irqaffinity == {0, 1}
    assert c.hugepages[0] == (1 << 30, 4, None)
    assert c.hugepages[1] == (None, 5, {0: 2, 1: 3})
    assert c.default_hugepagesz == 2 << 20
    assert (c.numa_balancing, c.transparent_hugepage) == ("disable", "never")
    assert parse_cmdline("isolcpus=3").isolcpus_flags == {"domain"}
    assert parse_cmdline("nohz_full=all", possible=range(4)).nohz_full == {0, 1, 2, 3}


def test_plan_puts_loops_on_isolated_cpus_near_the_device(doctored):
    name = "40intel64-2g2n4c+pcilocality"
    root = doctored(name)
    put(root / "sys/devices/system/cpu/isolated", "30,34,38\n")
    put(root / "sys/devices/system/cpu/nohz_full", "34,38\n")
    topo = topology.discover(str(root / "sys"), str(root / "proc"))
    p = placement.plan(topo, devices=["0000:43:00.0"], control_loops=2)
    assert p.node == 2
    assert p.control_loops == (34, 38)  # isolated and nohz_full first
    assert not p.housekeeping & {30, 34, 38} and p.watchdog == p.housekeeping
    cores = {(topo.cpu(c).package_id, topo.cpu(c).core_id) for c in p.control_loops}
    assert len(cores) == 2
    assert all(r.why for r in p.reasons)
    # Four loops: the third takes the last isolated CPU, the fourth the least shared one.
    p4 = placement.plan(topo, devices=["0000:43:00.0"], control_loops=4)
    assert p4.control_loops[:3] == (34, 38, 30) and p4.control_loops[3] in topo.cpus_by_node()[2]
    with pytest.raises(InvalidArgument):
        placement.plan(topo, devices=["0000:99:00.0"])
    with pytest.raises(InvalidArgument):
        placement.plan(topo, control_loops=1000)


def test_validator_isolation_mismatch(doctored):
    root = doctored("128arm-2pa2n8cluster4co",
             "root=/dev/sda1 isolcpus=8-15 nohz_full=4-11")
    put(root / "sys/devices/system/cpu/isolated", "8-15\n")
    put(root / "sys/devices/system/cpu/nohz_full", "4-11\n")
    r = run(root, "isolation")
    (f,) = r.by_id("isolation.nohz_not_isolated")
    assert f.fix == "isolcpus=managed_irq,domain,4-15"
    (f,) = r.by_id("isolation.isolated_tick")
    assert f.fix == "nohz_full=4-15"
    # nohz_full CPUs count as rcu_nocbs; only 12-15 still run callbacks.
    (f,) = r.by_id("isolation.rcu_callbacks")
    assert "12-15" in f.message
    assert not r.ok and r.worst == Severity.WARNING


def test_validator_no_housekeeping(doctored):
    root = doctored("16amd64-8n2c", "nohz_full=0-15")
    put(root / "sys/devices/system/cpu/nohz_full", "0-15\n")
    r = run(root, ["isolation"])
    assert r.by_id("isolation.no_housekeeping")[0].severity == Severity.ERROR


def test_validator_memory_gigantic_and_boot_reservation(doctored):
    root = doctored("128arm-2pa2n8cluster4co",
             "hugepagesz=32M hugepages=16 default_hugepagesz=4M")
    r = run(root, "memory")
    assert r.by_id("memory.gigantic_not_reserved")[0].fix == "boot with hugepagesz=1G hugepages=N"
    assert "asks for 16 32M pages" in r.by_id("memory.boot_reservation_short")[0].message
    assert r.by_id("memory.default_hugepagesz_unsupported")


def test_validator_numa_findings(trees, doctored):
    r = run(trees["8em64t-2s2ca2c-buggynuma"], "numa")
    assert r.by_id("numa.cpu_in_several_nodes") and r.by_id("numa.distance_not_above_local")
    root = doctored("16amd64-8n2c")
    put(root / "sys/devices/system/node/node1/distance", "30 10 20 20 20 20 20 20\n")
    meminfo = root / "sys/devices/system/node/node2/meminfo"
    put(meminfo, "Node 2 MemTotal: 0 kB\nNode 2 MemFree: 0 kB\n")
    r = run(root, "numa")
    assert "node0->node1 is 20 but node1->node0 is 30" in r.by_id("numa.asymmetric_distance")[0].message
    assert "node 2 has CPUs 4-5" in r.by_id("numa.memoryless_node")[0].message
    assert run(trees["offline-cpu0-node0"], "numa").by_id("numa.cpus_without_node")


def test_validator_on_a_tree_missing_most_files(trees, tmp_path):
    # Captured trees lack /proc/sys, kpageflags, pagemap: findings, never a traceback.
    r = run(trees["256ppc-8n8s4t"])
    ids = {f.id for f in r.findings}
    assert {"memory.overcommit_unreadable", "access.kpageflags_missing"} <= ids
    json.loads(r.to_json())
    empty = tmp_path / "empty"
    (empty / "sys").mkdir(parents=True)
    (empty / "proc").mkdir()
    r = run(empty)
    assert r.worst == Severity.ERROR and json.loads(r.to_json())["findings"]


def test_validator_live_is_clean_enough_and_fast():
    r = validate.run()
    assert r.sections == ("memory", "numa", "isolation", "access", "cpuidle", "dma")
    assert not r.by_id("access.no_cap_sys_admin") or os.geteuid() != 0
    with pytest.raises(InvalidArgument):
        validate.run("nope")


def test_huge_page_sizes_explain_absences():
    assert architecture_sizes("x86_64", cpuinfo="flags : pse pdpe1gb")[1 << 30] is None
    assert architecture_sizes("x86_64", cpuinfo="flags : pse")[1 << 30] == "the CPU flag pdpe1gb"
    assert set(architecture_sizes("ppc64le", cpuinfo="mmu\t\t: radix")) >= {2 << 20, 1 << 30}
    assert architecture_sizes("riscv64")[64 << 10] == "the Svnapot extension"
    # The one /proc/cpuinfo parser reads each architecture's own field.
    assert architecture_sizes("riscv64", cpuinfo="processor\t: 0\nisa\t\t: rv64imafdc_svnapot\n"
                              )[64 << 10] is None
    s390 = "vendor_id : IBM/S390\nfeatures\t: esan3 zarch edat etf3eh\n\nprocessor 0: ...\n"
    assert architecture_sizes("s390x", cpuinfo=s390) == {1 << 20: None, 2 << 30: None}
    assert architecture_sizes("ppc64le", cpuinfo="cpu\t: POWER8\nmmu\t\t: Hash\n")[2 << 20] \
        == "the radix MMU (POWER9+)"
    assert set(architecture_sizes("aarch64", page_size=64 << 10)) == {2 << 20, 512 << 20, 16 << 30}
    assert explain_size(16 << 20, machine="x86_64").startswith("x86_64 has no 16M")


def _cli(*args):
    return run_physmem(*args)


def test_cli_topo_plan_doctor(trees):
    root = trees["16amd64-8n2c"]
    roots = ["--sys-root", str(root / "sys"), "--proc-root", str(root / "proc")]
    out = _cli("topo", "--json", *roots)
    assert out.returncode == 0
    d = json.loads(out.stdout)
    assert d["cpus_by_node"]["3"] == "6-7" and d["nodes"][0]["distances"]["1"] == 20
    out = _cli("plan", "--loops", "2", "--json", *roots)
    assert out.returncode == 0 and len(json.loads(out.stdout)["control_loops"]) == 2
    out = _cli("doctor", "--json", *roots)
    assert out.returncode == 4  # the captured tree has no kpageflags: an error
    assert json.loads(out.stdout)["worst"] == "error"
    assert _cli("doctor", "--section", "isolation", *roots).returncode == 0
    for cmd in ("topo", "plan", "doctor"):
        assert "example:" in _cli(cmd, "--help").stdout
    bad = _cli("plan", "--device", "0000:99:00.0", *roots)
    assert bad.returncode == 2 and "does not exist" in bad.stderr

# ---- cpuidle: VM wake-up latency ------------------------------------------------------------

def idle_tree(tmp_path, driver="haltpoll", governor="haltpoll", poll="0", ro=False):
    """A sys tree with only what the cpuidle section reads."""
    sys_root = tmp_path / "sys"
    idle = sys_root / "devices/system/cpu/cpuidle"
    idle.mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    if driver is not None:
        (idle / "current_driver").write_text(driver + "\n")
    if governor is not None:
        (idle / ("current_governor_ro" if ro else "current_governor")).write_text(governor + "\n")
    if poll is not None:
        params = sys_root / "module/haltpoll/parameters"
        params.mkdir(parents=True)
        (params / "guest_halt_poll_ns").write_text(poll + "\n")
    return tmp_path


def test_validator_cpuidle_haltpoll_without_polling(tmp_path):
    root = idle_tree(tmp_path)
    r = run(root, "cpuidle")
    (f,) = r.by_id("cpuidle.haltpoll_no_poll")
    assert f.severity == Severity.WARNING and "guest_halt_poll_ns 0" in f.message
    path = root / "sys/module/haltpoll/parameters/guest_halt_poll_ns"
    assert f.fix == f"echo 200000 > {path} (boot: haltpoll.guest_halt_poll_ns=200000)"
    # Kernels before 5.8 only have current_governor_ro.
    ro = idle_tree(tmp_path / "ro", ro=True)
    assert run(ro, "cpuidle").by_id("cpuidle.haltpoll_no_poll")
    out = _cli("doctor", "--section", "cpuidle", "--sys-root", str(root / "sys"),
               "--proc-root", str(root / "proc"))
    assert out.returncode == 3 and f"echo 200000 > {path}" in out.stdout


@pytest.mark.parametrize("driver,governor,poll,want", [
    ("haltpoll", "haltpoll", "200000", "cpuidle.haltpoll"),       # polling: fine
    ("haltpoll", "menu", "0", "cpuidle.driver"),                   # the knob does nothing
    ("intel_idle", "menu", None, "cpuidle.driver"),               # bare metal
    ("haltpoll", "haltpoll", "(null)", "cpuidle.driver"),          # odd file: that field only
])
def test_validator_cpuidle_other_setups(tmp_path, driver, governor, poll, want):
    r = run(idle_tree(tmp_path, driver, governor, poll), "cpuidle")
    assert [f.id for f in r.findings] == [want] and r.ok


def test_validator_cpuidle_without_cpuidle(trees, tmp_path):
    r = run(idle_tree(tmp_path, None, None, None), "cpuidle")
    assert r.findings == () and r.ok
    # A captured tree (no haltpoll): its driver and governor, as its files say.
    base = trees["16amd64-8n2c"] / "sys/devices/system/cpu/cpuidle"
    (f,) = run(trees["16amd64-8n2c"], "cpuidle").findings
    assert f.id == "cpuidle.driver" and f.message == (
        f"cpuidle driver {(base / 'current_driver').read_text().strip()}, "
        f"governor {(base / 'current_governor_ro').read_text().strip()}")


def test_validator_cpuidle_live_matches_sysfs():
    from physmem.validate.cpuidle import read_idle

    def raw(path):
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    base = "/sys/devices/system/cpu/cpuidle"
    driver = raw(f"{base}/current_driver")
    governor = raw(f"{base}/current_governor") or raw(f"{base}/current_governor_ro")
    poll = raw("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
    idle = read_idle()
    assert (idle.driver, idle.governor) == (driver, governor)
    assert idle.guest_halt_poll_ns == (None if poll is None else int(poll))
    warned = bool(validate.run("cpuidle").by_id("cpuidle.haltpoll_no_poll"))
    assert warned == (governor == "haltpoll" and poll == "0")
