"""physmem._syntax: the one parser per kernel syntax, and the old names that now reuse it."""
from __future__ import annotations

import numpy as np
import pytest

import physmem.proc as proc
from physmem import _syntax, hugepages, topology
from physmem._syntax import (parse_cpulist, parse_cpumask, parse_hexmask, parse_size,
                             unescape_octal)
from physmem.errors import InvalidArgument, ParseError
from physmem.topology import cmdline


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096), ("0x1000", 4096), ("0X1000", 4096), ("4K", 4096), ("4k", 4096),
    ("4KiB", 4096), ("4KB", 4096), ("4kb", 4096), ("4B", 4), ("010", 10), (" 2M\n", 2 << 20),
    ("64m", 64 << 20), ("64M", 64 << 20), ("64MiB", 64 << 20), ("64MB", 64 << 20),
    ("1.5G", 1610612736), (".5K", 512), ("1G", 1 << 30), ("1gb", 1 << 30), ("2T", 2 << 40),
    ("1P", 1 << 50), ("1E", 1 << 60), ("15E", 15 << 60), ("0x10M", 16 << 20), ("0", 0),
])
def test_parse_size_accepts(text, expected):
    assert parse_size(text) == expected
    # The public name README documents is this parser.
    assert hugepages.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1", "+1", "1.3K", "0.5", "16E", "1X", "1MM",
                                  "1 2", "0x", "1e3", "nan", "1,5G", "1KiBB"])
def test_parse_size_refuses(text):
    with pytest.raises(InvalidArgument, match="size"):
        parse_size(text)


def test_parse_size_ints():
    assert parse_size(4096) == parse_size(np.uint64(4096)) == 4096
    for bad in (True, -1, 1.5, None):
        with pytest.raises(InvalidArgument):
            parse_size(bad)  # type: ignore[arg-type]


def test_one_parser_each():
    assert hugepages.parse_size is _syntax.parse_size
    assert "parse_size" not in cmdline.__all__
    assert topology.parse_cpulist is _syntax.parse_cpulist
    assert topology.parse_cpumask is _syntax.parse_cpumask


@pytest.mark.parametrize("text, expected", [
    ("0-7:2/4", {0, 1, 4, 5}), ("0-3,8,10-11", {0, 1, 2, 3, 8, 10, 11}), ("5", {5}),
    ("0-9:1/5", {0, 5}), ("0-8:3/3", set(range(9))), ("", set()), ("  (null)\n", set()),
    ("(null)", set()), ("0-3\x00\x00", {0, 1, 2, 3}), ("2-3:1/4,0", {0, 2}),
])
def test_cpulist(text, expected):
    assert parse_cpulist(text) == parse_cpulist(text.encode()) == expected


@pytest.mark.parametrize("text", ["3-1", "a", "1-", "-1", "0-7:3/2", "0-7:0/4", "0-7:2",
                                  "0-7:2/0", "3:1/2", "0-3-5", "+1", "(nil)", "1 2"])
def test_cpulist_refuses(text):
    with pytest.raises(ParseError):
        parse_cpulist(text, "/sys/x")


def test_masks():
    assert parse_cpumask(b"0000,000000ff,ffffffff\n") == set(range(40))
    assert parse_cpumask(b"     (null)\n") == frozenset() == parse_cpumask(b"")
    assert parse_hexmask("0000000000001000") == 4096
    assert parse_hexmask("00000000,00000001") == 1
    for bad in ("0x10", "12g", "1,,2", "-1"):
        with pytest.raises(ParseError):
            parse_hexmask(bad)


def test_unescape_octal():
    assert unescape_octal(b"/mnt/a\\040b\\011c\\012d\\134e\\043f") == "/mnt/a b\tc\nd\\e#f"
    assert unescape_octal("/plain") == "/plain"
    assert unescape_octal(b"/x\\400") == "/x\\400"  # not a byte: left as written
    assert unescape_octal(b"/caf\\303\\251") == "/caf\u00e9"


def test_hugetlbfs_mount_points_are_fully_unescaped(tmp_path):
    # A fake proc root: mounts() reads <proc_root>/self/mounts, as for any other root.
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mounts").write_bytes(
        b"proc /proc proc rw 0 0\n"
        b"none /mnt/huge\\040pages\\134x\\012y hugetlbfs rw,pagesize=2M 0 0\n")
    (m,) = hugepages.hugetlbfs_mounts(str(tmp_path))
    assert m.path == "/mnt/huge pages\\x\ny" and m.page_size == 2 << 20


# -- lists and masks are bounded before they are expanded -----------------------------------

def _expand(text: str) -> set[int]:
    """The list syntax expanded naively, number by number (independent of the bitmap)."""
    out: set[int] = set()
    for part in text.split(","):
        rng, _, group = part.partition(":")
        lo, _, hi = rng.partition("-")
        used, _, size = group.partition("/")
        for c in range(int(lo), int(hi or lo) + 1):
            if not group or (c - int(lo)) % int(size) < int(used):
                out.add(c)
    return out


def test_cpulist_bitmap_agrees_with_a_naive_expansion():
    import random

    rng = random.Random(12)
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(1, 4)):
            lo = rng.randint(0, 300)
            hi = lo + rng.randint(0, 300)
            kind = rng.randint(0, 2)
            if kind == 0:
                parts.append(str(lo))
            elif kind == 1:
                parts.append(f"{lo}-{hi}")
            else:
                size = rng.randint(1, 400)   # groups longer than the range too
                parts.append(f"{lo}-{hi}:{rng.randint(1, size)}/{size}")
        text = ",".join(parts)
        assert parse_cpulist(text) == _expand(text), text


def test_the_limit_is_the_kernels_largest_cpu_count():
    assert _syntax.CPU_LIMIT == 8192   # NR_CPUS' largest value (x86 MAXSMP, powerpc)
    assert parse_cpulist("0-8191") == frozenset(range(8192))
    assert parse_cpulist("8191") == {8191}
    assert parse_cpulist("0-8191:1/4096") == {0, 4096}
    assert parse_cpulist("0-7:1/4294967295") == {0}   # the kernel takes a group past the range
    assert parse_cpumask("f" * 2048) == frozenset(range(8192))


@pytest.mark.parametrize("text", ["0-4294967295", "8192", "0-8192", "4294967295-4294967295",
                                  "0-18446744073709551615", "1" + "0" * 5000,
                                  "0-8191:1/" + "9" * 30, ",".join(["0-8191", "9000"])])
def test_cpulist_past_the_limit_is_a_parse_error(text):
    with pytest.raises(ParseError, match=r"/sys/x: not a CPU list \(numbers from 0 to 8191\)"):
        parse_cpulist(text, "/sys/x")


def test_masks_past_the_limit_are_parse_errors():
    with pytest.raises(ParseError, match="hex mask with bits set past bit 8191"):
        parse_cpumask("1" + "0" * 2048, "/sys/x")
    with pytest.raises(ParseError, match="past bit 8191"):
        parse_hexmask(",".join(["ffffffff"] * 257))
    # Leading zero words are no CPUs: only set bits count.
    assert parse_cpumask(",".join(["00000000"] * 1000 + ["00000003"])) == {0, 1}


def test_a_huge_line_is_shown_cut_in_the_message():
    line = "0-" + "9" * 100_000
    with pytest.raises(ParseError) as info:
        parse_cpulist(line, "/sys/x")
    assert len(str(info.value)) < 300 and "(100002 characters)" in str(info.value)
    assert info.value.line == line   # the whole line stays on the exception


def test_format_cpulist_takes_cpu_numbers_only():
    assert _syntax.format_cpulist(np.array([3, 4, 9])) == "3-4,9"
    for bad in ("12", b"12", 5, None, [1.5], [-1], [True]):
        with pytest.raises(InvalidArgument, match="cpu"):
            _syntax.format_cpulist(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("size, exact, human", [
    (2 << 20, "2M", "2.0 MiB"), (1 << 30, "1G", "1.0 GiB"), (64 << 10, "64K", "64.0 KiB"),
    (3 << 40, "3T", "3.0 TiB"), (4097, "4097", "4.0 KiB"), (512, "512", "512 B"),
    (1536 << 20, "1536M", "1.5 GiB"), (5 << 50, "5120T", "5120.0 TiB"),
])
def test_one_size_formatter_both_notations(size, exact, human):
    assert _syntax.format_size(size) == exact and _syntax.parse_size(exact) == size
    assert _syntax.format_size(size, exact=False) == human
    assert hugepages.sizes.format_size is _syntax.format_size
