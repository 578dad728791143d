"""physmem.analysis.fragmentation and ``physmem frag`` against buddyinfo, pagetypeinfo and zoneinfo."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from physmem.analysis.fragmentation import zone_fragmentation
from physmem.errors import InvalidArgument

from conftest import PAGE, run_physmem, settled


def buddyinfo_text() -> dict[tuple[int, str], list[int]]:
    out = {}
    for line in open("/proc/buddyinfo"):
        w = line.replace(",", " ").split()
        out[(int(w[1]), w[3])] = [int(v) for v in w[4:]]
    return out


def zoneinfo_free() -> dict[tuple[int, str], int]:
    out, key = {}, None
    for line in open("/proc/zoneinfo"):
        w = line.replace(",", " ").split()
        if w[:1] == ["Node"]:
            key = (int(w[1]), w[3])
        elif w[:2] == ["pages", "free"]:
            out[key] = int(w[2])
    return out


def close(a: int, b: int, total: int) -> bool:
    """Free memory moves while we read: 2% of the zone's free pages plus 1024 pages."""
    return abs(a - b) <= 0.02 * total + 1024


def test_records_agree_with_buddyinfo_and_zoneinfo():
    settled(_records_agree)


def _records_agree() -> None:
    recs = zone_fragmentation(runs=False)
    bi, zi = buddyinfo_text(), zoneinfo_free()
    assert [(r.node, r.zone) for r in recs] == list(bi)
    o2 = ((2 << 20) // PAGE).bit_length() - 1
    for r in recs:
        counts = bi[(r.node, r.zone)]
        free = sum(n << k for k, n in enumerate(counts))
        assert close(r.free_pages, free, free), (r, counts)
        assert close(r.free_pages, zi[(r.node, r.zone)], free)
        assert r.free_pages == sum(n << k for k, n in enumerate(r.free_blocks))
        assert r.available_2m == sum(n << (k - o2) for k, n in enumerate(r.free_blocks) if k >= o2)
        assert 0.0 <= r.share_2m <= 1.0
        if r.free_pages:
            top = max(k for k, n in enumerate(r.free_blocks) if n)
            assert r.largest_block_pages == 1 << top
        assert r.largest_run_pages is None and r.available_1g is None


def test_migrate_types_add_up_to_the_buddy_counts(is_root):
    settled(_migrate_types_add_up)


def _migrate_types_add_up() -> None:
    for r in zone_fragmentation(runs=False):
        assert r.by_type is not None
        total = sum(sum(n << k for k, n in enumerate(v)) for v in r.by_type.values())
        assert close(total, r.free_pages, r.free_pages), r


def test_runs_agree_with_the_free_pages(is_root):
    recs = zone_fragmentation()
    g = (1 << 30) // PAGE
    for r in recs:
        assert r.largest_run_pages is not None and r.share_1g is not None
        # A run is one or more adjacent free blocks: never shorter than the largest block
        # unless that block was taken between the two reads.
        if r.free_blocks[-1] > 1:
            assert r.largest_run_pages >= r.largest_block_pages
        assert r.available_1g * g <= r.free_pages + 0.02 * r.free_pages
        assert 0.0 <= r.share_1g <= 1.0
        if r.available_1g:
            assert r.largest_run_pages >= g and r.share_1g > 0


def test_node_filter():
    nodes = {r.node for r in zone_fragmentation(runs=False)}
    assert {r.node for r in zone_fragmentation(min(nodes), runs=False)} == {min(nodes)}
    # A node the kernel does not have is a wrong argument, not a node without zones: the
    # nodes it has are those /proc/zoneinfo prints (read here without physmem).
    have = sorted({int(ln.split()[1].rstrip(",")) for ln in open("/proc/zoneinfo")
                   if ln.startswith("Node ")})
    with pytest.raises(InvalidArgument, match=rf"no NUMA node {max(have) + 100} \(nodes: "
                                              rf"{', '.join(map(str, have))}\)"):
        zone_fragmentation(max(have) + 100, runs=False)
    for bad in ("x", True, 1.0, -1):
        with pytest.raises(InvalidArgument, match="node"):
            zone_fragmentation(bad, runs=False)


def online_nodes() -> list[int]:
    """The kernel's list of online nodes, read independently (e.g. "0" or "0-1,4")."""
    out: list[int] = []
    for part in Path("/sys/devices/system/node/online").read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


@pytest.mark.parametrize("node", ["5", "-1", "99999"])
def test_cli_refuses_a_node_that_does_not_exist_naming_those_that_do(node):
    have = online_nodes()
    if int(node) in have:
        pytest.skip(f"node {node} exists here")
    r = run_physmem("frag", "--node", node)
    assert r.returncode == 2 and not r.stdout
    assert f"--node {node}: no such NUMA node" in r.stderr
    assert f"online nodes: {', '.join(map(str, have))}" in r.stderr


def test_cli_node_that_exists_is_the_one_reported():
    have = online_nodes()
    r = run_physmem("frag", "--node", str(have[0]), "--json")
    assert r.returncode == 0 and {d["node"] for d in json.loads(r.stdout)} == {have[0]}


def zone_spans_raw() -> dict[tuple[int, str], tuple[int, int]]:
    """[start_pfn, end_pfn) of every zone with a start, from a plain read of /proc/zoneinfo."""
    out, key, spanned = {}, None, 0
    for line in open("/proc/zoneinfo"):
        w = line.replace(",", " ").split()
        if w[:1] == ["Node"]:
            key = (int(w[1]), w[3])
        elif w[:1] == ["spanned"]:
            spanned = int(w[1])
        elif w[:1] == ["start_pfn:"] and spanned:
            out[key] = (int(w[1]), int(w[1]) + spanned)
    return out


def test_cli_json_counts_snapshots_as_the_kernel_files_say(is_root, tmp_path):
    """``physmem frag --json`` run on snapshots of buddyinfo, pagetypeinfo and kpageflags
    (bound over the /proc files in the command's own mount namespace), against the same
    snapshots read here: every figure exact, where live memory moves between two reads."""
    from conftest import kpageflags_marks_free_tails, run_physmem_frozen, snapshot_proc_file

    if not kpageflags_marks_free_tails():
        pytest.skip("kpageflags marks only the head of a free block before Linux 4.6")
    frozen = {name: snapshot_proc_file(name, tmp_path / name)
              for name in ("buddyinfo", "pagetypeinfo", "kpageflags")}
    r = run_physmem_frozen(frozen, "frag", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    buddy = {}
    for line in frozen["buddyinfo"].read_text().splitlines():
        w = line.replace(",", " ").split()
        buddy[(int(w[1]), w[3])] = [int(v) for v in w[4:]]
    by_type: dict[tuple[int, str], dict[str, list[int]]] = {}
    for line in frozen["pagetypeinfo"].read_text().splitlines():
        w = line.replace(",", " ").split()
        if w[:1] == ["Node"] and w[4:5] == ["type"]:
            by_type.setdefault((int(w[1]), w[3]), {})[w[5]] = [int(v) for v in w[6:]]
    # Runs of adjacent free frames: BUDDY (bit 10) on every frame of a free block.
    buddy_bit = (np.fromfile(frozen["kpageflags"], dtype=np.uint64) >> np.uint64(10)) & np.uint64(1)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], buddy_bit.astype(np.int8), [0]))))
    starts, ends = edges[0::2], edges[1::2]
    spans, g, o2 = zone_spans_raw(), (1 << 30) // PAGE, ((2 << 20) // PAGE).bit_length() - 1
    assert [(d["node"], d["zone"]) for d in data] == list(buddy)
    for d in data:
        counts = buddy[(d["node"], d["zone"])]
        free = sum(n << k for k, n in enumerate(counts))
        assert d["free_blocks"] == counts and d["free_pages"] == free and d["page_size"] == PAGE
        assert d["available_2m"] == sum(n << (k - o2) for k, n in enumerate(counts) if k >= o2)
        assert d["largest_block_pages"] == (1 << max(k for k, n in enumerate(counts) if n) if free else 0)
        assert d["by_type"] == by_type[(d["node"], d["zone"])]
        lo, hi = spans[(d["node"], d["zone"])]
        s, e = np.clip(starts, lo, hi), np.clip(ends, lo, hi)
        assert d["largest_run_pages"] == int((e - s).max(initial=0))
        assert d["available_1g"] == int(np.maximum(e // g - (s + g - 1) // g, 0).sum())


def test_cli_text_names_the_largest_run(is_root):
    text = run_physmem("frag")
    assert text.returncode == 0 and "largest run" in text.stdout


def test_png_is_written(is_root, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "frag.png"
    r = run_physmem("frag", "--png", str(out))
    assert r.returncode == 0, r.stderr
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert 600 <= w <= 3000 and 300 <= h <= 6000
