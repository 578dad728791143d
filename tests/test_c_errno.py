"""The C core's convention: every failure is a -errno from Python's errno module (never a
bare -1 or -2), with the detail a caller needs in an out-parameter, and limits read from C.
Pure: nothing here needs root or changes the system."""
from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from physmem._raw import dmapool, kpf, pageio, poolguard, procmaps
from physmem.errors import InvalidArgument, ParseError
from physmem.kpageflags import KPageFlags, summarize
from physmem.proc import _cparse

CSRC = Path(__file__).resolve().parent.parent / "csrc"
EMPTY = (1 << 64) - 1


def test_no_c_function_returns_a_bare_sentinel():
    if not CSRC.exists():
        pytest.skip("no source tree beside the tests (csrc/)")
    sentinel = re.compile(r"\breturn\s+\(?-\d+\)?\s*;")
    assert sentinel.search("    if (x) return -1;")  # the pattern sees one
    hits = [f"{p.name}:{i}: {line.strip()}" for p in sorted(CSRC.glob("*.c"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if sentinel.search(line)]
    assert hits == []


def test_the_counter_stops_with_enospc_when_full_and_einval_at_the_empty_key():
    # 4 slots hold 2 values before passing half full: the third distinct value stops it.
    c = kpf.CountTable(4)
    assert c.add_some(np.array([7, 7, 8, 9, 10], dtype=np.uint64), None, 5) == (-errno.ENOSPC, 3)
    assert c.used[0] == 2
    c = kpf.CountTable(8)
    assert c.add_some(np.array([5, EMPTY, 6], dtype=np.uint64), None, 3) == (-errno.EINVAL, 1)
    assert c.add_some(np.array([6, 6, 5], dtype=np.uint64), None, 3) == (2, 3)  # slots used
    # add() grows the table and goes on; it stops at the empty key and says where.
    c = kpf.CountTable(4)
    values = np.arange(100, dtype=np.uint64) % np.uint64(37)
    assert c.add(values, np.full(100, 2, dtype=np.uint64), 100) is None
    assert c.items() == {v: 2 * int((values == v).sum()) for v in range(37)}
    assert c.add(np.array([1, 2, EMPTY, 3], dtype=np.uint64), None, 4) == 2


def test_summary_of_a_file_grows_its_table_and_refuses_the_empty_key(tmp_path):
    """Through pm_count_pread_u64's stop codes: 10,000 distinct values outgrow the first
    table (-ENOSPC: grow and go on); an all-ones word cannot be counted (-EINVAL)."""
    values = np.concatenate([np.arange(10_000, dtype=np.uint64) << np.uint64(20),
                             np.full(5, 4, dtype=np.uint64)])
    path = tmp_path / "kpageflags"
    values.tofile(path)
    raw = np.frombuffer(path.read_bytes(), dtype="<u8")  # independent of physmem's reader
    keys, counts = np.unique(raw, return_counts=True)
    with KPageFlags(proc_root=str(tmp_path)) as kf:
        for threads in (1, 2):
            rows = kf.summary(threads=threads)
            assert sorted((r.flags, r.pages) for r in rows) == \
                sorted(zip(keys.tolist(), counts.tolist()))
    values[7] = EMPTY
    values.tofile(path)
    with KPageFlags(proc_root=str(tmp_path)) as kf:
        with pytest.raises(InvalidArgument, match="0xffffffffffffffff"):
            kf.summary(threads=1)
    with pytest.raises(InvalidArgument, match="0xffffffffffffffff"):
        summarize(values.view(np.int64))


def test_a_dma_pool_refused_says_why():
    assert dmapool.new(100, 10) == (-errno.EINVAL, None)      # not a multiple of 64
    assert dmapool.new(4096, 5) == (-errno.EINVAL, None)      # blocks below 64 bytes
    assert dmapool.new(1 << 40, 70)[0] == 0                   # capped at the size: fine
    ret, pool = dmapool.new(1 << 20, 12)
    assert ret == 0 and pool is not None
    assert dmapool.stats(pool) == (1 << 20, 0, 1 << 12, False)


def _parse(text: bytes, with_fields: bool, cap: int) -> procmaps.Result:
    c64 = np.empty((procmaps.C64_SMAPS if with_fields else procmaps.C64_MAPS, cap), np.uint64)
    c32 = np.empty((procmaps.C32_SMAPS if with_fields else procmaps.C32_MAPS, cap), np.uint32)
    c8 = np.empty((procmaps.C8_N, cap), np.uint8)
    values = np.empty((procmaps.MAXNAMES, cap), np.uint64) if with_fields else None
    return procmaps.parse(text, with_fields, c64, c32, c8, values)


def test_the_maps_parser_returns_errno_and_says_where():
    good = b"00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon\n"
    bad = b"00400000-zz r-xp 0 08:02 1 /x"
    res = _parse(good + bad + b"\n", False, 4)
    assert (res.n, res.err_code, res.err_line) == (-errno.EBADMSG, procmaps.EHEADER, 2)
    assert (res.err_off, res.err_len) == (len(good), len(bad))
    res = _parse(good * 3, False, 2)
    assert (res.n, res.err_code, res.err_line) == (-errno.ENOSPC, procmaps.ECAP, 3)
    res = _parse(b"Rss: 4 kB\n", True, 4)
    assert (res.n, res.err_code, res.err_line) == (-errno.EBADMSG, procmaps.EORPHAN, 1)
    keys = b"".join(b"Key%d: 1 kB\n" % i for i in range(procmaps.MAXNAMES + 1))
    res = _parse(good + keys, True, 4)
    assert (res.n, res.err_code) == (-errno.EOVERFLOW, procmaps.EKEYS)
    assert res.err_line == procmaps.MAXNAMES + 2
    assert _parse(good * 3, False, 3).n == 3


def test_parse_errors_reach_parseerror_and_short_lines_get_a_second_pass():
    # 17-byte lines: fewer than the first guess of capacity allows (-ENOSPC, then a retry).
    text = b"".join(b"%x-%x r--p 0 0:0 0\n" % (i, i + 1) for i in range(200))
    parsed = _cparse.parse(text, False, "/fixture/maps")
    assert parsed.n == 200
    assert parsed.c64[procmaps.C64_START].tolist() == list(range(200))
    with pytest.raises(ParseError) as info:
        _cparse.parse(text + b"1-2 r--p 0 0:0 0 name\nnonsense\n", False, "/fixture/maps")
    assert info.value.lineno == 202 and "/fixture/maps:202" in str(info.value)
    assert "malformed mapping line" in str(info.value)


def _gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_the_guardian_refuses_a_path_the_c_core_cannot_hold(tmp_path, start):
    """PM_CLAIM_PATH_MAX comes from C; a path of that many bytes is refused up front with
    ENAMETOOLONG (the guardian would exit without a word), one byte shorter starts one."""
    limit = poolguard.PATH_MAX
    claim = os.open(tmp_path / "claims", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        def path(n: int) -> str:
            return str(tmp_path / "lock").ljust(n, "x")   # absent: the guardian never locks

        def begin(lock: str, claim_path: str) -> tuple[int, int]:
            if start == "fork":
                return poolguard.fork(claim, os.fsencode(lock), os.fsencode(claim_path))
            return poolguard.spawn(claim, lock, claim_path)

        assert begin(path(limit), path(8)) == (-errno.ENAMETOOLONG, -1)
        assert begin(path(8), path(limit)) == (-errno.ENAMETOOLONG, -1)
        ret, sock = begin(path(limit - 1), path(limit - 1))
        assert ret == 0
        try:
            pid = poolguard.wait_ready(sock)
            assert pid > 0 and Path(f"/proc/{pid}").exists()
        finally:
            os.close(sock)  # EOF: it finds no lock file and exits
        assert _gone(pid)
    finally:
        os.close(claim)
