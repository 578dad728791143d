"""VmaList/SmapsList: columns agree with the records, records with a pure-Python reading."""
from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

import physmem.proc as proc
from physmem._raw import lib
from physmem.errors import ParseError
from physmem.proc import KIND_CODES, Device, Prot, VmaKind

from _proc_helpers import start_helper

DATA = Path(__file__).parent / "data" / "design_notes"

_LINE = re.compile(rb"([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([sp]) ([0-9a-f]+) "
                   rb"([0-9a-f]+):([0-9a-f]+) ([0-9]+) *(.*)", re.S)
_PSEUDO = {b"[heap]": VmaKind.HEAP, b"[stack]": VmaKind.STACK, b"[vdso]": VmaKind.VDSO,
           b"[vvar]": VmaKind.VVAR, b"[vvar_vclock]": VmaKind.VVAR,
           b"[vsyscall]": VmaKind.VSYSCALL}
_PREFIX = ((b"[stack:", VmaKind.THREAD_STACK), (b"[anon:", VmaKind.ANON_NAMED),
           (b"[anon_shmem:", VmaKind.ANON_SHMEM))


def ref_vma(line: bytes) -> tuple:
    """One maps line the slow, obvious way (regex and str methods), as a Vma-shaped tuple."""
    m = _LINE.fullmatch(line)
    assert m, line
    name, deleted = m[11], False
    if not name:
        kind = VmaKind.ANONYMOUS
    elif name.startswith(b"/"):
        kind = VmaKind.FILE
        if name.endswith(b" (deleted)"):
            name, deleted = name[:-10], True
        name = name.replace(b"\\012", b"\n")
    else:
        kind = _PSEUDO.get(name) or next((k for p, k in _PREFIX if name.startswith(p)),
                                         VmaKind.OTHER)
    prot = Prot((m[3] == b"r") * 1 | (m[4] == b"w") * 2 | (m[5] == b"x") * 4)
    return (int(m[1], 16), int(m[2], 16), prot, m[6] == b"s", int(m[7], 16),
            Device(int(m[8], 16), int(m[9], 16)), int(m[10]), os.fsdecode(name), kind, deleted)


def ref_maps(text: bytes) -> list[tuple]:
    return [ref_vma(line) for line in text.split(b"\n") if line]


def ref_smaps(text: bytes) -> list[tuple]:
    """(vma tuple, fields dict, vm_flags) per mapping."""
    out: list = []
    for line in text.split(b"\n"):
        if not line:
            continue
        if _LINE.fullmatch(line):
            out.append((ref_vma(line), {}, frozenset()))
            continue
        key, _, value = line.partition(b":")
        if key == b"VmFlags":
            out[-1] = out[-1][:2] + (frozenset(value.decode().split()),)
            continue
        parts = value.split()
        out[-1][1][key.decode()] = int(parts[0]) * (1024 if parts[1:] == [b"kB"] else 1)
    return out


def readable(name: str) -> list[bytes]:
    """The ``name`` file of every process we may read (and /proc/self), as bytes."""
    texts = []
    for pid in ["self"] + [d for d in os.listdir("/proc") if d.isdigit()]:
        try:
            texts.append(Path(f"/proc/{pid}/{name}").read_bytes())
        except OSError:
            continue
    return texts


@pytest.fixture(scope="module")
def stopped():
    p, tmpdir = start_helper(600)
    os.kill(p.pid, signal.SIGSTOP)
    yield p.pid
    p.kill()
    p.wait()
    shutil.rmtree(tmpdir, ignore_errors=True)


def check_columns(vl) -> None:
    recs = list(vl)
    assert vl.starts.tolist() == [v.start for v in recs]
    assert vl.ends.tolist() == [v.end for v in recs]
    assert vl.sizes.tolist() == [v.size for v in recs]
    assert vl.offsets.tolist() == [v.offset for v in recs]
    assert vl.inodes.tolist() == [v.inode for v in recs]
    assert list(zip(vl.majors.tolist(), vl.minors.tolist())) == [v.device for v in recs]
    assert vl.prots.tolist() == [int(v.prot) for v in recs]
    assert vl.shared.tolist() == [v.shared for v in recs]
    assert vl.deleted.tolist() == [v.deleted for v in recs]
    assert [KIND_CODES[k] for k in vl.kinds.tolist()] == [v.kind for v in recs]
    assert vl.paths == [v.path for v in recs]


def test_maps_equal_reference_reading(stopped):
    texts = readable("maps") + [Path(f"/proc/{stopped}/maps").read_bytes(),
                                (DATA / "2442" / "maps").read_bytes()]
    assert len(texts) >= 3
    for text in texts:
        vl = proc.parse_maps(text)
        assert vl == ref_maps(text)
        check_columns(vl)
    # the helper has the odd names: a space, an escaped newline, a deleted file
    vl = proc.parse_maps(texts[-2])
    assert any("\n" in p for p in vl.paths) and vl.deleted.any()


def test_smaps_equal_reference_reading(stopped):
    texts = readable("smaps") + [Path(f"/proc/{stopped}/smaps").read_bytes(),
                                 (DATA / "2442" / "smaps").read_bytes()]
    for text in texts:
        sl = proc.parse_smaps(text)
        ref = ref_smaps(text)
        assert [(s.vma, s.fields, s.vm_flags) for s in sl] == ref
        check_columns(sl)
        for key in sl.keys:
            assert sl.column(key).tolist() == [f.get(key, 0) for _, f, _ in ref], key
            assert sl.has_key(key).tolist() == [key in f for _, f, _ in ref], key
        assert sl.values.shape == (len(sl), len(sl.keys))
        for name in {n for _, _, fl in ref for n in fl}:
            assert sl.has_vm_flag(name).tolist() == [name in fl for _, _, fl in ref]
        masks = sl.vm_flags_mask.tolist()
        assert [{n for k, n in enumerate(sl.vm_flag_names) if m >> k & 1} for m in masks] == \
            [set(fl) for _, _, fl in ref]


def test_kind_codes_follow_the_c_parser():
    assert len(KIND_CODES) == lib.PMPROC_KIND_OTHER + 1
    for code, kind in enumerate(KIND_CODES):
        assert getattr(lib, f"PMPROC_KIND_{kind.name}") == code


def test_sequence_behaviour():
    vl = proc.parse_maps((DATA / "2442" / "maps").read_bytes())
    first, last = vl[0], vl[-1]
    assert vl[0] is first and vl[len(vl) - 1] is last    # built once, then cached
    recs = list(vl)
    assert recs[0] is first and recs == vl and vl == recs and vl == vl[:]
    assert vl[2:5] == recs[2:5] and list(reversed(vl)) == recs[::-1]
    assert vl.index(recs[3]) == 3 and recs[4] in vl
    assert vl != recs[:-1] and vl != recs[:-1] + [recs[-1]._replace(inode=1)]
    with pytest.raises(IndexError):
        vl[len(vl)]
    with pytest.raises(ValueError):
        vl.starts[0] = 0     # columns are the records' source: read-only
    assert proc.parse_maps(b"") == [] and not proc.parse_smaps(b"")


def test_smaps_with_keys_missing_in_some_mappings():
    text = (b"1000-2000 r--p 00000000 00:00 0\nSize: 4 kB\nRss: 4 kB\nVmFlags: rd mr\n"
            b"2000-3000 rw-p 00000000 00:00 0\nSize: 4 kB\nFuture: 7\nVmFlags: rd wr\n")
    sl = proc.parse_smaps(text)
    assert sl.keys == ("Size", "Rss", "Future")
    assert sl.column("Rss").tolist() == [4096, 0] and sl.has_key("Rss").tolist() == [True, False]
    assert sl[1].fields == {"Size": 4096, "Future": 7} and "Rss" not in sl[1].keys
    assert sl.column("Future").tolist() == [0, 7]
    assert sl.has_vm_flag("wr").tolist() == [False, True] and sl[0].vm_flags == {"rd", "mr"}
    with pytest.raises(KeyError):
        sl.column("Pss")


def test_vm_flags_beyond_the_name_table():
    # More distinct names than mask bits: those mappings fall back to the text.
    head = b"%x-%x rw-p 00000000 00:00 0\n"
    text = b"".join(head % (i * 4096, i * 4096 + 4096) + b"VmFlags: rd f%d\n" % i
                    for i in range(1, 80))
    sl = proc.parse_smaps(text)
    assert [s.vm_flags for s in sl] == [{"rd", f"f{i}"} for i in range(1, 80)]
    assert sl.has_vm_flag("f70").tolist() == [i == 70 for i in range(1, 80)]
    assert sl.has_vm_flag("rd").all()


def test_key_table_is_per_file():
    # A file with many distinct (junk) keys must not make later, normal files fail.
    head = b"1000-2000 r--p 00000000 00:00 0\n"
    junk = head + b"".join(b"K%d: 1\n" % i for i in range(60))
    assert len(proc.parse_smaps(junk)[0].keys) == 60
    too_many = head + b"".join(b"K%d: 1\n" % i for i in range(65))
    with pytest.raises(ParseError):
        proc.parse_smaps(too_many)
    # A normal file still parses whole: the first mapping has the keys the kernel lists.
    first = open("/proc/self/smaps").read().split("\n")[1:]
    names = [line.split(":")[0] for line in first[:first.index(next(
        line for line in first if line.startswith("VmFlags:")))]]
    assert proc.smaps()[0].keys == tuple(names)


def test_bad_line_raises_at_parse_time_not_on_access():
    text = (DATA / "2442" / "smaps").read_bytes()
    lines = text.split(b"\n")
    lines[-3] = b"Rss: lots"
    with pytest.raises(ParseError) as info:
        proc.parse_smaps(b"\n".join(lines), "/p/smaps")
    assert info.value.lineno == len(lines) - 2 and info.value.line == b"Rss: lots"
    maps_lines = (DATA / "2442" / "maps").read_bytes().split(b"\n")
    maps_lines[-2] = maps_lines[-2].replace(b"-", b"+", 1)
    with pytest.raises(ParseError) as info:
        proc.parse_maps(b"\n".join(maps_lines))
    assert info.value.lineno == len(maps_lines) - 1


def test_column_sums_match_records():
    sl = proc.smaps()
    for key in ("Rss", "Pss", "Private_Dirty"):
        assert int(sl.column(key).sum()) == sum(s.get(key, 0) for s in sl)
    big = np.argmax(sl.column("Rss"))
    assert sl[int(big)].rss == int(sl.column("Rss")[big])
