"""Kernel tunables under /proc/sys, named the sysctl(8) way (``vm.nr_hugepages``).

Values are text: :func:`read` returns it stripped, :func:`read_int`/:func:`read_ints` parse it.
:func:`write` sends the whole value in one ``write(2)``, as the kernel requires.
"""
from __future__ import annotations

import os
from typing import Iterable, Union

from ._args import as_int, as_iterable, as_text, is_int
from .errors import InvalidArgument, ParseError
from .proc._read import read_bytes, write_bytes

__all__ = ["path_of", "read", "read_int", "read_ints", "write"]

Value = Union[int, str, bytes, Iterable[int]]


def path_of(name: str, proc_root: str = "/proc") -> str:
    """The /proc/sys file for ``name`` (dotted, or already slash-separated)."""
    name = as_text(name, "sysctl name")
    # sysctl(8): with a '/' in the name, dots are literal (net/ipv4/conf/eth0.100/...).
    parts = name.split("/") if "/" in name else name.split(".")
    if any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise InvalidArgument(f"invalid sysctl name {name!r}")
    return os.path.join(proc_root, "sys", *parts)


def read(name: str, proc_root: str = "/proc") -> str:
    """The value of sysctl ``name`` as the kernel prints it, without the trailing newline."""
    data = read_bytes(path_of(name, proc_root), what=f"cannot read sysctl {name}")
    return os.fsdecode(data.rstrip(b"\n"))


def read_ints(name: str, proc_root: str = "/proc") -> tuple[int, ...]:
    """A sysctl holding whitespace-separated integers (``vm.lowmem_reserve_ratio``)."""
    text = read(name, proc_root)
    try:
        return tuple(int(v) for v in text.split())
    except ValueError:
        raise ParseError("expected integers", path=path_of(name, proc_root), line=text) from None


def read_int(name: str, proc_root: str = "/proc") -> int:
    """A sysctl holding exactly one integer (``vm.nr_hugepages``)."""
    values = read_ints(name, proc_root)
    if len(values) != 1:
        raise ParseError("expected exactly one integer", path=path_of(name, proc_root),
                         line=read(name, proc_root))
    return values[0]


def _encode(name: str, value: Value) -> bytes:
    if isinstance(value, bool):   # True and False write 1 and 0, as documented
        value = int(value)
    if is_int(value):
        return b"%d" % as_int(value, "value")
    if isinstance(value, str):
        return os.fsencode(value)
    if isinstance(value, bytes):
        return value
    what = f"sysctl {name}: value"
    items = as_iterable(value, what, "an int, str, bytes or a sequence of ints")
    return b"\t".join(b"%d" % as_int(v, what) for v in items)


def write(name: str, value: Value, proc_root: str = "/proc") -> None:
    """Set sysctl ``name``. A value the kernel rejects (EINVAL) raises InvalidArgument."""
    path = path_of(name, proc_root)
    data = _encode(name, value)
    if not data.endswith(b"\n"):
        data += b"\n"
    write_bytes(path, data, f"cannot write sysctl {name}",
                rejected=f"the kernel rejected {data.strip()!r} for sysctl {name}")
