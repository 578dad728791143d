"""Zone-level views of physical memory: /proc/buddyinfo, pagetypeinfo and zoneinfo."""
from __future__ import annotations

from typing import Any, NamedTuple

from ..errors import ParseError
from ._read import read_bytes, u64

__all__ = ["BuddyInfo", "PageTypeInfo", "Zone", "buddyinfo", "pagetypeinfo", "zoneinfo",
           "parse_buddyinfo", "parse_pagetypeinfo", "parse_zoneinfo", "zones_end_pfn"]


class BuddyInfo(NamedTuple):
    """Free blocks of one zone; ``free[k]`` counts blocks of 2**k pages."""

    node: int
    zone: str
    free: tuple[int, ...]

    @property
    def free_pages(self) -> int:
        return sum(n << k for k, n in enumerate(self.free))


# A block of order k holds 2**k pages: from order 64 on it would exceed any 64-bit address
# space, so a line with more orders is not one the kernel wrote (and every consumer shifts
# by the order: 1 << 10**6 is not a number to compute).
_MAX_ORDERS = 64


def _orders(words: list[bytes]) -> tuple[int, ...]:
    """Free block counts per order; ValueError for none, too many or a malformed one."""
    if not 0 < len(words) <= _MAX_ORDERS:
        raise ValueError(words)
    return tuple(u64(v) for v in words)


def _node_zone(head: bytes) -> tuple[int, str]:
    # b"Node 0, zone   Normal" (pagetypeinfo pads the node number too)
    node_part, _, zone_part = head.partition(b",")
    n = node_part.split()
    z = zone_part.split()
    if len(n) != 2 or n[0] != b"Node" or len(z) != 2 or z[0] != b"zone":
        raise ValueError(head)
    return u64(n[1]), z[1].decode("ascii")


def parse_buddyinfo(data: bytes, path: str = "/proc/buddyinfo") -> list[BuddyInfo]:
    out = []
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            words = line.split()
            node, zone = _node_zone(b" ".join(words[:4]))
            counts = _orders(words[4:])
        except (ValueError, UnicodeDecodeError):
            raise ParseError("unreadable buddyinfo line", path=path, lineno=lineno,
                             line=line) from None
        out.append(BuddyInfo(node, zone, counts))
    return out


def buddyinfo(proc_root: str = "/proc") -> list[BuddyInfo]:
    """Free blocks per order for every zone of every node."""
    path = f"{proc_root}/buddyinfo"
    return parse_buddyinfo(read_bytes(path), path)


class PageTypeInfo(NamedTuple):
    """/proc/pagetypeinfo: free blocks per zone, migrate type and order; pageblocks per type."""

    pageblock_order: int
    pages_per_block: int
    free: dict[tuple[int, str, str], tuple[int, ...]]   # (node, zone, type) -> per order
    blocks: dict[tuple[int, str], dict[str, int]]       # (node, zone) -> type -> pageblocks


def parse_pagetypeinfo(data: bytes, path: str = "/proc/pagetypeinfo") -> PageTypeInfo:
    order = per_block = -1
    free: dict[tuple[int, str, str], tuple[int, ...]] = {}
    blocks: dict[tuple[int, str], dict[str, int]] = {}
    types: list[str] = []
    for lineno, line in enumerate(data.splitlines(), 1):
        try:
            if not line.strip() or line.startswith(b"Free pages count"):
                continue
            if line.startswith(b"Page block order:"):
                order = u64(line.split(b":")[1].strip())
                if order >= _MAX_ORDERS:
                    raise ValueError(order)
            elif line.startswith(b"Pages per block:"):
                per_block = u64(line.split(b":")[1].strip())
            elif line.startswith(b"Number of blocks type"):
                types = [t.decode("ascii") for t in line.split()[4:]]
            elif line.startswith(b"Node") and b", type" in line:
                head, _, rest = line.partition(b", type")
                words = rest.split()
                free[(*_node_zone(head), words[0].decode("ascii"))] = _orders(words[1:])
            elif line.startswith(b"Node") and types:
                words = line.split()
                nums = [u64(v) for v in words[4:]]
                if len(nums) != len(types):
                    raise ValueError
                blocks[_node_zone(b" ".join(words[:4]))] = dict(zip(types, nums))
            else:
                raise ValueError
        except (ValueError, IndexError, UnicodeDecodeError):
            raise ParseError("unreadable pagetypeinfo line", path=path, lineno=lineno,
                             line=line) from None
    if order < 0 or per_block < 0:
        raise ParseError("missing 'Page block order' or 'Pages per block'", path=path)
    return PageTypeInfo(order, per_block, free, blocks)


def pagetypeinfo(proc_root: str = "/proc") -> PageTypeInfo:
    """Free memory by migrate type (root only on Linux 5.6+: the file is mode 0400)."""
    path = f"{proc_root}/pagetypeinfo"
    return parse_pagetypeinfo(read_bytes(path), path)


class Zone(NamedTuple):
    """One zone of /proc/zoneinfo; page counts in pages.

    ``watermarks`` holds min/low/high (and boost/promo where the kernel prints them);
    ``counters`` the per-zone ``nr_*``/``numa_*`` lines; ``node_stats`` the per-node block
    the kernel prints before a node's first zone (empty on the other zones); ``pcp`` the free
    pages on each CPU's list (``pagesets ... count:``), which ``free`` does not include.
    """

    node: int
    zone: str
    free: int
    watermarks: dict[str, int]
    spanned: int
    present: int
    managed: int
    protection: tuple[int, ...]
    counters: dict[str, int]
    node_stats: dict[str, int]
    start_pfn: int | None
    pcp: tuple[int, ...] = ()

    @property
    def min(self) -> int:
        return self.watermarks.get("min", 0)

    @property
    def low(self) -> int:
        return self.watermarks.get("low", 0)

    @property
    def high(self) -> int:
        return self.watermarks.get("high", 0)


_ZONE_SIZES = ("spanned", "present", "managed")


def parse_zoneinfo(data: bytes, path: str = "/proc/zoneinfo") -> list[Zone]:
    zones: list[Zone] = []
    cur: dict[str, Any] | None = None
    section = ""
    for lineno, line in enumerate(data.splitlines(), 1):
        try:
            s = line.strip()
            if not s:
                continue
            if line.startswith(b"Node"):
                if cur:
                    zones.append(_zone(cur))
                node, zone = _node_zone(line)
                cur = {"node": node, "zone": zone, "free": 0, "watermarks": {}, "spanned": 0,
                       "present": 0, "managed": 0, "protection": (), "counters": {},
                       "node_stats": {}, "start_pfn": None, "pcp": []}
                section = "zone"
                continue
            if cur is None:
                raise ValueError
            if s == b"per-node stats":
                section = "node"
            elif s == b"pagesets":
                section = "pagesets"
            elif s.startswith(b"pages free"):
                cur["free"] = u64(s.split()[2])
                section = "zone"
            elif s.startswith(b"protection:"):
                inner = s.partition(b"(")[2].rstrip(b")")
                cur["protection"] = tuple(u64(v.strip()) for v in inner.split(b",") if v.strip())
            elif s.startswith(b"start_pfn:"):
                cur["start_pfn"] = u64(s.split()[1])
            elif s.startswith(b"node_unreclaimable:"):
                cur["counters"]["node_unreclaimable"] = u64(s.split()[1])
            elif section == "pagesets":
                # Only each CPU's count of free pages: the other fields change across kernels.
                if s.startswith(b"count:"):
                    cur["pcp"].append(u64(s.split()[1]))
            else:
                key, value = s.split()
                name, num = key.decode("ascii"), u64(value)
                if section == "node":
                    cur["node_stats"][name] = num
                elif name in _ZONE_SIZES:
                    cur[name] = num
                elif name.startswith(("nr_", "numa_")):
                    cur["counters"][name] = num
                else:
                    cur["watermarks"][name] = num
        except (ValueError, IndexError, UnicodeDecodeError):
            raise ParseError("unreadable zoneinfo line", path=path, lineno=lineno,
                             line=line) from None
    if cur:
        zones.append(_zone(cur))
    return zones


def _zone(d: dict[str, Any]) -> Zone:
    return Zone(**dict(d, pcp=tuple(d["pcp"])))


def zoneinfo(proc_root: str = "/proc") -> list[Zone]:
    """Every zone: free pages, watermarks, sizes, lowmem protection and counters."""
    path = f"{proc_root}/zoneinfo"
    return parse_zoneinfo(read_bytes(path), path)


def zones_end_pfn(proc_root: str = "/proc") -> int | None:
    """One past the highest page frame any zone spans: the end of physical memory as anyone
    may read it (/proc/kpageflags covers the same frames but is root's), so a PFN or size
    can be judged before a privileged read. ``None`` where zoneinfo prints no start_pfn
    (kernels before 4.13)."""
    ends = [z.start_pfn + z.spanned for z in zoneinfo(proc_root)
            if z.spanned and z.start_pfn is not None]
    return max(ends, default=None)
