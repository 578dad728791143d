"""Random and mutated input: the parsers may only raise ParseError.

Run by tests/test_proc_fuzz.py in a child process with its address space and CPU time
limited, so a parser that expands or allocates by what it reads fails here as a
MemoryError or a killed child instead of waking the OOM killer.
"""
from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import physmem.proc as proc
from physmem import _syntax
from physmem.errors import ParseError
from physmem.topology import parse_cmdline

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


# -- lists, masks and ranges: each is checked before it is expanded ----------------------------

_CPU_NUMBER = st.one_of(st.integers(0, 10000), _DIGITS.map(bytes.decode))


@settings(max_examples=300, deadline=None)
@given(lo=_CPU_NUMBER, hi=_CPU_NUMBER, used=_CPU_NUMBER, size=_CPU_NUMBER,
       grouped=st.booleans(), copies=st.integers(1, 50))
def test_cpu_lists_of_any_span(lo, hi, used, size, grouped, copies):
    item = f"{lo}-{hi}" + (f":{used}/{size}" if grouped else "")
    text = ",".join([item] * copies)
    try:
        cpus = _syntax.parse_cpulist(text)
    except ParseError:
        return
    assert all(0 <= c < _syntax.CPU_LIMIT for c in cpus)
    status = f"Cpus_allowed_list:\t{text}\nMems_allowed_list:\t{item}\n".encode()
    _only_parse_errors(proc.parse_status, status)
    # The kernel command line: malformed values are ignored there, never expanded.
    parse_cmdline(f"isolcpus={item} nohz_full={text} rcu_nocbs={lo}-{hi}")


@settings(max_examples=200, deadline=None)
@given(digits=st.integers(1, 20_000), words=st.integers(1, 300))
def test_masks_of_any_width(digits, words):
    for text in ("f" * digits, ",".join(["ffffffff"] * words), "1" + "0" * digits):
        try:
            cpus = _syntax.parse_cpumask(text)
        except ParseError:
            continue
        assert all(0 <= c < _syntax.CPU_LIMIT for c in cpus)
    try:   # a cpumask, not a 64-bit number: as wide as the kernel's CPU limit
        mask = proc.parse_status(b"Cpus_allowed:\t%s\n" % (b"f" * digits))["Cpus_allowed"]
    except ParseError:
        return
    assert mask.bit_length() <= _syntax.CPU_LIMIT and repr(mask)


@settings(max_examples=200, deadline=None)
@given(orders=st.integers(0, 100_000), order=_DIGITS, lo=_HEXDIGITS, hi=_HEXDIGITS)
def test_orders_and_address_ranges(orders, order, lo, hi):
    _only_parse_errors(proc.parse_buddyinfo, b"Node 0, zone DMA" + b" 1" * orders + b"\n")
    _only_parse_errors(proc.parse_pagetypeinfo, b"Page block order: %s\nPages per block: 512\n"
                       b"Node 0, zone DMA, type Movable" % order + b" 1" * orders + b"\n")
    try:
        ranges = proc.parse_iomem(b"%s-%s : System RAM\n" % (lo, hi))
    except ParseError:
        return
    assert all(r.start < r.end <= 1 << 64 for r in ranges)


def test_the_limits_hold():
    """The parent's limits reached this process: an allocation past them fails here."""
    limit = int(os.environ["PHYSMEM_FUZZ_AS_LIMIT"])
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == limit
    assert resource.getrlimit(resource.RLIMIT_CPU)[0] > 0
    with pytest.raises(MemoryError):
        bytearray(limit)
