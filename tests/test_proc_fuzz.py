"""Random and mutated input: the parsers may only raise ParseError."""
from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings, strategies as st

import physmem.proc as proc
from physmem.errors import ParseError

DATA = Path(__file__).parent / "data" / "design_notes"
SAMPLES = {
    proc.parse_maps: (DATA / "2442" / "maps").read_bytes(),
    proc.parse_smaps: (DATA / "2442" / "smaps").read_bytes()[:3000],
    proc.parse_numa_maps: (DATA / "2442" / "numa_maps").read_bytes(),
    proc.parse_buddyinfo: (DATA / "buddyinfo").read_bytes(),
    proc.parse_meminfo: b"MemTotal:  1 kB\nHugePages_Total: 2\n",
    proc.parse_vmstat: b"nr_free_pages 5\npgfault 7\n",
    proc.parse_stat: b"1 (a) b) S 0 1 1 0 -1 4194560 " + b"0 " * 45 + b"\n",
    proc.parse_status: b"Name:\tx\nVmRSS:\t  4 kB\nCpus_allowed_list:\t0-3\n",
    proc.parse_zoneinfo: b"Node 0, zone DMA\n  pages free 3\n  min 1\n  protection: (0, 1)\n",
    proc.parse_pagetypeinfo: b"Page block order: 9\nPages per block: 512\n",
}


def _only_parse_errors(fn, data):
    try:
        result = fn(data)
    except ParseError:
        return
    # What parses must be usable: printable, and every number what the kernel could print.
    repr(result)
    for n in _ints(result):
        assert -(1 << 63) <= n < 1 << 64, (fn.__name__, data, n)


def _ints(value):
    """Every int inside a parsed result (records, lists, tuples, dicts), bools aside."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes, float)):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _ints(k)
            yield from _ints(v)
    elif hasattr(value, "_asdict"):
        yield from _ints(tuple(value))
    elif isinstance(value, (list, tuple)) or hasattr(value, "__iter__"):
        for v in value:
            yield from _ints(v)


# Lines the kernel could print, with numbers of any length: the 64-bit bound is found by
# search, not only by mutation luck.
_DIGITS = st.text("0123456789", min_size=1, max_size=40).map(str.encode)
_HEXDIGITS = st.text("0123456789abcdef", min_size=1, max_size=40).map(str.encode)


@settings(max_examples=300, deadline=None)
@given(addr=_HEXDIGITS, count=_DIGITS, node=_DIGITS, kps=_DIGITS,
       key=st.sampled_from([b"anon", b"dirty", b"mapped", b"mapmax", b"active", b"writeback"]))
def test_numa_maps_numbers(addr, count, node, kps, key):
    line = b"%s default %s=%s N%s=%s kernelpagesize_kB=%s\n" % (addr, key, count, node, count, kps)
    _only_parse_errors(proc.parse_numa_maps, line)


@settings(max_examples=300, deadline=None)
@given(start=_HEXDIGITS, end=_HEXDIGITS, inode=_DIGITS, kb=_DIGITS)
def test_maps_and_smaps_numbers(start, end, inode, kb):
    header = b"%s-%s rw-p 00000000 00:00 %s\n" % (start, end, inode)
    _only_parse_errors(proc.parse_maps, header)
    _only_parse_errors(proc.parse_smaps, header + b"Rss: %s kB\n" % kb)


@settings(max_examples=200, deadline=None)
@given(a=_DIGITS, b=_DIGITS)
def test_zone_numbers(a, b):
    _only_parse_errors(proc.parse_buddyinfo, b"Node %s, zone DMA %s %s\n" % (a, a, b))
    _only_parse_errors(proc.parse_zoneinfo, b"Node 0, zone DMA\n  pages free %s\n  min %s\n"
                       b"  protection: (%s, %s)\n" % (a, b, a, b))


@settings(max_examples=300, deadline=None)
@given(fn=st.sampled_from(sorted(SAMPLES, key=lambda f: f.__name__)), data=st.binary(max_size=300))
def test_random_bytes(fn, data):
    _only_parse_errors(fn, data)


@settings(max_examples=600, deadline=None)
@given(fn=st.sampled_from(sorted(SAMPLES, key=lambda f: f.__name__)), pos=st.integers(0, 10**6),
       junk=st.binary(min_size=0, max_size=8), cut=st.integers(0, 16))
def test_mutated_samples(fn, pos, junk, cut):
    sample = SAMPLES[fn]
    i = pos % (len(sample) + 1)
    _only_parse_errors(fn, sample[:i] + junk + sample[i + cut:])
