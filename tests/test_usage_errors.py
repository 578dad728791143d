"""Malformed and impossible values, as a hostile user gives them: each is a clear error with
its documented exit status (README's table), the same for root and for uid 65534, because
usage errors are found before anything privileged is read."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from physmem import overcommit, placement, proc, topology, validate
from physmem.analysis.fragmentation import zone_fragmentation
from physmem.errors import InvalidArgument
from physmem.kpageflags import summarize
from physmem.pagemap import PageMap, virt_to_phys

from conftest import PAGE, anonymous, kernel_thread, run_physmem


# -- independent readings of the machine ------------------------------------------------------

def _frames_end() -> int:
    """One past the highest PFN any zone spans, from /proc/zoneinfo read here."""
    end, start = 0, None
    for line in open("/proc/zoneinfo"):
        words = line.split()
        if line.startswith("Node "):
            start = spanned = None
        elif words[:1] == ["spanned"]:
            spanned = int(words[1])
        elif words[:1] == ["start_pfn:"]:
            start = int(words[1])
            if spanned:
                end = max(end, start + spanned)
    return end


def _unused_pid() -> str:
    return str(next(p for p in range(2**22, 0, -1) if not os.path.exists(f"/proc/{p}")))


END = _frames_end()
KTHREAD = kernel_thread()
MEM_TOTAL = next(int(ln.split()[1]) * 1024 for ln in open("/proc/meminfo")
                 if ln.startswith("MemTotal:"))

# (argv, exit status, words the one error line must hold)
CASES = [
    (["kpageflags", "-1"], 2, "PFN -1 is negative"),
    (["kpageflags", "0xffffffffffffffff"], 2, "out of range (must be below 0x80000000000000)"),
    (["kpageflags", hex(END)], 2, f"beyond the end of physical memory (the last page frame "
                                  f"is {END - 1:#x})"),
    (["kpageflags", "--summary", "--start", hex(END)], 2,
     f"--start {END:#x} is beyond the last PFN ({END - 1:#x})"),
    (["kpageflags", "--start", "5", "1"], 2, "--start and --count apply to --summary only"),
    (["kpageflags", "--count", "5", "1"], 2, "--start and --count apply to --summary only"),
    (["map", "--cell", "0"], 2, "--cell=0 is out of range"),
    (["map", "--cell", "1"], 2,
     f"--cell=0x1 is not a multiple of the page size {PAGE:#x}; round it up to {PAGE:#x}"),
    (["map", "--cell", "3K"], 2, "--cell=0xc00 is not a multiple of the page size"),
    (["map", "--cell", f"{(END * PAGE >> 30) + 1}G"], 2, "is larger than all physical memory"),
    (["map", "--cell", "1P"], 2, "--cell 1024T is larger than all physical memory"),
    (["map", "--cell", "x"], 2, "--cell 'x' is not a size"),
    (["map", "--threads", "1.5"], 2, "'1.5' is not an integer (decimal or 0x hex)"),
    (["map", "--pid", _unused_pid()], 5, "does not exist or has exited"),
    (["doctor", "--sys-root", "/nonexistent"], 2, "--sys-root: '/nonexistent' does not exist"),
    (["doctor", "--sys-root", "/"], 2, "'/' is not a sysfs tree (it has no devices/system/cpu)"),
    (["doctor", "--proc-root", "/nonexistent"], 2, "--proc-root: '/nonexistent' does not exist"),
    (["topo", "--proc-root", "/nonexistent"], 2, "--proc-root: '/nonexistent' does not exist"),
    (["plan", "--proc-root", "/etc/passwd"], 2, "'/etc/passwd' is not a directory"),
    (["exporter", "--sys-root", "/nonexistent", "--json"], 2, "'/nonexistent' does not exist"),
    (["alloc", "2M", "--force"], 2, "--force applies with --reserve only"),
    (["alloc", "2M", "--page-size", "0"], 2, "--page-size 0: this kernel has no such hugepage pool"),
    (["alloc", "2M", "--page-size", "x"], 2, "--page-size 'x' is not a size"),
    (["alloc", "x"], 2, "SIZE 'x' is not a size"),
    (["alloc", "0"], 2, "SIZE '0' is zero: give at least one byte"),
    (["alloc", "4M", "--reserve", "--max-growth", "0"], 2, "--max-growth '0' is zero"),
    (["map", "--cell", "1"], 2, "--cell=0x1 is not a multiple of the page size 0x1000"),
    (["alloc", "8M", "--max-growth", "4M"], 2, "--max-growth applies with --reserve only"),
    (["alloc", "8M", "--reserve", "--max-growth", "4M"], 2,
     "--max-growth 4M is less than the buffer (8M)"),
    (["alloc", "8M", "--reserve", "--max-growth", "4Q"], 2, "--max-growth '4Q' is not a size"),
    (["hugepages", "reserve", str(MEM_TOTAL // PAGE), "--size", "2M"], 2,
     "is more than this machine's memory"),
    (["hugepages", "reserve", "0xffffffffffffffff"], 2, "is more than this machine's memory"),
    (["hugepages", "list", "--size", "x"], 2, "--size 'x' is not a size"),
    (["frag", "--node", "99"], 2, "--node 99: no such NUMA node"),
]
if KTHREAD is not None:
    CASES += [(["v2p", "--pid", KTHREAD, "0x1000"], 2, "is a kernel thread"),
              (["map", "--pid", KTHREAD, "--cell", "1G"], 2, "is a kernel thread")]


def _one_error(stderr: str, words: str) -> None:
    """Exactly one error line (after argparse's usage lines, for its own errors)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if not ln.startswith(("usage:", " "))]
    assert len(lines) == 1 and re.match(r"physmem( [\w-]+)?: error: ", lines[0]), stderr
    assert words in lines[0], (words, stderr)


@pytest.mark.parametrize("argv, code, words", CASES, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_malformed_values_are_usage_errors_for_anyone(argv, code, words, capsys):
    """Whoever runs the suite (root, or not: the "not root" half) gets the documented status.
    In this process, as test_the_same_statuses_as_uid_65534 below does: the program's own
    exit path is the alloc tests' below (a fresh interpreter costs 0.2 s a case)."""
    from physmem.cli import main

    got = main(argv)
    out, err = capsys.readouterr()
    assert got == code and not out, (argv, got, err)
    _one_error(err, words)


def test_the_same_statuses_as_uid_65534(run_unprivileged):
    """The other way round: as nobody, every value gets the status root got above, and the
    same message (never "kpageflags: Permission denied")."""
    argvs = [argv for argv, _, _ in CASES]
    r = run_unprivileged(f"""
        import contextlib, io, json, sys
        from physmem.cli import main
        out = []
        for argv in {argvs!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            out.append((code, err.getvalue()))
        print(json.dumps(out))
    """)
    assert r.returncode == 0, r.stderr
    for (argv, code, words), (got, stderr) in zip(CASES, json.loads(r.stdout)):
        assert got == code, (argv, got, stderr)
        assert "Permission denied" not in stderr, (argv, stderr)
        _one_error(stderr, words)


# -- one line per error; the details with --verbose ---------------------------------------------

def test_a_shortage_is_one_line_and_verbose_shows_free_memory(empty_2m_pool):
    r = run_physmem("alloc", "4M", "--page-size", "2M")
    assert r.returncode == 1 and not r.stdout
    (line,) = r.stderr.splitlines()
    assert line.startswith("physmem: error: cannot allocate a 4M contiguous buffer")
    assert "--reserve" in line and line.endswith("(--verbose shows the details)")
    r = run_physmem("alloc", "4M", "--page-size", "2M", "--verbose")
    first, *details = r.stderr.splitlines()
    assert r.returncode == 1 and first == line.removesuffix(" (--verbose shows the details)")
    # The details name every zone of /proc/buddyinfo (read here), indented under the line.
    zones = {(w[1].rstrip(","), w[3]) for w in map(str.split, open("/proc/buddyinfo"))}
    shown = {(m[1], m[2]) for m in (re.search(r"node (\d+) (\w+) ", d) for d in details) if m}
    assert shown == zones and all(d.startswith("  ") for d in details), r.stderr


# -- the library: every public entry point checks what it is given -----------------------------

def test_translate_refuses_ragged_lists_and_non_bool_strict():
    buf, addr = anonymous(PAGE)
    try:
        with PageMap() as pm:
            for ragged in ([[addr, addr], [addr]], [addr, [addr]]):
                with pytest.raises(InvalidArgument, match=r"address values must have one shape"):
                    pm.translate(ragged)
                with pytest.raises(InvalidArgument, match="one shape"):
                    virt_to_phys(ragged)
            for bad in ("x", None, 1, [], np.int64(0)):
                with pytest.raises(InvalidArgument, match="strict must be True or False"):
                    pm.translate(addr, strict=bad)
                with pytest.raises(InvalidArgument, match="strict"):
                    pm.read(addr, PAGE).paddr(strict=bad)
    finally:
        buf.close()


def test_kpageflags_reads_refuse_ragged_lists(is_root):
    from physmem import KPageCount, KPageFlags

    for cls in (KPageFlags, KPageCount):
        with cls() as f:
            with pytest.raises(InvalidArgument, match="PFN values must have one shape"):
                f.read([[1, 2], [3]])
            assert isinstance(f.read(1), int) and f.read([1]).shape == (1,)


def test_summarize_refuses_text_and_single_numbers():
    for bad in (b"1", "", "12", 5, None, 1.5):
        with pytest.raises(InvalidArgument, match="flags must be an integer array"):
            summarize(bad)  # type: ignore[arg-type]
    # An array, a list of arrays and (start, array) pairs still count, the same way.
    rows = summarize([np.array([1, 2, 2]), (0, np.array([2]))])
    assert [(r.flags, r.pages) for r in rows] == [(2, 3), (1, 1)]


def test_fragmentation_checks_node_runs_and_threads():
    for kwargs, words in ((dict(node="x"), "node must be an integer"),
                          (dict(node=True), "node must be an integer"),
                          (dict(node=1.0), "node must be an integer"),
                          (dict(runs="no"), "runs must be True or False"),
                          (dict(threads=0), "threads=0 is out of range"),
                          (dict(threads="2"), "threads must be an integer")):
        with pytest.raises(InvalidArgument, match=words):
            zone_fragmentation(**{"runs": False, **kwargs})


def test_topology_lookups_take_integers_only():
    topo = topology.discover()
    cpu = topo.cpus[0].id
    assert topo.node_of_cpu(np.int64(cpu)) == topo.node_of_cpu(cpu)
    for bad in (True, float(cpu), str(cpu), None):
        with pytest.raises(InvalidArgument, match="cpu must be an integer"):
            topo.node_of_cpu(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="node must be an integer"):
            topo.node(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"no CPU 99999 \(CPUs: "):
        topo.cpu(99999)


def test_plan_checks_its_arguments():
    topo = topology.discover()
    assert placement.plan(topo, control_loops=np.int64(0)).control_loops == ()
    for kwargs, words in ((dict(control_loops=True), "control_loops must be an integer"),
                          (dict(control_loops=-1), "control_loops=-1 is out of range"),
                          (dict(devices="0000:00:00.0"), "devices must be a list of PCI"),
                          (dict(devices=None), "devices must be a list of PCI"),
                          (dict(devices=[1]), "devices entry must be a non-empty str")):
        with pytest.raises(InvalidArgument, match=words):
            placement.plan(topo, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="topology must be a Topology"):
        placement.plan(None)  # type: ignore[arg-type]


def test_topology_readers_check_pid_and_address():
    for bad in ("x", "../1", True, 0, 2**64, 1.5):
        with pytest.raises(InvalidArgument, match="pid"):
            topology.read_affinity(pid=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="pid"):
            topology.read_cpuset(pid=bad)  # type: ignore[arg-type]
    own = topology.read_affinity(pid=os.getpid())
    assert own.cpus == frozenset(os.sched_getaffinity(0))   # independent: the syscall
    for bad in ("", "x", "0000:00:00.0/..", None, 5):
        with pytest.raises(InvalidArgument, match="is not a PCI address|^address must be a "):
            topology.read_pci_device(bad)  # type: ignore[arg-type]
    devices = sorted(os.listdir("/sys/bus/pci/devices"))
    assert [d.address for d in topology.read_pci_devices()] == devices


def test_proc_readers_take_numpy_pids_and_refuse_impossible_ones():
    assert proc.status(np.int64(os.getpid()))["Pid"] == os.getpid()
    for bad in (2**64, 2**22 + 1, True, np.float64(1.0)):
        with pytest.raises(InvalidArgument, match="pid"):   # not ProcessGone: no such pid can be
            proc.maps(bad)  # type: ignore[arg-type]
    raw = Path("/sys/devices/system/node/node0/meminfo").read_text()
    total = int(re.search(r"MemTotal:\s+(\d+) kB", raw)[1]) * 1024
    assert proc.node_meminfo(np.int64(0))["MemTotal"] == total
    for bad in (0.0, "0", True, -1):
        with pytest.raises(InvalidArgument, match="node"):
            proc.node_meminfo(bad)  # type: ignore[arg-type]


def test_overcommit_arguments():
    before = Path("/proc/sys/vm/overcommit_memory").read_text()
    for bad in (True, 1.0, np.float64(2.0), "1"):
        with pytest.raises(InvalidArgument, match="^policy"):
            overcommit.set_policy(bad)  # type: ignore[arg-type]
    assert Path("/proc/sys/vm/overcommit_memory").read_text() == before   # nothing written
    for kwargs in (dict(mem_total=-1), dict(mem_total=1.5), dict(hugetlb=True),
                   dict(swap_total="0"), dict(ratio=float("nan")), dict(page_size=0)):
        args = {"mem_total": 1 << 30, "hugetlb": 0, "swap_total": 0, **kwargs}
        with pytest.raises(InvalidArgument):
            overcommit.commit_limit(**args)  # type: ignore[arg-type]
    # mm/util.c: (RAM - hugetlb) pages * ratio / 100 + swap pages, in pages.
    assert overcommit.commit_limit(1 << 30, 0, PAGE, ratio=50) == (1 << 29) + PAGE
    for bad in (True, -1, 1.5):
        with pytest.raises(InvalidArgument, match="headroom"):
            overcommit.needed_for_headroom(bad)  # type: ignore[arg-type]


def test_validate_sections_are_checked():
    for bad in (True, 5, b"memory", [["memory"]], []):
        with pytest.raises(InvalidArgument, match="section"):
            validate.run(bad)  # type: ignore[arg-type]
    assert validate.run("memory").sections == ("memory",)


def test_exit_statuses_stay_the_documented_seven():
    """No new status for any of the above: README's table is the contract."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d) \| (.+) \|$", readme, re.M))
    assert {code for _, code, _ in CASES} <= {int(k) for k in table}
    assert "`--verbose`, which every command takes" in readme
