"""Page size, address-space limits and argument checks shared by the page-table readers."""
from __future__ import annotations

import functools
import os
import platform

import numpy as np

from ._args import U64_MAX, as_nonneg, as_uint64_array
from .errors import InvalidArgument

__all__ = ["page_size", "page_shift", "task_size", "check_range", "as_address_array"]


@functools.cache
def page_size() -> int:
    """The base page size of this kernel in bytes (never assumed to be 4096)."""
    return os.sysconf("SC_PAGE_SIZE")


@functools.cache
def page_shift() -> int:
    return page_size().bit_length() - 1


@functools.cache
def task_size() -> int:
    """First virtual address beyond user space (TASK_SIZE) for this architecture.

    The kernel does not export it; it follows from the paging mode. pagemap reads past it
    return end of file (the readers report those pages as not present) and PAGEMAP_SCAN
    refuses ranges that reach past it with EFAULT, so scans stop here.
    """
    machine = platform.machine()
    if machine == "x86_64":
        bits = 56 if _cpu_has_flag("la57") else 47
        return (1 << bits) - page_size()
    if machine in ("aarch64", "arm64"):
        return 1 << 52
    if machine.startswith("ppc64"):
        return 1 << 52
    if machine == "s390x":
        return 1 << 53
    if machine == "riscv64":
        return 1 << 56
    return 1 << 47


def _cpu_has_flag(flag: str) -> bool:
    # Imported here: physmem.proc imports mapping, which imports this module.
    from .proc._cpuinfo import cpu_flags

    try:
        return flag in cpu_flags()
    except OSError:
        return False


def check_range(address: object, length: object) -> tuple[int, int]:
    """Validate a page-aligned [address, address + length) range; return it as ints.

    Any range of the 64-bit address space is valid, not only user space below
    :func:`task_size`: /proc/<pid>/maps lists mappings above it (x86's ``[vsyscall]``), and
    pagemap readers report such pages as not present, as the kernel's page-types does.
    """
    addr = as_nonneg(address, "address")
    size = as_nonneg(length, "length")
    ps = page_size()
    if addr % ps:
        raise InvalidArgument(
            f"address {addr:#x} is not aligned to the page size ({ps} bytes); "
            f"round it down to {addr - addr % ps:#x}", address=addr)
    if size % ps:
        raise InvalidArgument(
            f"length {size:#x} is not a multiple of the page size ({ps} bytes)", address=addr)
    if addr + size > U64_MAX + 1:
        raise InvalidArgument(
            f"range address={addr:#x} length={size:#x} runs past the end of the 64-bit "
            f"address space; the largest length at this address is {U64_MAX + 1 - addr:#x}",
            address=addr)
    return addr, size


def as_address_array(addresses: object) -> np.ndarray:
    """Virtual addresses as a checked uint64 array (any 64-bit address: see check_range)."""
    return as_uint64_array(addresses, "address", None)

