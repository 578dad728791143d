"""The public boundary: every entry point that takes an int, a bool, a size or a choice
turns a wrong-typed value into an InvalidArgument naming the parameter, before it reaches
cffi, numpy or the kernel (never a TypeError, OverflowError or ValueError of theirs).

Each call here is refused before any side effect (the checks come first), so the test
changes nothing on the machine and runs unprivileged as well as as root. The sysctl writes
go to a name no kernel has, so that even a check that let a value through would write
nothing.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import pytest

from physmem import (addressing, dma, hugepages, kpageflags, memfd, numa, overcommit,
                     pagemap, placement, proc, sysctl, topology, track, userfaultfd, validate)
from physmem.analysis import contiguity, runcheck
from physmem.errors import InvalidArgument
from physmem.mapping import Mapping

INTS = (True, 1.5, "x", 2**80)              # wrong for an int parameter
BOOLS = (1, "yes", None, 1.5)               # wrong for a yes/no switch
SIZES = (True, 1.5, 2**80, "lots", None, 0)  # wrong for a size (int or "2M")
NO_SYSCTL = "physmem.no_such_sysctl"


@pytest.fixture(scope="module")
def own() -> Any:
    """This process's pagemap and a one-page anonymous mapping of its own: neither changes
    anything outside the process."""
    pm = pagemap.PageMap()
    m = Mapping.anonymous(4096)
    yield pm, m
    m.close()
    pm.close()


# (label, call taking the bad value, the parameter's name in the message, bad values)
CASES: list[tuple[str, Callable[..., Any], str, tuple[Any, ...]]] = [
    ("PageMap pid", lambda own, v: pagemap.PageMap(v), "pid", INTS + (0, -1)),
    ("PageMap.read address", lambda own, v: own[0].read(v, 4096), "address", INTS),
    ("PageMap.read length", lambda own, v: own[0].read(0, v), "length", INTS),
    ("PageMap.page_heads count", lambda own, v: own[0].page_heads(0, v, 4096), "count", INTS),
    ("PageMap.page_heads page_size", lambda own, v: own[0].page_heads(0, 1, v), "page_size",
     INTS + (0, 4097)),
    ("PageMap.present_ranges method",
     lambda own, v: own[0].present_ranges(0, 4096, method=v), "method",
     ("fast", 1, None, True, b"scan")),
    ("virt_to_phys pid", lambda own, v: pagemap.virt_to_phys(0, v), "pid", INTS),
    ("kpageflags.summarize flags", lambda own, v: kpageflags.summarize(v), "flags",
     ("x", b"1", 1.5, True, 5, np.array([1.5]), [np.array(["a"])])),
    ("check_range address", lambda own, v: addressing.check_range(v, 4096), "address",
     INTS + (1,)),
    ("check_range length", lambda own, v: addressing.check_range(0, v), "length", INTS),
    ("Mapping.anonymous size", lambda own, v: Mapping.anonymous(v), "size", INTS + (0,)),
    ("Mapping.anonymous page_size", lambda own, v: Mapping.anonymous(4096, page_size=v),
     "page_size", INTS + (12345,)),
    ("Mapping.anonymous shared", lambda own, v: Mapping.anonymous(4096, shared=v), "shared",
     BOOLS),
    ("Mapping.advise advice", lambda own, v: own[1].advise(v), "advice", INTS + (12345,)),
    ("Mapping.mlock on_fault", lambda own, v: own[1].mlock(on_fault=v), "on_fault", BOOLS),
    ("MemFd name", lambda own, v: memfd.MemFd(v), "name",
     (True, 1.5, 2**80, None, b"name", "x" * 250, "a\0b")),
    ("MemFd size", lambda own, v: memfd.MemFd("boundary", size=v), "size", INTS),
    ("MemFd sealing", lambda own, v: memfd.MemFd("boundary", sealing=v), "sealing", BOOLS),
    ("numa.set_mempolicy mode", lambda own, v: numa.set_mempolicy(v), "mode", INTS + (99,)),
    ("numa.node_of addresses", lambda own, v: numa.node_of(v), "address",
     (True, 1.5, "x", 2**80, None, [1.5], [-1])),
    ("numa.move node", lambda own, v: numa.move([], v), "node", INTS + (-1,)),
    ("numa.set_balancing mode", lambda own, v: numa.set_balancing(v), "mode",
     (1.5, "x", 2**80, None, 4, -1)),
    ("overcommit.set_policy policy", lambda own, v: overcommit.set_policy(v), "policy",
     INTS + (3, -1)),
    ("overcommit.needed_for_headroom using",
     lambda own, v: overcommit.needed_for_headroom(0, using=v), "using",
     ("pages", 1, None, True)),
    ("overcommit.needed_for_headroom headroom",
     lambda own, v: overcommit.needed_for_headroom(v), "headroom", INTS + (-1,)),
    ("sysctl name", lambda own, v: sysctl.read(v), "sysctl name", (True, 1.5, 2**80, None, "",
                                                                  b"vm.swappiness")),
    ("sysctl.write value", lambda own, v: sysctl.write(NO_SYSCTL, v), "value",
     (1.5, None, [1.5], ["1"], [True, 2**80], object(), bytearray(b"1"))),
    ("DirtyTracker method", lambda own, v: track.DirtyTracker(own[1], method=v), "method",
     ("fast", 1, None, True)),
    ("DirtyTracker ranges", lambda own, v: track.DirtyTracker(v), "ranges",
     ("x", 5, 1.5, {}, None, [])),
    ("DirtyTracker pid", lambda own, v: track.DirtyTracker(own[1], pid=v), "pid", INTS),
    ("UserFaultFd features", lambda own, v: userfaultfd.UserFaultFd(features=v), "features",
     INTS + (1 << 62,)),
    ("UserFaultFd nonblocking", lambda own, v: userfaultfd.UserFaultFd(nonblocking=v),
     "nonblocking", BOOLS),
    ("allocate_contiguous size", lambda own, v: dma.allocate_contiguous(v), "size", SIZES),
    ("allocate_contiguous align", lambda own, v: dma.allocate_contiguous("2M", align=v),
     "align", INTS + (3, 0)),
    ("allocate_contiguous pin", lambda own, v: dma.allocate_contiguous("2M", pin=v), "pin",
     ("yes", 1, None, 1.5)),
    ("allocate_contiguous reserve", lambda own, v: dma.allocate_contiguous("2M", reserve=v),
     "reserve", BOOLS),
    ("allocate_scatter max_segments",
     lambda own, v: dma.allocate_scatter("2M", max_segments=v), "max_segments", INTS + (0,)),
    ("DmaPool size", lambda own, v: dma.DmaPool(v), "size", SIZES),
    ("contiguity.forecast sizes", lambda own, v: contiguity.forecast(sizes=v), "sizes",
     (True, 1.5, 2**80, "lots", [1.5], [None], b"2M", 0)),
    ("runcheck.run_obtainable count", lambda own, v: runcheck.run_obtainable(v, "2M"),
     "count", INTS + (0,)),
    ("runcheck.run_obtainable size", lambda own, v: runcheck.run_obtainable(1, v), "size",
     SIZES),
    ("hugepages.demote_size size", lambda own, v: hugepages.demote_size(v), "size",
     (True, 1.5, 2**80, "lots", None)),
    ("topology.read_pci_device address", lambda own, v: topology.read_pci_device(v),
     "address", (True, 1.5, 5, None, "", "x")),
    ("topology.read_affinity pid", lambda own, v: topology.read_affinity(pid=v), "pid",
     INTS + (0,)),
    ("placement.plan control_loops",
     lambda own, v: placement.plan(topology.discover(), control_loops=v), "control_loops",
     INTS),
    ("placement.plan devices",
     lambda own, v: placement.plan(topology.discover(), devices=v), "devices",
     ("0000:00:00.0", None, 5, [1], [None])),
    ("validate.run sections", lambda own, v: validate.run(v), "sections",
     (5, 1.5, "everything", [1], b"memory", [])),
    ("proc.maps pid", lambda own, v: proc.maps(v), "pid", INTS + (0,)),
]


def test_the_table_covers_the_public_modules():
    """At least 25 entry points, and each parameter kind (int, bool, size, choice) in it."""
    assert len({label for label, *_ in CASES}) == len(CASES) >= 25
    modules = {label.split()[0].split(".")[0] for label, *_ in CASES}
    assert len(modules) >= 15, modules


@pytest.mark.parametrize("label,call,name,bad", CASES, ids=[c[0] for c in CASES])
def test_wrong_values_are_invalid_arguments_naming_the_parameter(own, label, call, name, bad):
    before = (os.listdir("/dev/shm"), numa.get_mempolicy().mode)
    wrong = []
    for value in bad:
        try:
            call(own, value)
        except Exception as err:   # noqa: BLE001 - which one is what is tested
            if type(err) is not InvalidArgument:
                wrong.append(f"{value!r:.40} raised {type(err).__name__}: {err}")
            elif name not in str(err):
                wrong.append(f"{value!r:.40}: the message does not name {name!r}: {err}")
        else:
            wrong.append(f"{value!r:.40} was accepted")
    assert not wrong, f"{label}:\n" + "\n".join(wrong)
    assert (os.listdir("/dev/shm"), numa.get_mempolicy().mode) == before
