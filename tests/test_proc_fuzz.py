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
        fn(data)
    except ParseError:
        pass


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
