"""/proc/meminfo and the per-node /sys/devices/system/node/nodeN/meminfo."""
from __future__ import annotations

from .. import _sysfs
from .._args import as_int
from ..errors import ParseError
from ._read import kb_value, read_bytes

__all__ = ["meminfo", "node_meminfo", "parse_meminfo"]


def parse_meminfo(data: bytes, path: str = "/proc/meminfo") -> dict[str, int]:
    """``{"MemTotal": bytes, ..., "HugePages_Total": count}``: kB values scaled to bytes.

    Keys keep the kernel's spelling (``Active(anon)``), so new kernel fields are kept too.
    Per-node files prefix every line with ``Node N``; that prefix is dropped.
    """
    out: dict[str, int] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(b":")
        if line.startswith(b"Node "):
            key = key.split(None, 2)[-1] if len(key.split()) == 3 else b""
        try:
            if not sep or not key or b" " in key:
                raise ValueError(line)
            out[key.decode("ascii")] = kb_value(value)
        except (ValueError, UnicodeDecodeError):
            raise ParseError("not a 'Key: value [kB]' line", path=path, lineno=lineno,
                             line=line) from None
    return out


def meminfo(proc_root: str = "/proc") -> dict[str, int]:
    """System memory counters from /proc/meminfo, sizes in bytes (HugePages_* are counts)."""
    path = f"{proc_root}/meminfo"
    return parse_meminfo(read_bytes(path), path)


def node_meminfo(node: int, sys_root: str = "/sys") -> dict[str, int]:
    """One NUMA node's counters, same keys and units as :func:`meminfo`."""
    path = f"{sys_root}/devices/system/node/node{as_int(node, 'node', lo=0)}/meminfo"
    return parse_meminfo(_sysfs.read(path), path)
