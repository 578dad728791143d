"""The kernel command line (/proc/cmdline): the boot parameters that shape CPUs and memory."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from .._syntax import parse_cpulist, parse_size
from ..errors import InvalidArgument
from ..proc._read import read_optional

__all__ = ["Cmdline", "HugepageRequest", "parse_cmdline", "read_cmdline"]


class HugepageRequest(NamedTuple):
    """A boot-time pool request; ``size`` ``None`` means the default huge page size."""

    size: int | None
    # Shadows tuple.count(); the field name is public API, so it stays.
    count: int  # type: ignore[assignment]
    per_node: dict[int, int] | None  # hugepages=0:2,1:2 (since 5.19)


@dataclass(frozen=True)
class Cmdline:
    """Parsed kernel parameters. CPU lists are sets; ``None`` means the parameter is absent."""

    raw: str
    params: dict[str, str | None] = field(hash=False)
    isolcpus: frozenset[int] | None = None
    isolcpus_flags: frozenset[str] = frozenset()
    nohz_full: frozenset[int] | None = None
    rcu_nocbs: frozenset[int] | None = None
    irqaffinity: frozenset[int] | None = None
    hugepages: tuple[HugepageRequest, ...] = ()
    default_hugepagesz: int | None = None
    numa_balancing: str | None = None
    transparent_hugepage: str | None = None


def _cpus(value: str | None, possible: Iterable[int] | None) -> frozenset[int]:
    if not value:
        return frozenset()
    cpus = sorted(possible) if possible is not None else []
    # cpulist_parse() accepts "all" and "N" (the last CPU) since 5.15.
    if value == "all":
        return frozenset(cpus)
    if cpus and "N" in value:
        value = value.replace("N", str(cpus[-1]))
    return parse_cpulist(value, "/proc/cmdline")


def _isolcpus(value: str, possible: Iterable[int] | None) -> tuple[frozenset[int], frozenset[str]]:
    # isolcpus=[flag,...,]<cpu-list>; the flags come first, the list is whatever is left.
    parts = value.split(",")
    flags = []
    while parts and parts[0] in ("nohz", "domain", "managed_irq"):
        flags.append(parts.pop(0))
    return _cpus(",".join(parts), possible), frozenset(flags or ["domain"])


def _hugepages_count(value: str) -> tuple[int, dict[int, int] | None]:
    if ":" not in value:
        return int(value), None
    per_node = {}
    for item in value.split(","):
        node, _, count = item.partition(":")
        per_node[int(node)] = int(count)
    return sum(per_node.values()), per_node


def parse_cmdline(data: bytes | str, possible: Iterable[int] | None = None) -> Cmdline:
    """Parse a command line; ``possible`` CPUs resolve ``all``/``N`` in CPU lists."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    text = text.strip("\x00\n ")
    words: list[str] = []
    for word in _split(text):
        if word == "--":  # the rest belongs to init, not the kernel
            break
        words.append(word)
    params: dict[str, str | None] = {}
    found: dict[str, object] = {}
    huge: list[HugepageRequest] = []
    size: int | None = None
    for word in words:
        key, eq, value = word.partition("=")
        params[key] = value if eq else None
        try:
            if key == "isolcpus" and eq:
                cpus, flags = _isolcpus(value, possible)
                found["isolcpus"], found["isolcpus_flags"] = cpus, flags
            elif key in ("nohz_full", "rcu_nocbs", "irqaffinity"):
                found[key] = _cpus(value if eq else None, possible)
            elif key == "hugepagesz" and eq:
                size = parse_size(value)
            elif key == "hugepages" and eq:
                count, per_node = _hugepages_count(value)
                huge.append(HugepageRequest(size, count, per_node))
                size = None
            elif key == "default_hugepagesz" and eq:
                found["default_hugepagesz"] = parse_size(value)
            elif key in ("numa_balancing", "transparent_hugepage") and eq:
                found[key] = value
        except (ValueError, InvalidArgument):
            # The kernel ignores malformed values too; the raw text stays in params.
            continue
    return Cmdline(raw=text, params=params, hugepages=tuple(huge), **found)  # type: ignore[arg-type]


def _split(text: str) -> list[str]:
    # Double quotes group words (param="a b"), as the kernel's next_arg() does.
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch.isspace() and not quoted:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def read_cmdline(proc_root: str = "/proc", possible: Iterable[int] | None = None) -> Cmdline | None:
    """/proc/cmdline parsed, or ``None`` if the file is absent (captured trees may lack it)."""
    data = read_optional(f"{proc_root}/cmdline")
    return None if data is None else parse_cmdline(data, possible)
