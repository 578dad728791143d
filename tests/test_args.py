"""The one argument checker: every public entry point relies on these rules."""
import numpy as np
import pytest

from physmem import _args
from physmem.errors import InvalidArgument


@pytest.mark.parametrize("bad", [1.5, 3.0, "3", None, True, np.bool_(True), np.float64(2.0), [1]])
def test_as_int_rejects_non_integers(bad):
    with pytest.raises(InvalidArgument, match="x must be an integer"):
        _args.as_int(bad, "x")


@pytest.mark.parametrize("good", [0, 7, np.int64(7), np.uint8(7), np.int32(7)])
def test_as_int_accepts_ints_and_numpy_integers(good):
    assert _args.as_int(good, "x") == int(good)
    assert type(_args.as_int(good, "x")) is int


def test_ranges_name_the_argument_and_the_bounds():
    with pytest.raises(InvalidArgument, match=r"size=18446744073709551616 is out of range.*0xffffffffffffffff"):
        _args.as_nonneg(2**64, "size")
    with pytest.raises(InvalidArgument, match=r"n=-1 is out of range: it must be at least 1"):
        _args.as_int(-1, "n", lo=1)
    assert _args.as_nonneg(2**64 - 1, "size") == 2**64 - 1
    with pytest.raises(InvalidArgument, match="pid"):
        _args.as_pid(2**40)
    with pytest.raises(InvalidArgument, match="pid"):
        _args.as_pid(0)
    assert _args.as_pid(0, allow_zero=True) == 0


@pytest.mark.parametrize("bad", [1e300, float("nan"), float("inf"), -1, "1", True])
def test_timeout(bad):
    with pytest.raises(InvalidArgument, match="timeout"):
        _args.as_timeout(bad)
    assert _args.as_timeout(None) is None
    assert _args.as_timeout(1) == 1.0


def test_flags():
    assert _args.as_flags(0b101, "flags", 0b111) == 5
    with pytest.raises(InvalidArgument, match="unknown bits 0x8"):
        _args.as_flags(0b1001, "flags", 0b111)


@pytest.mark.parametrize("bad", [1, 0, "1", "", 1j, None, object(), np.int64(1), 1.0, [True]])
def test_as_bool_rejects_anything_but_bools(bad):
    with pytest.raises(InvalidArgument, match="^on must be True or False, got "):
        _args.as_bool(bad, "on")


@pytest.mark.parametrize("good", [True, False, np.bool_(True), np.bool_(False)])
def test_as_bool_accepts_bools_and_numpy_bools(good):
    assert _args.as_bool(good, "on") is bool(good)


def test_flag_text_names_the_bits():
    import enum

    class F(enum.IntFlag):
        NONE = 0
        A = 1
        B = 2
        C = 4
        AB = 3  # an alias for a combination is not a name of its own

    class G(enum.IntFlag):
        X = 1
        Y = 8

    assert _args.flag_text(F.A | F.C) == "A|C"
    assert _args.flag_text(F.AB) == "A|B"
    assert _args.flag_text(F(0)) == "NONE"
    assert _args.flag_text(G(0)) == "0"
    assert _args.flag_text(G.Y | G.X) == "X|Y"
    assert _args.flag_text(G(0x31)) == "X|0x30"  # bits no member names, in hex
    assert _args.flag_text(F(6)) == f"{_args.flag_text(F.B)}|{_args.flag_text(F.C)}"


def test_intervals_and_powers_of_two_are_checked_in_one_place():
    from physmem import _args
    from physmem.errors import InvalidArgument

    assert _args.as_interval(0.5) == 0.5 and _args.as_interval(np.float64(2)) == 2.0
    for bad in (0, -1, None, True, "1", float("nan")):
        with pytest.raises(InvalidArgument, match="interval"):
            _args.as_interval(bad)
    assert _args.as_power_of_two(np.int64(4096), "align") == 4096
    for bad in (0, -64, 3, 48, 64.0, True, 1 << 64):
        with pytest.raises(InvalidArgument, match="align"):
            _args.as_power_of_two(bad, "align")


def test_is_int_picks_what_as_int_takes():
    for good in (0, -3, 2**80, np.int64(1), np.uint8(0)):
        assert _args.is_int(good)
    for bad in (True, np.bool_(False), 1.0, "1", None, [1]):
        assert not _args.is_int(bad)


def test_as_choice_takes_one_of_the_words_only():
    assert _args.as_choice("scan", "method", ("auto", "scan")) == "scan"
    for bad in ("Scan", "", None, 1, True, ["auto"], b"auto"):
        with pytest.raises(InvalidArgument,
                           match=r"^method must be 'auto' or 'scan', not "):
            _args.as_choice(bad, "method", ("auto", "scan"))
    with pytest.raises(InvalidArgument, match=r"must be 'a', 'b' or 'c', not 'd'"):
        _args.as_choice("d", "x", ("a", "b", "c"))


def test_as_enum_takes_a_member_or_its_value():
    import enum

    class Mode(enum.IntEnum):
        OFF = 0
        ON = 1

    assert _args.as_enum(Mode.ON, Mode, "mode") is Mode.ON
    assert _args.as_enum(1, Mode, "mode") is Mode.ON
    assert _args.as_enum(np.int32(0), Mode, "mode") is Mode.OFF
    for bad in (True, 1.0, "1", None):
        with pytest.raises(InvalidArgument, match="^mode must be an integer"):
            _args.as_enum(bad, Mode, "mode")
    with pytest.raises(InvalidArgument,
                       match=r"^mode=2 is no Mode: it must be 0 \(OFF\) or 1 \(ON\)$"):
        _args.as_enum(2, Mode, "mode")


def test_as_multiple():
    assert _args.as_multiple(8192, "size", 4096) == 8192
    assert _args.as_multiple(0, "size", 4096) == 0
    with pytest.raises(InvalidArgument,
                       match=r"^size=0x1001 is not a multiple of the page size 0x1000; "
                             r"round it to 0x1000 or 0x2000$"):
        _args.as_multiple(4097, "size", 4096)
    with pytest.raises(InvalidArgument, match="size=0 is out of range: it must be between 1 and"):
        _args.as_multiple(0, "size", 4096, lo=1)
    with pytest.raises(InvalidArgument, match="must be an integer"):
        _args.as_multiple(4096.0, "size", 4096)
    with pytest.raises(InvalidArgument, match="of the base page size"):
        _args.as_multiple(3, "page_size", 4096, what="the base page size")


def test_as_uint64_array():
    got = _args.as_uint64_array([[1, 2], [3, 2**64 - 1]], "pfn", None)
    assert got.dtype == np.uint64 and got.shape == (2, 2) and got.flags.c_contiguous
    assert int(got[1, 1]) == 2**64 - 1   # a list mixing small and huge ints keeps its bits
    assert _args.as_uint64_array([], "pfn", 10).size == 0
    for bad, words in (([1.5], "pfn entry must be an integer, got float 1.5"),
                       ([-1], "-1 is negative"), ([[1, 2], [3]], "one shape"),
                       ([2**64], r"pfn entry=18446744073709551616 is out of range: it must be "
                                 r"between 0 and 9$"),
                       ([3, None], "pfn entry must be an integer, got NoneType"),
                       (["x"], "must be integers"), ([10], "pfn 0xa is out of range"),
                       (np.array([1.0]), "must be integers, got float64")):
        with pytest.raises(InvalidArgument, match=words):
            _args.as_uint64_array(bad, "pfn", 10)
    with pytest.raises(InvalidArgument, match=r"top 0x10 is out of range \(must be below 0x10\)"):
        _args.check_below(16, "top", 16)


def test_as_int_array_keeps_signed_words():
    words = np.array([-1, 2], dtype=np.int64)
    out = _args.as_int_array(words, "flags")
    assert out.dtype == np.int64 and out.base is words or out is words
    assert _args.as_int_array([[1], [2]], "flags").tolist() == [1, 2]
    for bad in ([1.5], np.zeros(2), "12", [[1, 2], [3]], [None]):
        with pytest.raises(InvalidArgument, match="^flags must be an integer array, got "):
            _args.as_int_array(bad, "flags")


def test_as_iterable_refuses_text_and_scalars():
    gen = (i for i in range(3))
    assert _args.as_iterable(gen, "cpus", "a set of CPUs") is gen   # not consumed
    assert _args.as_iterable([1], "cpus", "a set of CPUs") == [1]
    for bad in ("12", b"12", bytearray(b"1"), 5, None):
        with pytest.raises(InvalidArgument, match="^cpus must be a set of CPUs, got "):
            _args.as_iterable(bad, "cpus", "a set of CPUs")


def test_as_buffer_takes_contiguous_bytes_like_objects():
    for good in (b"ab", bytearray(3), memoryview(b"xy"), np.zeros(4, dtype=np.uint32)):
        assert _args.as_buffer(good, "data").nbytes == memoryview(good).nbytes
    for bad in ("text", 5, None, [1, 2], np.zeros((4, 4))[:, 0]):
        with pytest.raises(InvalidArgument, match="^data must be a contiguous bytes-like"):
            _args.as_buffer(bad, "data")


def test_as_text():
    assert _args.as_text("vm.swappiness", "name") == "vm.swappiness"
    assert _args.as_text("", "name", empty=True) == ""
    assert _args.as_text("é" * 124, "name", max_bytes=249) == "é" * 124
    for bad in ("", "a\0b", None, 5, b"name", "é" * 125):
        with pytest.raises(InvalidArgument, match="^name must be a non-empty str"):
            _args.as_text(bad, "name", max_bytes=249)
    with pytest.raises(InvalidArgument, match="^name must be a str of at most 3 bytes"):
        _args.as_text("abcd", "name", max_bytes=3, empty=True)


def test_args_imports_without_numpy():
    """The CLI's start-up imports _args and must not pay for numpy."""
    import subprocess
    import sys

    code = ("import sys, physmem._args as a; a.as_choice('x', 'n', ('x',)); "
            "a.as_text('t', 'n'); a.is_int(1); assert 'numpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
