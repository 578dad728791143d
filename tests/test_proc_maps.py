"""maps/smaps/smaps_rollup/numa_maps against each other, map_files, and a stopped helper."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

import physmem.proc as proc
from physmem.errors import ParseError, PermissionDenied, ProcessGone
from physmem.findings import Severity
from physmem.proc import Device, Prot, Vma, VmaKind

from _proc_helpers import start_helper

DATA = Path(__file__).parent / "data" / "design_notes"


@pytest.fixture(scope="module")
def stopped():
    """A helper stopped with SIGSTOP so nothing moves between reads."""
    p, tmpdir = start_helper(600)
    os.kill(p.pid, signal.SIGSTOP)
    yield p.pid, tmpdir
    p.kill()
    p.wait()
    shutil.rmtree(tmpdir, ignore_errors=True)


def all_pids():
    return [int(x) for x in os.listdir("/proc") if x.isdigit()]


PER_PID = [proc.maps, proc.smaps, proc.smaps_rollup, proc.numa_maps, proc.stat, proc.statm,
           proc.status, proc.oom]


@pytest.mark.root  # other users' /proc/PID files are readable by root only
def test_every_process_parses():
    parsed = 0
    for pid in all_pids():
        for fn in PER_PID:
            try:
                fn(pid)
                parsed += 1
            except (ProcessGone, PermissionDenied):
                # exited meanwhile, or the sandbox's init that even root may not ptrace-read
                continue
    assert parsed >= len(PER_PID) * (len(all_pids()) - 5)


def test_maps_and_smaps_same_ranges(stopped):
    pid, _ = stopped
    m, s = proc.maps(pid), proc.smaps(pid)
    assert len(m) > 300
    assert [v for v in m] == [x.vma for x in s]
    assert all(x.size == x.vma.size for x in s)


def test_smaps_sum_equals_rollup(stopped):
    pid, _ = stopped
    s = proc.smaps(pid)
    rollup = proc.smaps_rollup(pid)
    assert rollup["Rss"] > 0
    for key, total in rollup.items():
        if key.startswith("Pss_"):
            continue
        summed = sum(x.get(key, 0) for x in s)
        if "Pss" in key:
            # smaps rounds each mapping's Pss down to kB; the rollup rounds once at the end
            assert abs(summed - total) <= 1024 * len(s), key
        else:
            assert summed == total, key
    assert rollup["Pss_Anon"] + rollup["Pss_File"] + rollup["Pss_Shmem"] == rollup["Pss"]
    # Pss of shared library pages moves as other processes come and go: compare the rest
    totals = proc.memory_totals(pid)
    assert {k: v for k, v in totals.items() if "Pss" not in k} == \
        {k: v for k, v in rollup.items() if "Pss" not in k}


def test_smaps_rollup_equals_its_raw_text(stopped):
    """Every line of the file, read with a plain file object and split here, is one key of
    the dict: kB values in bytes, in the kernel's order (the one-record path of the parser)."""
    pid, _ = stopped
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        header, *lines = f.read().decode().splitlines()
    assert header.endswith("[rollup]")
    expect = {}
    for line in lines:
        key, value = line.split(":")
        number, unit = value.split()
        assert unit == "kB"
        expect[key] = int(number) * 1024
    rollup = proc.smaps_rollup(pid)
    assert list(rollup) == list(expect) and rollup == expect


def test_read_bytes_reads_a_file_larger_than_its_first_read(stopped):
    """The reader's later reads (a stopped process's smaps, hundreds of kB) add up to what a
    plain file object reads."""
    from physmem._readcore import _FIRST_READ
    from physmem.proc._read import read_bytes

    pid, _ = stopped
    path = f"/proc/{pid}/smaps"
    with open(path, "rb") as f:
        expect = f.read()
    assert len(expect) > 2 * _FIRST_READ
    assert read_bytes(path) == expect


@pytest.mark.root  # map_files needs CAP_SYS_ADMIN
def test_maps_match_map_files(stopped, tmp_path):
    pid, tmpdir = stopped
    for v in proc.maps(pid):
        link = f"/proc/{pid}/map_files/{v.start:x}-{v.end:x}"
        if v.kind is VmaKind.FILE:
            target = os.readlink(link)
            assert target == v.path + (" (deleted)" if v.deleted else "")
            assert os.stat(link).st_ino == v.inode
        else:
            assert not os.path.lexists(link)
    by_path = {v.path: v for v in proc.maps(pid)}
    assert by_path[os.path.join(tmpdir, "with space")].prot == Prot.READ
    assert os.path.join(tmpdir, "new\nline") in by_path
    assert by_path[os.path.join(tmpdir, "gone")].deleted


def test_helper_layout(stopped):
    pid, _ = stopped
    vmas = proc.maps(pid)
    kinds = {v.kind for v in vmas}
    assert {VmaKind.FILE, VmaKind.ANONYMOUS, VmaKind.STACK, VmaKind.VDSO} <= kinds
    assert proc.check_maps(vmas) == []
    # mmap(-1) is MAP_SHARED anonymous memory, which the kernel names "/dev/zero (deleted)";
    # the mprotect'ed pages alternate r--s / rw-s
    anon = [v for v in vmas if v.path == "/dev/zero" and v.deleted and v.shared
            and v.size == 4096]
    assert len(anon) >= 290
    assert {Prot.READ, Prot.READ | Prot.WRITE} <= {v.prot for v in anon}


def test_numa_maps_add_up(stopped):
    pid, _ = stopped
    rss = {x.start: x.rss for x in proc.smaps(pid)}
    nm = proc.numa_maps(pid)
    assert nm
    checked = 0
    for n in nm:
        total = n.mapped or max(n.anon, n.dirty)
        assert n.pages == total, n
        if n.nodes and not n.huge:
            assert n.pages * n.kernelpagesize == rss[n.address], n
            checked += 1
    assert checked > 100
    nodes = {int(d[4:]) for d in os.listdir("/sys/devices/system/node") if d[4:].isdigit()}
    assert {k for n in nm for k in n.nodes} <= nodes


def test_comm_with_parens_and_status(stopped):
    pid, _ = stopped
    st = proc.stat(pid)
    with open(f"/proc/{pid}/comm") as f:
        assert st.comm == f.read().rstrip("\n") == "a) (b c"
    assert st.state == "T" and st.pid == pid and st.ppid == os.getpid()
    assert st.processor in os.sched_getaffinity(pid)
    status = proc.status(pid)
    assert status["Cpus_allowed_list"] == os.sched_getaffinity(pid)
    assert status["VmRSS"] == proc.statm(pid).resident
    assert status["Name"] == "a) (b c"
    # stat reads the per-CPU rss counters approximately, statm sums them
    assert abs(st.rss * os.sysconf("SC_PAGE_SIZE") - proc.statm(pid).resident) <= 4 << 20


def test_process_gone():
    p, tmpdir = start_helper(2)
    pid = p.pid
    p.kill()
    p.wait()
    shutil.rmtree(tmpdir, ignore_errors=True)
    for fn in (proc.maps, proc.smaps, proc.stat):
        with pytest.raises(ProcessGone) as info:
            fn(pid)
        assert isinstance(info.value, ProcessLookupError) and info.value.pid == pid


def test_design_notes_samples():
    root = str(DATA)
    m = proc.maps(2442, proc_root=root)
    assert len(m) == 15 and m[0].path == "/bin/busybox" and m[0].device == (8, 3)
    assert m[5].kind is VmaKind.HEAP and m[-1].kind is VmaKind.VDSO and m[-2].kind is VmaKind.VVAR
    assert proc.check_maps(m) == []
    s = proc.smaps(2442, proc_root=root)
    assert [x.vma for x in s] == m
    assert s[1]["Size"] == 624 * 1024 and s[1].vm_flags == {"rd", "ex", "mr", "mw", "me", "dw"}
    assert s[0].thp_eligible is False and s[0].protection_key is None
    nm = proc.numa_maps(2442, proc_root=root)
    assert nm[0].file == "/bin/busybox" and nm[0].mapmax == 10 and nm[5].heap
    assert nm[-1].nodes == {} and nm[-1].kernelpagesize is None
    assert [n.address for n in nm] == [v.start for v in m]
    b = proc.buddyinfo(proc_root=root)
    assert b[0].free[10] == 3 and b[2].zone == "Normal"


def test_octal_escape_and_deleted_parse():
    line = (b"7f0951bb3000-7f0951bb6000 rw-s 00001000 fd:01 42            "
            b"/tmp/a b\\012c (deleted)\n"
            b"7f0951bb6000-7f0951bb7000 rw-p 00000000 00:00 0       [anon:my heap]\n"
            b"7f0951bb7000-7f0951bb8000 rw-s 00000000 00:01 9       [anon_shmem:x]\n"
            b"7f0951bb8000-7f0951bb9000 rw-p 00000000 00:00 0       [stack:123]\n"
            b"7f0951bb9000-7f0951bba000 r--p 00000000 fd:01 7       /caf\xe9\n")
    a, b, c, d, e = proc.parse_maps(line)
    assert a.path == "/tmp/a b\nc" and a.deleted and a.shared and a.offset == 4096
    assert a.device == (0xfd, 1)
    assert (b.kind, b.path) == (VmaKind.ANON_NAMED, "[anon:my heap]")
    assert c.kind is VmaKind.ANON_SHMEM and d.kind is VmaKind.THREAD_STACK
    assert os.fsencode(e.path) == b"/caf\xe9"


def test_bad_lines_name_file_and_line():
    with pytest.raises(ParseError) as info:
        proc.parse_maps(b"00400000-00401000 r-xp 00000000 08:01 1 /bin/x\nnonsense\n", "/p/maps")
    assert info.value.lineno == 2 and "/p/maps:2" in str(info.value)
    with pytest.raises(ParseError):
        proc.parse_smaps(b"Rss: 4 kB\n")
    with pytest.raises(ParseError):
        proc.parse_smaps(b"00400000-00401000 r-xp 00000000 08:01 1\nRss: 4 MB\n")


@pytest.mark.parametrize("fn,text", [
    # Numbers no kernel writes: thousands of hex digits would parse, and repr() then raise
    (proc.parse_numa_maps, b"7f" + b"a" * 4000 + b" default anon=1\n"),
    (proc.parse_numa_maps, b"7f0000 default anon=18446744073709551616\n"),   # 2**64
    (proc.parse_numa_maps, b"7f0000 default anon=-1\n"),
    (proc.parse_numa_maps, b"7f0000 default dirty=1_0\n"),
    (proc.parse_numa_maps, b"+7f0000 default\n"),
    (proc.parse_numa_maps, b"0x7f0000 default\n"),
    (proc.parse_numa_maps, b"7f0000 default N99999999999=1\n"),
    (proc.parse_numa_maps, b"7f0000 default kernelpagesize_kB=18014398509481984\n"),  # 2**54
    (proc.parse_maps, b"7f" + b"0" * 15 + b"-7f" + b"0" * 15 + b" rw-p 00000000 00:00 0\n"),
    (proc.parse_maps, b"2000-1000 rw-p 00000000 00:00 0\n"),   # end before start
    (proc.parse_smaps, b"1000-2000 rw-p 00000000 00:00 0\nRss: 18014398509481984 kB\n"),
    (proc.parse_buddyinfo, b"Node 0, zone DMA 1 " + b"9" * 30 + b"\n"),
    (proc.parse_buddyinfo, b"Node 0, zone DMA 1 -2\n"),
    (proc.parse_zoneinfo, b"Node 0, zone DMA\n  pages free 18446744073709551616\n"),
    (proc.parse_zoneinfo, b"Node 0, zone DMA\n  protection: (0, -1)\n"),
    (proc.parse_pagetypeinfo, b"Page block order: 1_0\nPages per block: 512\n"),
    # Orders are shift counts: more than 64 of them (or an order of 64) no kernel prints.
    (proc.parse_buddyinfo, b"Node 0, zone DMA" + b" 1" * 65 + b"\n"),
    (proc.parse_pagetypeinfo, b"Page block order: 64\nPages per block: 512\n"),
    (proc.parse_pagetypeinfo, b"Page block order: 9\nPages per block: 512\n"
                              b"Node 0, zone DMA, type Movable" + b" 1" * 65 + b"\n"),
    (proc.parse_iomem, b"00002000-00001000 : System RAM\n"),   # last before first
], ids=lambda v: v.__name__ if callable(v) else repr(v[:30]))
def test_numbers_must_fit_64_bits(fn, text):
    with pytest.raises(ParseError):
        fn(text)


def test_numbers_at_the_64_bit_limit_parse():
    top = (1 << 64) - 1
    (n,) = proc.parse_numa_maps(b"ffffffffffffffff default anon=%d N0=%d kernelpagesize_kB=4\n"
                                % (top, top))
    assert (n.address, n.anon, n.nodes, n.kernelpagesize) == (top, top, {0: top}, 4096)
    assert repr(n)
    (v,) = proc.parse_maps(b"0-ffffffffffffffff rw-p 00000000 00:00 %d\n" % top)
    assert (v.start, v.end, v.inode, v.size) == (0, top, top, top)
    (z,) = proc.parse_zoneinfo(b"Node 0, zone DMA\n  pages free %d\n" % top)
    assert z.free == top
    (b,) = proc.parse_buddyinfo(b"Node 0, zone DMA" + b" 1" * 64 + b"\n")
    assert b.free == (1,) * 64
    assert proc.parse_pagetypeinfo(b"Page block order: 63\nPages per block: 1\n").pageblock_order == 63
    (r,) = proc.parse_iomem(b"00001000-00001000 : one byte\n")
    assert (r.start, r.end) == (0x1000, 0x1001)


def test_maps_rules_name_the_mapping_at_fault():
    def vma(start, end, path, prot, kind):
        return Vma(start, end, prot, False, 0, Device(0, 0), 0, path, kind, False)

    stack = vma(0x7000, 0x8000, "[stack]", Prot.READ | Prot.WRITE, VmaKind.STACK)
    good = [stack, vma(0x8000, 0x9000, "[vvar]", Prot.READ, VmaKind.VVAR),
            vma(0x9000, 0xA000, "[vdso]", Prot.READ | Prot.EXEC, VmaKind.VDSO)]
    assert proc.check_maps(good) == []
    second = stack._replace(start=0xA000, end=0xB000, prot=Prot.READ)
    found = proc.check_maps(good + [second])
    assert [(f.id, f.section, f.severity, f.subject) for f in found] == [
        ("maps.duplicate", "maps", Severity.ERROR, second),
        ("maps.permissions", "maps", Severity.ERROR, second)]
    assert "[stack] is r--p, expected rw-p" in found[1].message


def _text_paths(text: bytes) -> list[str]:
    """The name column of maps text, read with a plain split (not physmem's parser)."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        name = parts[5] if len(parts) == 6 else b""
        if name.startswith(b"/"):
            name = name.removesuffix(b" (deleted)").replace(b"\\012", b"\n")
        out.append(os.fsdecode(name))
    return out


def test_paths_beyond_the_name_table():
    # The parser shares each distinct name between its mappings through a table of 2,048
    # names; more than that, repeats far apart and right after each other, nameless
    # mappings in between and a file and its deleted twin must all keep their own path.
    lines = []
    for i in range(5000):
        name = [b"/lib/l%d.so" % (i % 3000), b"", b"/lib/l%d.so" % (i % 3000),
                b"[anon:a%d]" % (i % 7), b"/tmp/f%d (deleted)" % (i % 5), b"/tmp/f%d" % (i % 5),
                b"/x\\012y", b"[heap]"][i % 8]
        lines.append(b"%x-%x r--p 00000000 08:01 %d   %s" % (i * 4096, i * 4096 + 4096, i, name))
    text = b"\n".join(lines) + b"\n"
    listed = list(proc.parse_maps(text))
    one_by_one = proc.parse_maps(text)
    assert [v.path for v in listed] == _text_paths(text)
    assert [one_by_one[i] for i in range(len(one_by_one))] == listed
    assert [v.deleted for v in listed] == [b"(deleted)" in ln for ln in lines]


def test_smaps_values_with_odd_spacing():
    # The parser's fast path takes the usual "Key:   <n> kB" line; tabs, a bare number, a key
    # out of the usual order and a last line without newline go the general way. Every
    # value must still be what a plain split of the text says.
    text = (b"1000-2000 rw-p 00000000 00:00 0\nSize:      4 kB\nRss:\t 4 kB\nPss: 2 kB\n"
            b"THPeligible:    1\nVmFlags: rd wr\n"
            b"2000-3000 rw-p 00000000 00:00 0\nSize:      8 kB\nPss:   0 kB\nRss: 8 kB\n"
            b"THPeligible: 0\nVmFlags: rd\n"
            b"3000-4000 rw-p 00000000 00:00 0\nSize: 12 kB\nRss:                12 kB\n"
            b"Pss: 18014398509481983 kB\nTHPeligible: 1")
    expect: list[dict[str, int]] = []
    for line in text.splitlines():
        if b"-" in line.split()[0]:
            expect.append({})
        elif not line.startswith(b"VmFlags"):
            key, rest = line.split(b":", 1)
            num, *unit = rest.split()
            expect[-1][key.decode()] = int(num) * (1024 if unit == [b"kB"] else 1)
    assert [s.fields for s in proc.parse_smaps(text)] == expect
    assert [s.vm_flags for s in proc.parse_smaps(text)] == [{"rd", "wr"}, {"rd"}, frozenset()]
