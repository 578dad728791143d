"""physmem.proc.meminfo against sysinfo(2), the hugepage pools in /sys and per-node files."""
from __future__ import annotations

import glob
import os
import re

import pytest

from physmem.errors import FileMissing, ParseError
from physmem.proc import meminfo, node_meminfo, parse_meminfo

PAGE = os.sysconf("SC_PAGE_SIZE")


def _stable(read, attempts=20):
    """Value of ``read()`` seen twice in a row (other tests may resize hugepage pools)."""
    prev = read()
    for _ in range(attempts):
        cur = read()
        if cur == prev:
            return cur
        prev = cur
    pytest.skip("value kept changing under concurrent activity")


def test_memtotal_matches_sysinfo():
    # glibc's _SC_PHYS_PAGES comes from sysinfo(2).totalram, the same kernel total.
    assert meminfo()["MemTotal"] == os.sysconf("SC_PHYS_PAGES") * PAGE


def test_kb_lines_scaled_counts_not():
    m = meminfo()
    assert all(isinstance(v, int) and v >= 0 for v in m.values())
    size = m["Hugepagesize"]
    pool = f"/sys/kernel/mm/hugepages/hugepages-{size // 1024}kB"
    assert os.path.isdir(pool), "Hugepagesize must be in bytes and name an existing pool"

    def both():
        with open(f"{pool}/nr_hugepages") as f:
            return meminfo()["HugePages_Total"], int(f.read())

    total, nr = _stable(both)
    assert total == nr  # a count, not scaled


def test_hugetlb_is_sum_of_all_pools():
    def both():
        pools = 0
        for d in glob.glob("/sys/kernel/mm/hugepages/hugepages-*kB"):
            kb = int(re.search(r"(\d+)kB$", d).group(1))
            with open(f"{d}/nr_hugepages") as f:
                pools += int(f.read()) * kb * 1024
        return meminfo()["Hugetlb"], pools

    hugetlb, pools = _stable(both)
    assert hugetlb == pools


def test_node_files_add_up_hugepages():
    nodes = sorted(int(p.rsplit("node", 1)[1]) for p in glob.glob("/sys/devices/system/node/node[0-9]*"))
    assert nodes

    def both():
        return (meminfo()["HugePages_Total"],
                sum(node_meminfo(n)["HugePages_Total"] for n in nodes))

    total, per_node = _stable(both)
    assert total == per_node
    for n in nodes:
        nm = node_meminfo(n)
        assert "Node" not in " ".join(nm)
        assert nm["MemUsed"] == nm["MemTotal"] - nm["MemFree"] or abs(
            nm["MemUsed"] - (nm["MemTotal"] - nm["MemFree"])) < 64 << 20


def test_fixture_tree(tmp_path):
    (tmp_path / "meminfo").write_bytes(
        b"MemTotal:        1000 kB\nHugePages_Total:       3\nActive(anon):   7 kB\n")
    assert meminfo(proc_root=str(tmp_path)) == {
        "MemTotal": 1024000, "HugePages_Total": 3, "Active(anon)": 7168}
    with pytest.raises(FileMissing):
        meminfo(proc_root=str(tmp_path / "nope"))


@pytest.mark.parametrize("bad", [b"MemTotal 12 kB", b"MemTotal: twelve kB", b"MemTotal: 1 MB",
                                 b"Mem Total: 1 kB", b": 1 kB", b"MemTotal: 1 kB extra"])
def test_bad_lines(bad):
    with pytest.raises(ParseError) as info:
        parse_meminfo(b"MemFree: 1 kB\n" + bad + b"\n", "/x/meminfo")
    assert info.value.lineno == 2 and "/x/meminfo:2" in str(info.value)
