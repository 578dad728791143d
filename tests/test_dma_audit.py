"""The DMA-safety audit (physmem.dma.audit, ``physmem dma audit``), the doctor's ``dma``
section and the exporter's DMA metrics, each answer checked against the kernel's files read
here: /proc/PID/smaps VmFlags, /proc/PID/status, the fdinfo of io_uring rings, a plain pread
of pagemap and the memory blocks of each NUMA node in sysfs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _dma_target import HUGE, dma_target, raw_frames  # noqa: F401 (a fixture)
from test_dma import registered_buffers
from conftest import PAGE, python_env, settled

from physmem.cli import Exit
from physmem.dma import Backing, Verdict, audit
from physmem.errors import InvalidArgument

ROOT = Path(__file__).resolve().parent.parent


# -- independent readings ---------------------------------------------------------------------

def raw_smaps(pid: int) -> list[dict]:
    """Each mapping of /proc/PID/smaps: start, end, path, flags (VmFlags words), fields."""
    out: list[dict] = []
    head = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ (\S+) \d+\s*(.*)$")
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = head.match(line)
        if m:
            out.append({"start": int(m[1], 16), "end": int(m[2], 16), "perms": m[3],
                        "dev": m[4], "path": m[5], "flags": set(), "fields": {}})
        elif line.startswith("VmFlags:"):
            out[-1]["flags"] = set(line.split()[1:])
        else:
            key, _, value = line.partition(":")
            out[-1]["fields"][key] = int(value.split()[0]) if value.split() else 0
    return out


def raw_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def node_of_frame() -> callable:
    """frame -> NUMA node, from the memory blocks each node's sysfs directory links."""
    base = Path("/sys/devices/system/memory")
    size = int((base / "block_size_bytes").read_text(), 16)
    owner = {}
    for node in Path("/sys/devices/system/node").glob("node[0-9]*"):
        for block in node.glob("memory[0-9]*"):
            owner[int(block.name[6:])] = int(node.name[4:])
    return lambda frame: owner[frame // size]


KPF_ZERO_PAGE = 24


def zero_page(frame: int) -> bool:
    """Whether ``frame`` is the shared zero page (/proc/kpageflags, read here)."""
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        flags = int.from_bytes(os.pread(fd, 8, frame // PAGE * 8), "little")
    finally:
        os.close(fd)
    return bool(flags >> KPF_ZERO_PAGE & 1)


def expected_runs(pid: int, start: int, end: int, unit: int, node) -> list[tuple]:
    """(vaddr, paddr, nbytes, node) of each run of present pages, pages read one by one. A
    page mapping the shared zero page (memory only read so far) holds nothing of the
    process: not present."""
    pages = list(range(start, end, unit))
    runs: list[list] = []
    for v, f in zip(pages, raw_frames(pid, pages)):
        if f is None or zero_page(f):
            continue
        n = node(f)
        last = runs[-1] if runs else None
        if last and last[0] + last[2] == v and last[1] + last[2] == f and last[3] == n:
            last[2] += unit
        else:
            runs.append([v, f, unit, n])
    return [tuple(r) for r in runs]


# -- the target ---------------------------------------------------------------------------------

@pytest.fixture
def full_target(dma_target, hugepage_pool, tmp_path):
    """A target holding every kind of memory, a pinned and an unpinned DmaBuffer among it."""
    hugepage_pool(1)
    data = tmp_path / "mapped.bin"
    data.write_bytes(bytes(4 * PAGE))
    return dma_target("--hugetlb", "--buffers", "--file", str(data))


def containing(mappings: list[dict], address: int) -> dict:
    return next(m for m in mappings if m["start"] <= address < m["end"])


@pytest.mark.root
@pytest.mark.hugepages
def test_every_region_agrees_with_smaps_fdinfo_status_and_pagemap(full_target):
    # The target sits idle, but khugepaged may still collapse its THP-eligible pages between
    # the audit and the reads here: the two must agree on one attempt.
    settled(lambda: agrees_with_the_files(full_target.pid))


def agrees_with_the_files(pid: int) -> None:
    report = audit(pid)
    mappings = raw_smaps(pid)
    rings = registered_buffers(str(pid))
    node = node_of_frame()

    assert report.pid == pid
    assert report.comm == Path(f"/proc/{pid}/comm").read_text().strip()
    assert report.vm_pin == raw_status(pid, "VmPin") == 2 * 1024 * 1024
    assert report.vm_lck == raw_status(pid, "VmLck")
    assert {(b.address, b.size) for b in report.uring_buffers} == rings
    assert report.uring_pinned == report.vm_pin and report.unattributed == 0
    assert report.not_checked == ()

    # Regions tile the mappings, cut only where a registered buffer begins or ends.
    cuts = {m["start"] for m in mappings} | {m["end"] for m in mappings}
    cuts |= {a for a, _ in rings} | {a + n for a, n in rings}
    assert [r.start for r in report.regions][0] == mappings[0]["start"]
    for a, b in zip(report.regions, report.regions[1:]):
        assert a.end <= b.start and b.start in cuts and a.end in cuts
    assert sum(r.size for r in report.regions) == sum(m["end"] - m["start"] for m in mappings)

    for r in report.regions:
        m = containing(mappings, r.start)
        assert r.end <= m["end"] and r.path == m["path"].removesuffix(" (deleted)")
        flags = m["flags"]
        assert (r.locked, r.dontfork, r.wipeonfork, r.mergeable) == (
            "lo" in flags, "dc" in flags, "wf" in flags, "mg" in flags), (hex(r.start), flags)
        assert (r.backing is Backing.HUGETLB) == ("ht" in flags)
        assert r.page_size == m["fields"]["KernelPageSize"] * 1024
        assert r.thp_eligible == bool(m["fields"]["THPeligible"])
        assert r.shared == (m["perms"][3] == "s") and r.writable == (m["perms"][1] == "w")
        assert r.pinned == any(a <= r.start and r.end <= a + n for a, n in rings)
        got = [(v, p, n, node_) for (v, p, n), node_ in
               zip(r.runs.tolist(), r.run_nodes.tolist())]
        assert got == expected_runs(pid, r.start, r.end, r.page_size, node), hex(r.start)
        assert r.present == sum(n for _, _, n, _ in got)
        nodes: dict[int, int] = {}
        for _, _, n, nd in got:
            nodes[nd] = nodes.get(nd, 0) + n
        assert r.nodes == nodes


@pytest.mark.root
@pytest.mark.hugepages
def test_each_kind_of_memory_gets_its_backing_and_verdict(full_target):
    t = full_target
    mappings = raw_smaps(t.pid)
    want = {
        # name: (backing, verdict, cow risk)
        "pinned_buffer": (Backing.HUGETLB, Verdict.STABLE, False),
        "unpinned_buffer": (Backing.HUGETLB, Verdict.LOCKED_MOVABLE, False),
        "hugetlb": (Backing.HUGETLB, Verdict.COW_RISK, True),
        "locked": (Backing.ANONYMOUS, Verdict.COW_RISK, True),
        "locked_dontfork": (Backing.ANONYMOUS, Verdict.LOCKED_MOVABLE, False),
        "anon": (Backing.ANONYMOUS, Verdict.UNLOCKED, True),
        "wipeonfork": (Backing.ANONYMOUS, Verdict.UNLOCKED, False),
        "mergeable": (Backing.ANONYMOUS, Verdict.UNLOCKED, True),
        "memfd": (Backing.SHMEM, Verdict.UNLOCKED, False),
        "shared_anon": (Backing.SHMEM, Verdict.UNLOCKED, False),
        "file": (Backing.FILE, Verdict.UNLOCKED, False),
    }
    thp_mapping = containing(mappings, t.maps["thp"][0])
    # THP when the kernel gave a huge page (smaps AnonHugePages), 4 KiB pages otherwise.
    want["thp"] = (Backing.THP if thp_mapping["fields"]["AnonHugePages"] else Backing.ANONYMOUS,
                   Verdict.UNLOCKED, True)
    report = audit(t.pid, [t.maps[name] for name in want])
    got = {}
    for name in want:
        address, length = t.maps[name]
        regions = [r for r in report.regions if address <= r.start < address + length]
        assert sum(r.size for r in regions) == length, name
        assert len({(r.backing, r.verdict, r.cow_risk) for r in regions}) == 1, name
        got[name] = (regions[0].backing, regions[0].verdict, regions[0].cow_risk)
    assert got == want
    by_name = {name: next(r for r in report.regions if r.start == t.maps[name][0])
               for name in want}
    assert by_name["pinned_buffer"].pinned and not by_name["unpinned_buffer"].pinned
    assert by_name["hugetlb"].page_size == HUGE and by_name["anon"].page_size == PAGE
    assert by_name["mergeable"].mergeable and by_name["wipeonfork"].wipeonfork
    # Only the unpinned buffer, the private hugetlb page and the mlocked memory are held
    # resident yet movable.
    movable = sum(t.maps[n][1] for n in ("unpinned_buffer", "hugetlb", "locked",
                                         "locked_dontfork"))
    assert report.locked_unpinned_bytes == movable
    assert report.pinned_bytes == HUGE


def test_ranges_are_checked():
    with pytest.raises(InvalidArgument, match="no mapping at 0x1000"):
        audit(None, [(0x1000, PAGE)])
    with pytest.raises(InvalidArgument, match="not aligned"):
        audit(None, [(0x1001, PAGE)])


@pytest.mark.root
def test_without_pages_only_text_files_are_read(dma_target):
    t = dma_target()
    report = audit(t.pid, pages=False)
    assert all(r.runs is None and r.present is None and not r.nodes for r in report.regions)
    assert report.vm_lck == raw_status(t.pid, "VmLck")


def test_unprivileged_audit_says_frames_are_hidden_but_reads_the_rest(run_unprivileged):
    r = run_unprivileged("""
        import json, mmap, ctypes
        from physmem.dma import audit
        m = mmap.mmap(-1, 8192, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS); m[0] = 1
        a = ctypes.addressof(ctypes.c_char.from_buffer(m))
        rep = audit(None, [(a, 8192)])
        (reg,) = rep.regions
        print(json.dumps({"runs": reg.runs is None, "present": reg.present,
                          "nodes": reg.nodes, "verdict": reg.verdict.value,
                          "not_checked": dict(rep.not_checked)}))
    """)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["runs"] is True and got["present"] == PAGE and got["verdict"] == "unlocked"
    assert sum(got["nodes"].values()) == PAGE
    assert "CAP_SYS_ADMIN" in got["not_checked"]["physical runs"]


# -- the command ------------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env, cwd = python_env()
    return subprocess.run([sys.executable, "-m", "physmem.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


@pytest.mark.root
@pytest.mark.hugepages
def test_cli_json_and_text_say_what_the_files_say(full_target):
    t = full_target
    r = run_cli("dma", "audit", "--pid", str(t.pid), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert r.stdout == json.dumps(doc, indent=2) + "\n"
    assert doc["pid"] == t.pid and doc["vm_pin"] == raw_status(t.pid, "VmPin")
    assert {(b["address"], b["size"]) for b in doc["uring_buffers"]} == \
        registered_buffers(str(t.pid))
    pinned = [g for g in doc["regions"] if g["pinned"]]
    assert [(g["start"], g["size"], g["verdict"]) for g in pinned] == [
        (t.maps["pinned_buffer"][0], HUGE, "stable")]
    (run,) = pinned[0]["runs"]
    assert run["paddr"] == raw_frames(t.pid, [pinned[0]["start"]])[0] and run["nbytes"] == HUGE

    address, length = t.maps["unpinned_buffer"]
    r = run_cli("dma", "audit", "--pid", str(t.pid), "--range", f"{address:#x}:2M")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"process {t.pid} (") and "VmPin 2.0 MiB" in lines[0]
    assert lines[1].split()[:5] == ["range", "size", "backing", "verdict", "flags"]
    row = lines[2]
    assert row.startswith(f"{address:#x}-{address + length:#x}")
    assert "hugetlb 2M" in row and "locked but movable" in row and "dontfork,shared" in row
    assert lines[-1].startswith("verdicts: stable 0 B, locked but movable 2.0 MiB")


def test_cli_audit_of_a_missing_process_is_5_and_a_bad_range_2(child_process):
    free = next(p for p in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{p}"))
    r = run_cli("dma", "audit", "--pid", str(free))
    assert r.returncode == Exit.NOT_FOUND and r.stderr.startswith("physmem: error:")
    r = run_cli("dma", "audit", "--pid", str(child_process()), "--range", "0x1000:4K")
    assert r.returncode == Exit.USAGE and "no mapping at 0x1000" in r.stderr


README_HOLDER = """
import sys
from physmem.dma import allocate_contiguous
pinned = allocate_contiguous("2M", reserve=True)              # pin="auto": pinned here
unpinned = allocate_contiguous("2M", reserve=True, pin=False)
print("ready", flush=True)
sys.stdin.read()
"""


def shape(text: str) -> list[str]:
    """Output with what changes from run to run (numbers, addresses, sizes, names) blanked."""
    text = re.sub(r"0x[0-9a-f]+", "ADDR", text)
    text = re.sub(r"\d+(\.\d+)? (B|KiB|MiB|GiB)", "SIZE", text)
    text = re.sub(r"process \d+ \(\S+\)", "process PID (COMM)", text)
    text = re.sub(r"\b\d+\b", "N", text)
    return [re.sub(r" +", " ", line).rstrip() for line in text.splitlines()]


@pytest.mark.root
@pytest.mark.hugepages
def test_readme_shows_the_real_output_of_an_audit(pools_restored):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```text\n\$ physmem dma audit --pid \d+\n(.*?)```", readme, re.S)
    assert block, "README lost its `physmem dma audit` example"
    env, cwd = python_env()
    holder = subprocess.Popen([sys.executable, "-c", README_HOLDER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    try:
        assert holder.stdout.readline().strip() == "ready"
        r = run_cli("dma", "audit", "--pid", str(holder.pid))
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert r.returncode == 0, r.stderr
    assert shape(block.group(1)) == shape(r.stdout)


# -- the exporter -----------------------------------------------------------------------------

@pytest.mark.root
@pytest.mark.hugepages
def test_exporter_reports_pinned_and_resident_unpinned_memory_per_process(full_target):
    pytest.importorskip("prometheus_client")
    from physmem.exporter import Exporter, read_dma

    t = full_target
    comm = Path(f"/proc/{t.pid}/comm").read_text().strip()
    pinned = sum(n for _, n in registered_buffers(str(t.pid)))
    # Held resident: mlocked (lo) or hugetlb (ht) mappings; less what io_uring pins.
    resident = sum(m["end"] - m["start"] for m in raw_smaps(t.pid) if {"lo", "ht"} & m["flags"])
    mine = next(h for h in read_dma(limit=10_000).holders if h.pid == t.pid)
    assert (mine.comm, mine.pinned) == (comm, raw_status(t.pid, "VmPin")) and pinned == HUGE
    assert mine.locked_unpinned == resident - pinned

    from prometheus_client.parser import text_string_to_metric_families

    exporter = Exporter()
    exporter.readings["dma"].run()
    samples = {(s.name, s.labels.get("pid"), s.labels.get("comm")): s.value
               for fam in text_string_to_metric_families(exporter.exposition().decode())
               for s in fam.samples}
    assert samples[("physmem_dma_pinned_bytes", str(t.pid), comm)] == HUGE
    assert samples[("physmem_dma_locked_unpinned_bytes", str(t.pid), comm)] == \
        resident - pinned

    # The labelled processes are bounded; the rest are summed under pid 0.
    def bounded() -> None:
        holders = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                   if any(raw_status(pid, k) for k in ("VmPin", "VmLck", "HugetlbPages"))]
        assert len(holders) >= 2
        one = read_dma(limit=1)
        assert one.processes == len(holders)
        (top, rest) = one.holders
        assert rest.pid == 0 and rest.comm == "(other)"
        assert top.pinned + rest.pinned == sum(raw_status(p, "VmPin") for p in holders)
    settled(bounded)


# -- the doctor's dma section -------------------------------------------------------------------

def test_doctor_dma_section_reads_this_machine():
    from physmem import validate

    report = validate.run("dma")
    ids = {f.id: f for f in report.findings}
    disabled = Path("/proc/sys/kernel/io_uring_disabled")
    if disabled.exists():
        want = {"0": "dma.pinning", "1": "dma.pinning_restricted"}.get(
            disabled.read_text().strip(), "dma.pinning_disabled")
        assert want in ids
    memory = Path("/sys/devices/system/memory")
    if memory.is_dir():
        online = removable = 0
        for block in memory.glob("memory[0-9]*"):
            if (block / "state").read_text().strip() == "online":
                online += 1
                removable += (block / "removable").read_text().strip() == "1"
        if removable:
            assert f"{removable} of {online} online memory blocks" in \
                ids["dma.memory_offline"].message
        policy = (memory / "auto_online_blocks").read_text().strip()
        assert f"auto_online_blocks={policy}" in ids["dma.auto_online_blocks"].message
    compact = Path("/proc/sys/vm/compact_unevictable_allowed")
    if compact.exists():
        assert ("dma.compaction_moves_mlocked" if compact.read_text().strip() == "1"
                else "dma.compaction_spares_mlocked") in ids
    major, minor = map(int, re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    assert ("dma.gigantic_allocation_moves_hugetlb" if (major, minor) >= (7, 0)
            else "dma.gigantic_allocation_spares_hugetlb") in ids
    numad = [p for p in Path("/proc").glob("[0-9]*") if (p / "comm").exists()
             and (p / "comm").read_text().strip() == "numad"]
    assert ("dma.numad" in ids) == bool(numad)


def fake_machine(root: Path, *, io_uring_disabled: int, numad: bool) -> tuple[str, str]:
    """A proc and sys tree: three memory blocks (one Normal, one Movable, one offline),
    a 7.1 kernel that lets compaction move mlocked pages, maybe numad."""
    memory = root / "sys" / "devices" / "system" / "memory"
    (root / "sys" / "devices" / "system" / "cpu").mkdir(parents=True)
    memory.mkdir(parents=True)
    (memory / "block_size_bytes").write_text("8000000\n")
    (memory / "auto_online_blocks").write_text("online_movable\n")
    for n, (state, zone) in enumerate((("online", "Normal"), ("online", "Movable"),
                                       ("offline", ""))):
        block = memory / f"memory{n}"
        block.mkdir()
        (block / "state").write_text(state + "\n")
        (block / "removable").write_text("1\n")
        (block / "valid_zones").write_text(zone + "\n")
    proc = root / "proc"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "vm").mkdir(parents=True)
    (proc / "sys" / "kernel" / "io_uring_disabled").write_text(f"{io_uring_disabled}\n")
    (proc / "sys" / "kernel" / "osrelease").write_text("7.1.0-test\n")
    (proc / "sys" / "vm" / "compact_unevictable_allowed").write_text("1\n")
    if numad:
        (proc / "321").mkdir()
        (proc / "321" / "stat").write_text(
            "321 (numad) S 1 321 321 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 100 1000000 100 "
            "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n")
    return str(root / "sys"), str(proc)


@pytest.mark.parametrize("disabled", [0, 2])
def test_doctor_dma_movers_warn_where_nothing_can_be_pinned(tmp_path, disabled):
    from physmem import validate
    from physmem.findings import Severity

    sys_root, proc_root = fake_machine(tmp_path, io_uring_disabled=disabled, numad=True)
    report = validate.run("dma", sys_root=sys_root, proc_root=proc_root)
    ids = {f.id: f for f in report.findings}
    movers = ("dma.memory_offline", "dma.compaction_moves_mlocked",
              "dma.gigantic_allocation_moves_hugetlb", "dma.numad")
    expected = Severity.INFO if disabled == 0 else Severity.WARNING
    assert {m: ids[m].severity for m in movers} == {m: expected for m in movers}
    assert ("dma.pinning" if disabled == 0 else "dma.pinning_disabled") in ids
    assert "2 of 2 online memory blocks of 128M" in ids["dma.memory_offline"].message
    assert "1 of them in ZONE_MOVABLE" in ids["dma.memory_offline"].message
    assert "Linux 7.1" in ids["dma.gigantic_allocation_moves_hugetlb"].message
    assert "pid 321" in ids["dma.numad"].message
    assert "ZONE_MOVABLE" in ids["dma.auto_online_blocks"].message
