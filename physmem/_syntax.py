"""The kernel's text syntaxes, parsed in one place: CPU/node lists, hex masks, sizes, escapes.

Every reader of /proc and /sys (and the CLI, for sizes) uses these; a second copy elsewhere
in the package would drift (three CPU-list parsers once disagreed on ``0-7:2/4``).
Parsers of kernel files raise :class:`~physmem.errors.ParseError` naming the file; the size
parser reads user input too and raises :class:`~physmem.errors.InvalidArgument`.
"""
from __future__ import annotations

import os
import re
from fractions import Fraction
from typing import Iterable

from .errors import InvalidArgument, ParseError

__all__ = ["parse_cpulist", "parse_cpumask", "parse_hexmask", "format_cpulist", "parse_size",
           "format_size", "unescape_octal", "SIZE_UNITS", "CPU_LIMIT"]

# What sysfs prints for a cpumask that the kernel never allocated ("%*pbl" of a NULL mask goes
# through printk's NULL-pointer path, padded to the field width: e.g. nohz_full on a
# CONFIG_NO_HZ_FULL kernel booted without nohz_full=). It means "no CPUs".
_NULL = b"(null)"
# Captured trees sometimes carry trailing NULs; the kernel never does.
_BLANK = b"\x00 \t\r\n"


def _text(data: bytes | str) -> bytes:
    return (data.encode() if isinstance(data, str) else data).strip(_BLANK)


# The kernel numbers CPUs below NR_CPUS and nodes below MAX_NUMNODES, and no configuration
# allows more than 8192 CPUs (NR_CPUS with CPUMASK_OFFSTACK: x86 MAXSMP, powerpc) or 1024
# nodes (NODES_SHIFT 10). A list or mask reaching past that is not one a kernel wrote, and
# expanding it could take all memory: "0-4294967295" is 4 billion set members.
CPU_LIMIT = 8192


def parse_cpulist(data: bytes | str, path: str | None = None) -> frozenset[int]:
    """A CPU or node list as the kernel writes and reads it (``bitmap_parselist``).

    ``"0-3,8"`` -> {0, 1, 2, 3, 8}. Each item is ``N``, ``first-last`` or
    ``first-last:used/group`` (admin-guide/kernel-parameters: of every ``group`` CPUs
    starting at ``first``, the first ``used``): ``"0-7:2/4"`` -> {0, 1, 4, 5}. Empty text and
    the kernel's ``(null)`` are the empty set. Anything else, and any number from
    :data:`CPU_LIMIT` on, raises :class:`ParseError` before anything is expanded.
    """
    text = _text(data)
    if not text or text == _NULL:
        return frozenset()
    bits = 0   # the set as a bitmap: each item costs a few word operations, whatever its span
    for part in text.split(b","):
        part = part.strip()
        if not part:
            continue
        try:
            bits |= _cpulist_item(part)
        except ValueError:
            raise ParseError(f"not a CPU list (numbers from 0 to {CPU_LIMIT - 1})", path=path,
                             line=data) from None
    return _bit_numbers(bits)


def _cpulist_item(part: bytes) -> int:
    """One item of a CPU list as a bitmap; ValueError if malformed or out of range."""
    rng, colon, group = part.partition(b":")
    lo_s, dash, hi_s = rng.partition(b"-")
    lo = _decimal(lo_s)
    hi = _decimal(hi_s) if dash else lo
    if hi < lo or hi >= CPU_LIMIT or (colon and not dash):
        raise ValueError(part)
    span = hi - lo + 1
    if not colon:
        return ((1 << span) - 1) << lo
    used_s, slash, size_s = group.partition(b"/")
    used, size = _decimal(used_s), _decimal(size_s)
    if not slash or used <= 0 or size <= 0 or used > size:
        raise ValueError(part)
    # A group longer than the range holds the range's first `used` CPUs at most.
    size = min(size, span)
    used = min(used, size)
    groups = -(-span // size)
    # The first `used` bits of every group: the group's pattern repeated `groups` times.
    pattern = ((1 << used) - 1) * (((1 << (size * groups)) - 1) // ((1 << size) - 1))
    return (pattern & ((1 << span) - 1)) << lo


def _bit_numbers(bits: int) -> frozenset[int]:
    """The positions of the set bits of ``bits`` (bit 0 first)."""
    digits = bin(bits)[:1:-1]
    return frozenset(i for i, d in enumerate(digits) if d == "1")


def _decimal(b: bytes) -> int:
    # int() alone would take "+3", " 3" and "3_0"; the kernel takes digits only. More digits
    # than any CPU number has are refused before int() spends time on them.
    if not b.isdigit() or len(b) > 20:
        raise ValueError(b)
    return int(b)


def parse_hexmask(data: bytes | str, path: str | None = None) -> int:
    """A hex mask as /proc and /sys print them, as an int.

    Covers the 16-digit signal and capability masks of /proc/PID/status (``SigIgn``,
    ``CapEff``, ...) and the comma-separated 32-bit words of cpumasks (``Cpus_allowed``,
    ``cpumap``: most significant word first). Always hexadecimal, also when every digit
    is 0-9 (``0000000000001000`` is 4096). ``(null)`` and empty text are 0. A mask with a
    bit set from :data:`CPU_LIMIT` on raises :class:`ParseError`.
    """
    text = _text(data)
    if not text or text == _NULL:
        return 0
    words = text.split(b",")
    if not all(w and all(c in b"0123456789abcdefABCDEF" for c in w) for w in words):
        raise ParseError("not a hex mask", path=path, line=data)
    value = int(b"".join(words), 16)
    if value.bit_length() > CPU_LIMIT:
        raise ParseError(f"hex mask with bits set past bit {CPU_LIMIT - 1}", path=path,
                         line=data)
    return value


def parse_cpumask(data: bytes | str, path: str | None = None) -> frozenset[int]:
    """A hex cpumask (``"0000,000000ff,ffffffff"``) as the set of its bits."""
    return _bit_numbers(parse_hexmask(data, path))


def format_cpulist(cpus: Iterable[int]) -> str:
    """``{0, 1, 2, 3, 8}`` -> ``"0-3,8"`` (the kernel's own spelling)."""
    from ._args import as_iterable, as_nonneg

    # A str is iterable too: "12" would come out as a list of characters.
    listed = as_iterable(cpus, "cpus", "a set or list of CPU numbers")
    items = sorted({as_nonneg(c, "cpu") for c in listed})
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)


SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
              "E": 1 << 60}
_U64_MAX = (1 << 64) - 1
_SIZE = re.compile(r"\s*(?:(0[xX][0-9a-fA-F]+)|(\d+(?:\.\d+)?|\.\d+))\s*"
                   r"(?:([kKmMgGtTpPeE])(i?)[bB]?|([bB]))?\s*")


def format_size(size: int, *, exact: bool = True) -> str:
    """A size in bytes as text, the one formatter of sizes.

    ``exact``: the kernel's own notation (``2M``, ``1G``, as in ``hugepagesz=``), which
    :func:`parse_size` reads back; the bare number where no unit divides it. Otherwise for
    people, rounded to one decimal (``64.0 MiB``, ``512 B``).
    """
    if exact:
        for shift, unit in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
            if size >= 1 << shift and size % (1 << shift) == 0:
                return f"{size >> shift}{unit}"
        return str(size)
    x: float = size   # divided down unit by unit
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(x) < 1024:
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} TiB"


def parse_size(text: str | int, name: str = "size", *, positive: bool = False) -> int:
    """A size in bytes from ``"2M"``, ``"1.5G"``, ``"4KiB"``, ``"0x1000"`` or a plain int.

    The rules (the same for the library, the CLI and the kernel command line):

    * The number is decimal (``4096``, leading zeros allowed and still decimal: unlike the
      kernel's memparse, ``010`` is ten, not eight), hexadecimal with ``0x`` (``0x1000``),
      or a decimal fraction (``1.5G``); the result must be whole bytes (``1.5G`` is
      1610612736, ``1.3K`` is refused rather than rounded).
    * The unit is one of K, M, G, T, P, E, in either case, optionally followed by ``i`` and/or
      ``B``/``b``; a bare ``B`` means bytes. **Every unit is binary**, a power of 1024, as in
      the kernel (memparse, ``hugepagesz=2M``, ``kB`` in /proc/meminfo): ``64m``, ``64M``,
      ``64MiB`` and ``64MB`` all mean 64 MiB = 67108864 bytes. physmem has no decimal (SI)
      units; write the bytes if you mean 64000000.
    * At most 2**64 - 1 bytes (``15E`` fits, ``16E`` does not); no sign.

    An ``int`` (or numpy integer) is taken as bytes, if non-negative (``positive``: more
    than 0). Anything else raises :class:`~physmem.errors.InvalidArgument` naming ``name``.
    """
    if not isinstance(text, str):
        from ._args import as_int  # the boundary checker

        return as_int(text, name, lo=1 if positive else 0, hi=_U64_MAX)
    m = _SIZE.fullmatch(text)
    if not m:
        why = "is negative" if text.strip().startswith("-") else "is not a size"
        raise InvalidArgument(f"{name} {text!r} {why} (examples: 4096, 0x1000, 2M, "
                              "1.5G, 64MiB)")
    hexa, dec, unit, _, _ = m.groups()
    number = Fraction(int(hexa, 16)) if hexa else Fraction(dec)
    value = number * SIZE_UNITS[(unit or "").upper()]
    if value.denominator != 1:
        raise InvalidArgument(f"{name} {text!r} is not a whole number of bytes ({float(value)})")
    if value > _U64_MAX:
        raise InvalidArgument(f"{name} {text!r} is too large: at most 2**64 - 1 bytes")
    if positive and not value:
        raise InvalidArgument(f"{name} {text!r} is zero: give at least one byte")
    return int(value)


# \ooo for one byte: the kernel writes 000-377 only, so a larger "escape" is literal text.
_OCTAL = re.compile(rb"\\([0-3][0-7]{2})")


def unescape_octal(field: bytes | str) -> str:
    """A field of /proc/PID/mounts, mountinfo or swaps, with the kernel's escapes undone.

    The kernel (``seq_escape``/``mangle``) writes space, tab, newline, backslash and ``#`` as
    ``\\ooo`` (three octal digits); any other ``\\ooo`` is decoded the same way, so the result
    is the real path. Undecodable bytes stay as surrogates (``os.fsdecode``).
    """
    raw = field.encode("utf-8", "surrogateescape") if isinstance(field, str) else field
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), raw))
