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
    for bad in (0, -64, 3, 48, 64.0, True):
        with pytest.raises(InvalidArgument, match="align"):
            _args.as_power_of_two(bad, "align")
