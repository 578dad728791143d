"""Reprs print addresses in hex, as the kernel's own files do, so they can be compared by eye."""
from __future__ import annotations

import numpy as np

from physmem import proc
from physmem._records import AddressArray
from physmem._runs import RUN_DTYPE
from physmem.dma.pool import DmaBlock
from physmem.proc import IomemRange


def test_a_vma_repr_reads_like_its_maps_line():
    # /proc/self/maps prints "start-end perms offset ..." in hex: the repr shows the same digits.
    with open("/proc/self/maps") as f:
        lines = f.read().splitlines()
    for vma in proc.maps()[:5]:
        text = repr(vma)
        line = next(ln for ln in lines if int(ln.split("-")[0], 16) == vma.start)
        start, end = line.split()[0].split("-")
        assert f"start=0x{start.lstrip('0') or '0'}" in text
        assert f"end=0x{end.lstrip('0') or '0'}" in text
        assert f"offset=0x{line.split()[2].lstrip('0') or '0'}" in text
        assert f"inode={vma.inode}" in text  # not an address: decimal as before


def test_records_and_run_tables_show_addresses_in_hex():
    assert repr(DmaBlock(0x7F0000000000, 0x1_2340_0000, 4096)) == \
        "DmaBlock(address=0x7f0000000000, phys=0x123400000, size=4096)"
    assert repr(IomemRange(0x100000, 0x7FFFFFFF, "System RAM", 0)) == \
        "IomemRange(start=0x100000, end=0x7fffffff, name='System RAM', depth=0)"
    runs = np.zeros(8, RUN_DTYPE)
    runs["vaddr"] = 0x7F0000000000 + np.arange(8) * 0x200000
    runs["paddr"] = 0x40000000
    runs["nbytes"] = 0x200000
    text = repr(runs.view(AddressArray))
    assert text.startswith("AddressArray([(vaddr=0x7f0000000000, paddr=0x40000000, nbytes=2097152)")
    assert "..." in text and text.endswith("8 rows)")
    assert np.array_equal(runs.view(AddressArray).view(np.ndarray), runs)
