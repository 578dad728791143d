"""buddyinfo/pagetypeinfo/zoneinfo/vmstat against each other, and oom_score_adj."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import physmem.proc as proc
from physmem.errors import InvalidArgument, ProcessGone



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


@pytest.mark.root  # /proc/pagetypeinfo is mode 0400
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


def test_lowering_oom_score_adj_needs_privilege(run_unprivileged):
    r = run_unprivileged("""
        from physmem import proc
        try:
            proc.set_oom_score_adj(None, -500)
        except Exception as exc:
            print(type(exc).__name__, isinstance(exc, PermissionError))
    """)
    assert r.stdout.split() == ["PermissionDenied", "True"], r.stderr


# --- /proc/PID/status: one type per field, checked against a plain reading of the raw file ---

_VOLATILE = {"State", "VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon",
             "RssFile", "RssShmem", "VmData", "VmStk", "VmExe", "VmLib", "VmPTE", "VmSwap",
             "HugetlbPages", "Threads", "SigQ", "SigPnd", "ShdPnd", "FDSize",
             "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"}


def _expand(text):
    # The plain "a-b,c" form that /proc/PID/status writes.
    out = set()
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return frozenset(out)


def _by_hand(raw: bytes) -> dict:
    """What proc_pid_status(5) says each field is, read without physmem."""
    out = {}
    for line in raw.decode("utf-8", "surrogateescape").splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key.startswith(("Sig", "Shd", "Cap")) and key != "SigQ" or key in (
                "Cpus_allowed", "Mems_allowed"):
            out[key] = int(value.replace(",", ""), 16)
        elif key == "Umask":
            out[key] = int(value, 8)
        elif key == "untag_mask":
            out[key] = int(value, 0)
        elif key.endswith("_list"):
            out[key] = _expand(value)
        elif key in ("Uid", "Gid", "Groups", "NStgid", "NSpid", "NSpgid", "NSsid"):
            out[key] = tuple(map(int, value.split()))
        elif key == "SigQ":
            out[key] = tuple(map(int, value.split("/")))
        elif key.startswith("x86_Thread_features"):
            out[key] = tuple(value.split())
        elif value.endswith(" kB"):
            out[key] = int(value[:-3]) * 1024
        elif key in ("Name", "State") or key.startswith("Speculation"):
            out[key] = value
        else:
            out[key] = int(value)
    return out


def test_status_matches_raw_file_for_every_process():
    types: dict[str, set] = {}
    checked = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                raw = f.read()
            parsed = proc.status(pid)
            st = proc.stat(pid)
            with open(f"/proc/{pid}/status", "rb") as f:
                after = _by_hand(f.read())
        except (FileNotFoundError, ProcessLookupError, ProcessGone):
            continue  # exited while we looked
        expected = _by_hand(raw)
        # A field that differs between the two raw reads moved meanwhile (a kernel worker
        # names its current work item): compared only where it held still.
        moved = {k for k in expected if after.get(k) != expected[k]}
        # The bytes and the parse of the same bytes agree on every field...
        assert proc.parse_status(raw) == expected, pid
        # ... and a fresh read on the fields that do not move while a process runs.
        assert parsed.keys() == expected.keys(), pid
        for key in expected.keys() - _VOLATILE - moved:
            assert parsed[key] == expected[key], (pid, key, parsed[key], expected[key])
        # stat prints the classic signals only (sig[0] & 0x7fffffff, decimal).
        assert parsed["SigIgn"] & 0x7FFFFFFF == st.sigignore, pid
        assert parsed["SigCgt"] & 0x7FFFFFFF == st.sigcatch, pid
        assert parsed["SigBlk"] & 0x7FFFFFFF == st.blocked, pid
        for key, value in parsed.items():
            types.setdefault(key, set()).add(type(value))
        checked += 1
    assert checked >= 10
    assert {k: t for k, t in types.items() if len(t) > 1} == {}
    assert types["SigIgn"] == {int} and types["Umask"] == {int}
    assert types["Cpus_allowed_list"] == {frozenset} and types["NSpid"] == {tuple}


def test_status_masks_by_example():
    raw = (b"Name:\tx\nUmask:\t0022\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000004440\n"
           b"SigBlk:\t0000000000010000\nCapEff:\t000001ffffffffff\n"
           b"Cpus_allowed:\tff,00000003\nCpus_allowed_list:\t0-1,32-39\n"
           b"Mems_allowed:\t00000000,00000001\nNSpid:\t12\t1\nSigQ:\t0/96365\n")
    s = proc.parse_status(raw)
    assert s["Umask"] == 0o22 == 18
    assert s["SigIgn"] == 0x1000 == 4096
    assert s["SigCgt"] == 0x4440 == 17472 and s["SigBlk"] == 0x10000
    assert s["CapEff"] == (1 << 41) - 1
    assert s["Cpus_allowed"] == 0xFF00000003
    assert s["Cpus_allowed_list"] == {0, 1, *range(32, 40)}
    assert s["Mems_allowed"] == 1 and s["NSpid"] == (12, 1) and s["SigQ"] == (0, 96365)


def test_iomem_matches_raw_file():
    # The raw file re-read with a regex: every line, its range, name and nesting.
    import re

    with open("/proc/iomem", "rb") as f:
        raw = f.read().decode()
    want = []
    for line in raw.splitlines():
        m = re.fullmatch(r"( *)([0-9a-f]+)-([0-9a-f]+) : (.*)", line)
        assert m, line
        want.append((int(m[2], 16), int(m[3], 16) + 1, m[4], len(m[1]) // 2))
    assert [tuple(r) for r in proc.iomem()] == want
    assert any(r.name == "System RAM" and r.depth == 0 for r in proc.iomem())


def test_iomem_odd_line_is_parse_error_with_its_line():
    from physmem.errors import ParseError

    with pytest.raises(ParseError) as info:
        proc.parse_iomem(b"00000000-00000fff : Reserved\nnonsense\n", "iomem")
    assert info.value.lineno == 2 and info.value.path == "iomem"


def test_mounts_agree_with_the_kernel_and_undo_escapes(is_root, tmp_path, request):
    # Root: mounts a tmpfs at a path with a space.
    target = tmp_path / "a b\\c"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "physmem test", str(target)],
                   check=True)
    request.addfinalizer(lambda: subprocess.run(["umount", str(target)], check=True))
    mounts = proc.mounts()
    # Every mount point the kernel lists is a mount point, by the kernel's own stat().
    assert all(os.path.ismount(m.path) for m in mounts if os.path.exists(m.path))
    mine = [m for m in mounts if m.path == str(target)]
    assert len(mine) == 1 and mine[0].fstype == "tmpfs" and mine[0].source == "physmem test"
    assert "size=1024k" in mine[0].options
    assert proc.mounts(pid=os.getpid()) == mounts


def test_status_odd_field_costs_that_field_only():
    from physmem.errors import ParseError

    data = b"Name:\tx\nCpus_allowed_list:\t0-3\nMems_allowed_list:\t?\n"
    with pytest.raises(ParseError):
        proc.parse_status(data, "status")
    skipped: list[str] = []
    got = proc.parse_status(data, "status", skipped=skipped)
    assert got == {"Name": "x", "Cpus_allowed_list": frozenset(range(4))}
    assert len(skipped) == 1 and "Mems_allowed_list" in skipped[0]


def test_cpu_flags_match_raw_file():
    with open("/proc/cpuinfo") as f:
        lines = [line for line in f if line.startswith("flags")]
    want = set(lines[0].split(":", 1)[1].split()) if lines else set()
    assert proc.cpu_flags() == want
