"""buddyinfo/pagetypeinfo/zoneinfo/vmstat against each other, and oom_score_adj."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import physmem.proc as proc
from physmem.errors import InvalidArgument

from _proc_helpers import run_unprivileged


def _settled(read, close, attempts=30):
    """Two readings agreeing within ``close``: free memory moves while we read."""
    for _ in range(attempts):
        a = read()
        if close(*a):
            return a
    pytest.fail(f"readings never agreed: {a}")


def test_buddyinfo_matches_zoneinfo_free():
    def read():
        return ({(b.node, b.zone): b.free_pages for b in proc.buddyinfo()},
                {(z.node, z.zone): z.free for z in proc.zoneinfo()})

    def close(buddy, zones):
        # per-CPU lists and in-flight allocations make the two drift by a few MiB at most
        return buddy.keys() <= zones.keys() and all(
            abs(buddy[k] - zones[k]) <= 2048 for k in buddy)

    buddy, zones = _settled(read, close)
    assert sum(buddy.values()) > 0


def test_pagetypeinfo_sums_to_buddyinfo():
    def read():
        pt = proc.pagetypeinfo()
        per_zone: dict = {}
        for (node, zone, _type), counts in pt.free.items():
            acc = per_zone.setdefault((node, zone), [0] * len(counts))
            for i, c in enumerate(counts):
                acc[i] += c
        return {k: tuple(v) for k, v in per_zone.items()}, \
            {(b.node, b.zone): b.free for b in proc.buddyinfo()}

    def close(pt, buddy):
        return all(sum(abs(a - b) << i for i, (a, b) in enumerate(zip(pt[k], buddy[k]))) <= 2048
                   for k in buddy)

    _settled(read, close)
    pt = proc.pagetypeinfo()
    assert pt.pages_per_block == 1 << pt.pageblock_order
    zones = {(z.node, z.zone): z for z in proc.zoneinfo()}
    for key, blocks in pt.blocks.items():
        # pageblocks lie within the zone's spanned range
        z = zones[key]
        assert sum(blocks.values()) * pt.pages_per_block <= z.spanned + pt.pages_per_block


def test_zoneinfo_managed_matches_node_meminfo():
    page = os.sysconf("SC_PAGE_SIZE")

    def read():
        zs = proc.zoneinfo()
        return ({n: sum(z.managed for z in zs if z.node == n) * page for n in {z.node for z in zs}},
                {n: proc.node_meminfo(n)["MemTotal"] for n in {z.node for z in zs}})

    _settled(read, lambda a, b: a == b)
    for z in proc.zoneinfo():
        assert z.min <= z.low <= z.high
        assert z.managed <= z.present <= z.spanned


def test_vmstat_matches_zoneinfo():
    def read():
        return (proc.vmstat()["nr_free_pages"], sum(z.free for z in proc.zoneinfo()))

    _settled(read, lambda a, b: abs(a - b) <= 2048)


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
    yield p.pid
    p.kill()
    p.wait()


def test_set_oom_score_adj(child):
    before = proc.oom(child)
    proc.set_oom_score_adj(child, 500)
    after = proc.oom(child)
    assert after.score_adj == 500
    assert after.adj == 500 * 17 // 1000          # the kernel's legacy scaling
    # oom_score shows (1000 + badness + adj) scaled from 0..3000 to 0..2000... i.e. +2/3 adj
    assert after.score >= min(before.score + 300, 1000)
    with pytest.raises(InvalidArgument):
        proc.set_oom_score_adj(child, 1001)


def test_lowering_oom_score_adj_needs_privilege():
    out = run_unprivileged(lambda: proc.set_oom_score_adj(None, -500))
    assert out.startswith("PermissionDenied:") and "PermissionError" in out
