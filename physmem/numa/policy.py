"""NUMA memory policy and page placement: mbind, set_mempolicy, get_mempolicy, move_pages.

Through the raw syscalls; libnuma is not needed. Node masks are sets of node numbers.

Memory is named the same way everywhere here, by type, never by guessing from the values:

- a :class:`~physmem.Mapping`: all of its pages;
- a ``tuple`` ``(address, length)``: the range of ``length`` bytes from the page-aligned
  ``address``, which must be mapped whole in this process (a tuple is always a range, never
  two addresses);
- a ``list`` or numpy array of addresses (and, for :func:`node_of`, a single int): the pages
  holding those addresses, mapped or not (:func:`node_of` and :func:`move` only).
"""
from __future__ import annotations

import dataclasses
import enum
import errno as _errno
from typing import Any, Iterable, Sequence

import numpy as np

from .._args import (as_bool, as_enum, as_int, as_iterable, as_nonneg, as_pid, as_positive,
                     as_uint64_array)
from .._raw import SINCE, missing, older_than
from .._raw import mempolicy as _raw
from ..errors import InvalidArgument, error_from_errno
from ..addressing import task_size
from ..mapping import PAGE_SIZE, Mapping, check_mapped

__all__ = ["MemPolicyMode", "MemPolicy", "bind", "set_mempolicy", "get_mempolicy", "node_of",
           "move", "possible_nodes", "online_nodes", "NOT_PRESENT", "ZERO_PAGE_OR_UNMAPPED"]

# Node masks handed to the kernel: 1024 bits, the largest MAX_NUMNODES (NODES_SHIFT=10).
_MASK_BITS = 1024
_MASK_WORDS = _MASK_BITS // 64

#: ``node_of``/``move`` status for a page with no physical frame (-ENOENT): never touched,
#: swapped out, or PROT_NONE.
NOT_PRESENT = -_errno.ENOENT
#: ``node_of``/``move`` status (-EFAULT) for an address with no page of its own: either not
#: mapped at all, or mapped but only read so far, so that it shows the kernel's shared zero
#: page (which belongs to no node and is never migrated). Write to it to get a page.
ZERO_PAGE_OR_UNMAPPED = -_errno.EFAULT


class MemPolicyMode(enum.IntEnum):
    """Memory policy modes (``MPOL_*``)."""

    DEFAULT = _raw.MPOL_DEFAULT
    PREFERRED = _raw.MPOL_PREFERRED
    BIND = _raw.MPOL_BIND
    INTERLEAVE = _raw.MPOL_INTERLEAVE
    LOCAL = _raw.MPOL_LOCAL
    PREFERRED_MANY = _raw.MPOL_PREFERRED_MANY
    WEIGHTED_INTERLEAVE = _raw.MPOL_WEIGHTED_INTERLEAVE


_MODE_FLAGS = _raw.MPOL_F_STATIC_NODES | _raw.MPOL_F_RELATIVE_NODES | _raw.MPOL_F_NUMA_BALANCING


@dataclasses.dataclass(frozen=True)
class MemPolicy:
    """A memory policy: ``mode``, the ``nodes`` it names, and mode flags
    (``static_nodes``, ``relative_nodes``, ``numa_balancing``)."""

    mode: MemPolicyMode
    nodes: frozenset[int]
    static_nodes: bool = False
    relative_nodes: bool = False
    numa_balancing: bool = False


def possible_nodes(sys_root: str = "/sys") -> frozenset[int]:
    """Node numbers the kernel could ever have (``<sys_root>/devices/system/node/possible``);
    {0} on a kernel without CONFIG_NUMA (no such file)."""
    from .._syntax import parse_cpulist
    from .._sysfs import read_parsed

    nodes = read_parsed(f"{sys_root}/devices/system/node/possible", parse_cpulist)
    return frozenset({0}) if nodes is None else nodes


def online_nodes(sys_root: str = "/sys") -> frozenset[int]:
    """Node numbers online now (``<sys_root>/devices/system/node/online``); {0} without NUMA."""
    from .._syntax import parse_cpulist
    from .._sysfs import read_parsed

    nodes = read_parsed(f"{sys_root}/devices/system/node/online", parse_cpulist)
    return frozenset({0}) if nodes is None else nodes


def _nodes(nodes: int | Iterable[int], name: str = "nodes") -> frozenset[int]:
    if not isinstance(nodes, Iterable):
        nodes = (as_int(nodes, name),)
    items = list(as_iterable(nodes, name, "a node number or an iterable of them"))
    out = frozenset(as_int(n, f"{name} entry") for n in items)
    bad = sorted(n for n in out if not 0 <= n < _MASK_BITS)
    if bad:
        raise InvalidArgument(f"{name}={sorted(out)}: {bad} out of range 0..{_MASK_BITS - 1}")
    return out


def _mask(nodes: frozenset[int]) -> Any:
    words = np.zeros(_MASK_WORDS, dtype=np.uint64)
    for n in nodes:
        words[n // 64] |= np.uint64(1 << (n % 64))
    return words


def _unmask(words: np.ndarray) -> frozenset[int]:
    return frozenset(i * 64 + b for i, w in enumerate(words.tolist()) for b in range(64)
                     if w >> b & 1)


def _mode(mode: MemPolicyMode | int, flags: int = 0) -> MemPolicyMode:
    return as_enum(mode, MemPolicyMode, "mode")


def _policy_error(err: int, what: str, mode: MemPolicyMode, nodes: frozenset[int],
                  address: int | None = None) -> Exception:
    feature = f"memory policy MPOL_{mode.name}"
    if err == _errno.EINVAL and feature in SINCE and older_than(feature):
        return missing(feature, err=_errno.EINVAL)
    if err == _errno.ENOSYS:
        return missing(f"syscall {what.split()[0]}",
                           hint="the kernel is built without CONFIG_NUMA")
    if err == _errno.EINVAL:
        offline = sorted(nodes - online_nodes())
        if offline:
            return InvalidArgument(f"nodes={sorted(nodes)}: node(s) {offline} are not online "
                                   f"(online: {sorted(online_nodes())})")
        if not nodes and mode not in (MemPolicyMode.DEFAULT, MemPolicyMode.LOCAL,
                                      MemPolicyMode.PREFERRED):
            return InvalidArgument(f"mode {mode.name} needs at least one node in nodes")
        if nodes and mode in (MemPolicyMode.DEFAULT, MemPolicyMode.LOCAL):
            return InvalidArgument(f"mode {mode.name} takes no nodes, got {sorted(nodes)}")
    return error_from_errno(err, what, address=address)


def _range(target: Any, also: str = "") -> tuple[int, int]:
    """(address, length) of a Mapping or an ``(address, length)`` tuple, checked once: page
    aligned, within user space and mapped whole in this process."""
    if isinstance(target, Mapping):
        return target.address, target.size
    if not isinstance(target, tuple) or len(target) != 2:
        raise InvalidArgument(f"target={target!r:.80} must be a Mapping or an (address, "
                              f"length) tuple{also}")
    address = as_nonneg(target[0], "target address")
    length = as_positive(target[1], "target length")
    if address % PAGE_SIZE:
        raise InvalidArgument(f"target=({address:#x}, {length}): the address must be page "
                              "aligned")
    not_an_end = "; the tuple is (address, length), not (start, end)"
    top = task_size()
    if address + length > top:
        raise InvalidArgument(
            f"target=({address:#x}, {length:#x}) reaches past the end of user space "
            f"({top:#x}){not_an_end}"
            + ("; for a set of addresses pass a list or numpy array" if also else ""),
            address=address)
    # A length no smaller than the address is most likely an end address. Whether such a
    # range passes the end of user space (above) depends on where mmap put it, so both
    # refusals carry the same hint.
    check_mapped(address, length, f"target=({address:#x}, {length:#x})",
                 not_an_end if length >= address else "")
    return address, length


def _page_addresses(address: int, length: int) -> np.ndarray:
    return address + np.arange(0, length, PAGE_SIZE, dtype=np.uint64)


def bind(target: Mapping | tuple[int, int], nodes: int | Iterable[int] = (),
         mode: MemPolicyMode | int = MemPolicyMode.BIND, *, strict: bool = False,
         move: bool = False, move_all: bool = False, static_nodes: bool = False,
         relative_nodes: bool = False) -> None:
    """mbind a Mapping or ``(address, length)`` range to ``nodes`` under ``mode``.

    New pages follow the policy; ``move`` also migrates the pages already there (``strict``
    fails if some could not be placed, ``move_all`` moves shared pages too, needs
    CAP_SYS_NICE). The range must be mapped whole (InvalidArgument names the first address
    that is not).
    """
    address, length = _range(target)
    mode = _mode(mode)
    node_set = _nodes(nodes)
    strict, move = as_bool(strict, "strict"), as_bool(move, "move")
    move_all = as_bool(move_all, "move_all")
    static_nodes = as_bool(static_nodes, "static_nodes")
    relative_nodes = as_bool(relative_nodes, "relative_nodes")
    flags = (_raw.MPOL_MF_STRICT if strict else 0) | (_raw.MPOL_MF_MOVE if move else 0) | \
        (_raw.MPOL_MF_MOVE_ALL if move_all else 0)
    mode_flags = (_raw.MPOL_F_STATIC_NODES if static_nodes else 0) | \
        (_raw.MPOL_F_RELATIVE_NODES if relative_nodes else 0)
    words = _mask(node_set)
    ret = _raw.mbind(address, length, int(mode) | mode_flags, words if node_set else None,
                     _MASK_BITS, flags)
    if ret < 0:
        raise _policy_error(-ret, f"mbind {mode.name} {sorted(node_set)} on "
                            f"{address:#x}+{length:#x}", mode, node_set, address)


def set_mempolicy(mode: MemPolicyMode | int, nodes: int | Iterable[int] = (), *,
               static_nodes: bool = False, relative_nodes: bool = False,
               numa_balancing: bool = False) -> None:
    """set_mempolicy: the calling thread's default policy for new allocations."""
    mode = _mode(mode)
    node_set = _nodes(nodes)
    static_nodes = as_bool(static_nodes, "static_nodes")
    relative_nodes = as_bool(relative_nodes, "relative_nodes")
    numa_balancing = as_bool(numa_balancing, "numa_balancing")
    mode_flags = (_raw.MPOL_F_STATIC_NODES if static_nodes else 0) | \
        (_raw.MPOL_F_RELATIVE_NODES if relative_nodes else 0) | \
        (_raw.MPOL_F_NUMA_BALANCING if numa_balancing else 0)
    words = _mask(node_set)
    ret = _raw.set_mempolicy(int(mode) | mode_flags, words if node_set else None, _MASK_BITS)
    if ret == -_errno.EINVAL and numa_balancing and older_than("mode flag MPOL_F_NUMA_BALANCING"):
        raise missing("mode flag MPOL_F_NUMA_BALANCING", err=_errno.EINVAL)
    if ret < 0:
        raise _policy_error(-ret, f"set_mempolicy {mode.name} {sorted(node_set)}", mode,
                            node_set)


def get_mempolicy(address: int | Mapping | None = None) -> MemPolicy:
    """get_mempolicy: the calling thread's policy, or (with ``address``) the policy of the
    memory at that address."""
    words = np.zeros(_MASK_WORDS, dtype=np.uint64)
    flags = 0
    addr = 0
    if address is not None:
        addr = address.address if isinstance(address, Mapping) else as_nonneg(address, "address")
        flags = _raw.MPOL_F_ADDR
    ret, raw = _raw.get_mempolicy(words, _MASK_BITS, addr, flags)
    if ret < 0:
        if ret == -_errno.EFAULT and address is not None:
            raise InvalidArgument(f"address={addr:#x} is not mapped")
        raise error_from_errno(-ret, "get_mempolicy", address=addr or None)
    return MemPolicy(
        mode=MemPolicyMode(raw & ~_MODE_FLAGS), nodes=_unmask(words),
        static_nodes=bool(raw & _raw.MPOL_F_STATIC_NODES),
        relative_nodes=bool(raw & _raw.MPOL_F_RELATIVE_NODES),
        numa_balancing=bool(raw & _raw.MPOL_F_NUMA_BALANCING))


def _pages(addresses: Any) -> tuple[np.ndarray, bool]:
    if isinstance(addresses, (Mapping, tuple)):
        return _page_addresses(*_range(addresses, " (or a list or numpy array of "
                                                  "addresses)")), False
    if addresses is None or np.isscalar(addresses):   # one address, or a wrong one
        return np.array([as_nonneg(addresses, "address")], dtype=np.uint64), True
    return as_uint64_array(addresses, "addresses", None).reshape(-1), False


def node_of(addresses: Any, *, pid: int = 0) -> Any:
    """The NUMA node of the page at each address (move_pages query): an int for an int, an
    int32 array for a list or array of addresses, a Mapping or an ``(address, length)``
    tuple (one entry per page; the range must be mapped). ``pid`` 0 is this process.

    Negative entries are -errno, as the kernel reports them: ``NOT_PRESENT`` (-ENOENT) for a
    page with no frame (never touched, swapped out), ``ZERO_PAGE_OR_UNMAPPED`` (-EFAULT) for
    an address that is unmapped *or* mapped but only read so far (it shows the shared zero
    page, which is on no node; a write gives it a page of its own)."""
    pid = as_pid(pid, allow_zero=True)
    pages, scalar = _pages(addresses)
    pages = pages & ~np.uint64(PAGE_SIZE - 1)
    status = np.empty(len(pages), dtype=np.int32)
    if len(pages):
        ret = _raw.move_pages(pid, pages, None, status, 0)
        if ret < 0:
            if ret == -_errno.ENOSYS:
                raise missing("syscall move_pages",
                                  hint="the kernel is built without CONFIG_NUMA/MIGRATION")
            raise error_from_errno(-ret, "move_pages query", pid=pid or None)
    return int(status[0]) if scalar else status


def move(target: Mapping | tuple[int, int] | Sequence[int] | np.ndarray, node: int, *,
         pid: int = 0, move_all: bool = False) -> np.ndarray:
    """Migrate the pages of a Mapping, an ``(address, length)`` tuple (a range mapped whole
    in this process), or a list or numpy array of page addresses to ``node`` (move_pages).
    Returns each page's node afterwards, or -errno for that page (``NOT_PRESENT`` for a page
    never touched, ``ZERO_PAGE_OR_UNMAPPED`` for one only read or not mapped)."""
    node = as_int(node, "node", lo=0, hi=_MASK_BITS - 1)
    pid = as_pid(pid, allow_zero=True)
    move_all = as_bool(move_all, "move_all")
    pages, _ = _pages(target)
    pages = pages & ~np.uint64(PAGE_SIZE - 1)
    if node not in online_nodes():
        raise InvalidArgument(f"node={node} is not online (online: {sorted(online_nodes())})")
    nodes = np.full(len(pages), node, dtype=np.int32)
    status = np.empty(len(pages), dtype=np.int32)
    if len(pages):
        ret = _raw.move_pages(pid, pages, nodes, status,
                              _raw.MPOL_MF_MOVE_ALL if move_all else _raw.MPOL_MF_MOVE)
        if ret < 0:
            if ret == -_errno.ENOSYS:
                raise missing("syscall move_pages")
            raise error_from_errno(-ret, f"move_pages to node {node}", pid=pid or None)
    return status

