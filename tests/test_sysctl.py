"""physmem.sysctl against uname(2), /sys hugepage pools and zone watermarks."""
from __future__ import annotations

import os
import re
import socket

import pytest

from physmem import sysctl
from physmem.errors import FileMissing, InvalidArgument
from physmem.proc import meminfo


PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def test_read_matches_uname():
    u = os.uname()
    assert sysctl.read("kernel.ostype") == u.sysname
    assert sysctl.read("kernel/osrelease") == u.release
    assert sysctl.read("kernel.hostname") == socket.gethostname()


def test_read_int_matches_sys_pool():
    pool = f"/sys/kernel/mm/hugepages/hugepages-{meminfo()['Hugepagesize'] // 1024}kB/nr_hugepages"
    for _ in range(20):  # the hugepage tests of others may resize the pool meanwhile
        with open(pool) as f:
            before = int(f.read())
        value = sysctl.read_int("vm.nr_hugepages")
        with open(pool) as f:
            if int(f.read()) == before:
                break
    assert value == before


def test_read_ints_and_int_mismatch():
    assert len(sysctl.read_ints("kernel.printk")) == 4
    with pytest.raises(ValueError):
        sysctl.read_int("kernel.printk")
    with pytest.raises(ValueError):
        sysctl.read_ints("kernel.ostype")


def _lowmem_zone_min_pages() -> int:
    # Movable/HighMem zones get a fixed 32..128 pages, not a share of min_free_kbytes.
    with open("/proc/zoneinfo") as f:
        zones = re.split(r"^Node \d+, zone\s+", f.read(), flags=re.M)[1:]
    return sum(int(re.search(r"^\s+min\s+(\d+)$", z, re.M).group(1))
               for z in zones if not z.startswith(("Movable", "HighMem")))


def test_write_moves_zone_watermarks(sysctl_restored):
    sysctl_restored("vm.min_free_kbytes")
    with open("/proc/sys/vm/min_free_kbytes") as f:
        new = int(f.read()) + 8192
    sysctl.write("vm.min_free_kbytes", new)
    with open("/proc/sys/vm/min_free_kbytes") as f:
        assert int(f.read()) == new
    # Each zone gets min_free_kbytes scaled by its share of lowmem, rounded down.
    zones = _lowmem_zone_min_pages()
    assert new // PAGE_KB - 8 <= zones <= new // PAGE_KB


def test_write_rejected_value_keeps_old(sysctl_restored):
    sysctl_restored("vm.overcommit_memory")
    old = sysctl.read("vm.overcommit_memory")
    with pytest.raises(InvalidArgument):
        sysctl.write("vm.overcommit_memory", 7)
    assert sysctl.read("vm.overcommit_memory") == old


def test_missing_and_bad_names():
    with pytest.raises(FileMissing):
        sysctl.read("vm.no_such_knob")
    for bad in ("", "vm..x", "../etc/passwd", "vm/../../etc/passwd", 5):
        with pytest.raises(InvalidArgument):
            sysctl.read(bad)
    with pytest.raises(InvalidArgument):
        sysctl.write("vm.min_free_kbytes", object())


def test_fixture_tree(tmp_path):
    (tmp_path / "sys" / "vm").mkdir(parents=True)
    (tmp_path / "sys" / "vm" / "swappiness").write_text("60\n")
    assert sysctl.read_int("vm.swappiness", proc_root=str(tmp_path)) == 60
    sysctl.write("vm.swappiness", [1, 2], proc_root=str(tmp_path))
    assert (tmp_path / "sys" / "vm" / "swappiness").read_text() == "1\t2\n"


def test_unprivileged_write_is_permission_denied(run_unprivileged):
    r = run_unprivileged("""
        from physmem import sysctl
        try:
            sysctl.write("vm.min_free_kbytes", 1)
        except Exception as exc:
            print(type(exc).__name__, isinstance(exc, PermissionError))
    """)
    assert r.stdout.split() == ["PermissionDenied", "True"], r.stderr
