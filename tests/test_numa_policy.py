"""physmem.numa policy against the real kernel: /proc/self/numa_maps and /sys node lists
are the independent witnesses."""
from __future__ import annotations

import errno
import json
import os
import re
import resource
import subprocess
import sys
import threading

import numpy as np
import pytest

from physmem import InvalidArgument, Mapping
from physmem.mapping import PAGE_SIZE, Advice
from physmem.numa import MemPolicyMode, bind, get_mempolicy, move, node_of, online_nodes, set_mempolicy
from physmem.numa.policy import NOT_PRESENT, ZERO_PAGE_OR_UNMAPPED

from conftest import python_env

MiB = 1 << 20


def numa_maps_line(address: int) -> str:
    with open("/proc/self/numa_maps") as f:
        for line in f:
            if int(line.split()[0], 16) == address:
                return line
    raise AssertionError(f"{address:#x} not in numa_maps")


def node_counts(line: str) -> dict[int, int]:
    return {int(n): int(c) for n, c in re.findall(r"\bN(\d+)=(\d+)", line)}


def first_node() -> int:
    return min(online_nodes())


def test_online_nodes_match_sysfs():
    text = open("/sys/devices/system/node/online").read().strip()
    assert str(first_node()) in text


def test_bind_shows_in_numa_maps_and_get_policy():
    node = first_node()
    with Mapping.anonymous(4 * MiB) as m:
        bind(m, {node}, MemPolicyMode.BIND)
        assert f"bind:{node}" in numa_maps_line(m.address)
        pol = get_mempolicy(m.address)
        assert pol.mode is MemPolicyMode.BIND and pol.nodes == {node}
        bind(m, node, MemPolicyMode.INTERLEAVE)
        assert f"interleave:{node}" in numa_maps_line(m.address)
        bind(m, (), MemPolicyMode.LOCAL)
        assert "local" in numa_maps_line(m.address)
        assert get_mempolicy(m).mode is MemPolicyMode.LOCAL


def test_node_of_agrees_with_numa_maps():
    with Mapping.anonymous(8 * MiB) as m:
        m.advise(Advice.DONTDUMP)  # its own VMA: no neighbour merged into its numa_maps line
        m.touch(0, 3 * MiB, write=True)
        nodes = node_of(m)  # one entry per page
        assert nodes.dtype == np.int32 and len(nodes) == 8 * MiB // PAGE_SIZE
        present = nodes[nodes >= 0]
        counts = node_counts(numa_maps_line(m.address))
        assert {n: int((present == n).sum()) for n in counts} == counts
        assert int((nodes == -errno.ENOENT).sum()) == 5 * MiB // PAGE_SIZE
        assert node_of(m.address) == nodes[0]  # an int in, an int out
        arr = node_of(np.array([m.address + 5, m.address + 7 * MiB], dtype=np.uint64))
        assert arr.tolist() == [nodes[0], -errno.ENOENT]


def test_move_to_node_reports_each_page():
    node = first_node()
    with Mapping.anonymous(MiB) as m:
        m.touch(0, MiB // 2, write=True)
        status = move(m, node)
        half = MiB // 2 // PAGE_SIZE
        assert (status[:half] == node).all() and (status[half:] == -errno.ENOENT).all()
        assert (node_of(m)[:half] == node).all()
        with pytest.raises(InvalidArgument, match="not online"):
            move(m, 1023)


def test_set_policy_is_per_thread():
    node = first_node()
    seen = {}

    def worker():
        set_mempolicy(MemPolicyMode.BIND, [node])
        seen["policy"] = get_mempolicy()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["policy"].mode is MemPolicyMode.BIND and seen["policy"].nodes == {node}
    assert get_mempolicy().mode is MemPolicyMode.DEFAULT  # this thread untouched
    with open(f"/proc/self/task/{threading.get_native_id()}/numa_maps"):
        pass


def test_invalid_nodes_are_named():
    with Mapping.anonymous(MiB) as m:
        with pytest.raises(InvalidArgument, match="not online"):
            bind(m, {1000})
        with pytest.raises(InvalidArgument, match="at least one node"):
            bind(m, (), MemPolicyMode.BIND)
        with pytest.raises(InvalidArgument, match="out of range"):
            bind(m, {5000})
        with pytest.raises(InvalidArgument, match="mode="):
            bind(m, {0}, 99)
    with pytest.raises(InvalidArgument, match="Mapping or"):
        bind("nope", {0})
    with pytest.raises(InvalidArgument, match="page aligned"):
        bind((PAGE_SIZE + 1, PAGE_SIZE), {0})


def pagemap_pfn(address: int) -> int | None:
    """PFN of the page at ``address`` from a raw read of /proc/self/pagemap (None: absent)."""
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        entry = int.from_bytes(os.pread(fd, 8, address // PAGE_SIZE * 8), "little")
    finally:
        os.close(fd)
    return entry & ((1 << 55) - 1) if entry >> 63 & 1 else None


def kpageflags(pfn: int) -> int:
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        return int.from_bytes(os.pread(fd, 8, pfn * 8), "little")
    finally:
        os.close(fd)


KPF_ZERO_PAGE = 24  # include/uapi/linux/kernel-page-flags.h


def test_node_of_names_the_zero_page(is_root):
    # A page that was only read maps the shared zero page; move_pages reports -EFAULT for
    # it, which must not be mistaken for "unmapped".
    with Mapping.anonymous(3 * PAGE_SIZE) as m:
        m.advise(Advice.NOHUGEPAGE)  # a 4 KiB zero page, not the huge one
        m.touch(0, PAGE_SIZE)  # read only
        m.touch(PAGE_SIZE, PAGE_SIZE, write=True)
        zero_pfn = pagemap_pfn(m.address)
        assert zero_pfn is not None and kpageflags(zero_pfn) >> KPF_ZERO_PAGE & 1
        assert node_of(m).tolist() == [ZERO_PAGE_OR_UNMAPPED, first_node(), NOT_PRESENT]
        assert ZERO_PAGE_OR_UNMAPPED == -errno.EFAULT and NOT_PRESENT == -errno.ENOENT
        gone = m.address
    assert node_of(gone) == ZERO_PAGE_OR_UNMAPPED  # unmapped: the same code
    doc = " ".join(node_of.__doc__.split())
    assert "zero page" in doc and "ZERO_PAGE_OR_UNMAPPED" in doc


BAD_NUMA_CALLS = [
    ("address", lambda m: get_mempolicy(-1)),
    ("address", lambda m: get_mempolicy(2**64)),
    ("address", lambda m: get_mempolicy(4096.0)),
    ("pid", lambda m: node_of(m.address, pid=2**40)),
    ("pid", lambda m: node_of(m.address, pid=-1)),
    ("pid", lambda m: node_of(m.address, pid=1.0)),
    ("address", lambda m: node_of(-1)),
    ("address", lambda m: node_of(3.7)),
    ("address", lambda m: node_of(2**64)),
    ("addresses entry", lambda m: node_of([m.address, 2**64])),
    ("addresses", lambda m: node_of([m.address, -1])),
    ("addresses", lambda m: node_of(np.array([1.5, 2.5]))),
    ("addresses", lambda m: node_of([[1, 2], [3]])),
    ("pid", lambda m: move(m, 0, pid=2**40)),
    ("node", lambda m: move(m, 2**64)),
    ("node", lambda m: move(m, 0.0)),
    ("node", lambda m: move(m, [0])),
    ("nodes", lambda m: bind(m, 0.0)),
    ("nodes", lambda m: bind(m, [0.5])),
    ("nodes", lambda m: bind(m, 2**64)),
    ("nodes", lambda m: set_mempolicy(MemPolicyMode.BIND, [1.0])),
    ("mode", lambda m: bind(m, 0, 2.0)),
    ("mode", lambda m: set_mempolicy(2**64)),
    ("target", lambda m: bind((m.address, 2**64), 0)),
    ("target", lambda m: bind((-4096, PAGE_SIZE), 0)),
    ("target", lambda m: bind((float(m.address), PAGE_SIZE), 0)),
]


@pytest.mark.parametrize("match,call", BAD_NUMA_CALLS,
                         ids=[f"{i}-{m}" for i, (m, _) in enumerate(BAD_NUMA_CALLS)])
def test_out_of_range_and_non_integer_arguments(match, call):
    # Unchecked, get_mempolicy(-1) and node_of(pid=2**40) would raise OverflowError from
    # cffi, and floats be truncated silently (bind(m, 0.5) binding to node 0).
    with Mapping.anonymous(PAGE_SIZE) as m:
        with pytest.raises(InvalidArgument, match=rf"\b{match}\b"):
            call(m)
        assert get_mempolicy(m).mode is MemPolicyMode.DEFAULT  # nothing was applied


def test_numa_exports_the_status_codes():
    # README promised `from physmem.numa import NOT_PRESENT`; it raised ImportError.
    from physmem import numa

    assert numa.NOT_PRESENT == -errno.ENOENT and numa.ZERO_PAGE_OR_UNMAPPED == -errno.EFAULT
    assert {"NOT_PRESENT", "ZERO_PAGE_OR_UNMAPPED"} <= set(numa.__all__)


def maps_gap_after(address: int) -> int:
    """First unmapped address at or after ``address``, from a raw read of /proc/self/maps."""
    at = address
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= at < hi:
                at = hi
    return at


def test_an_end_address_given_as_length_is_named_in_a_bottom_up_layout():
    # With an unlimited stack the kernel lays mmap out bottom-up from a third of user space,
    # so (a, a + 4096) ends inside user space and the "not mapped" check is what refuses it.
    # CI once drew a top-down base low enough for the same to happen by chance.
    code = """if True:
        import json
        from physmem import InvalidArgument, Mapping
        from physmem.numa import move, node_of
        m = Mapping.anonymous(4096)
        m.touch(write=True)
        a = m.address
        out = {"a": a, "stack": [int(l.split("-")[0], 16) for l in open("/proc/self/maps")
                                 if l.rstrip().endswith("[stack]")][0]}
        for name, call in (("move", lambda: move((a, a + 4096), 0)),
                           ("node_of", lambda: node_of((a, a + 4096)))):
            try:
                call()
                out[name] = "no error"
            except InvalidArgument as e:
                out[name] = str(e)
        print(json.dumps(out))
    """

    if resource.getrlimit(resource.RLIMIT_STACK)[1] != resource.RLIM_INFINITY:
        pytest.skip("the hard stack limit is not unlimited, so a child cannot ask for the "
                    "bottom-up layout")

    def unlimited_stack() -> None:
        resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    env, cwd = python_env()
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, cwd=cwd, timeout=60, preexec_fn=unlimited_stack)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    a = out["a"]
    # The child's own maps show the range ending below its stack, inside user space, so only
    # the mapped check can have answered.
    assert a + a + PAGE_SIZE < out["stack"], f"{a:#x}: the layout was not bottom-up"
    for name in ("move", "node_of"):
        assert re.search(r"not mapped.*the tuple is \(address, length\), not \(start, end\)",
                         out[name]), (name, out[name])


def test_ranges_are_address_and_length_checked_against_what_is_mapped():
    # move((a, a + 4096)) read the end address as a length: MemoryError (255 GiB);
    # move((a, 2**40)) allocated 4 GiB for 52 s; bind((a, 2**64 - 1)) did nothing at all.
    import time

    with Mapping.anonymous(4 * PAGE_SIZE) as m:
        m.touch(write=True)
        a = m.address
        t0 = time.monotonic()
        for call in (lambda: move((a, a + PAGE_SIZE), first_node()),
                     lambda: move((a, 2**63), first_node()),
                     lambda: node_of((a, a + PAGE_SIZE)),
                     lambda: bind((a, 2**64 - 1), first_node())):
            with pytest.raises(InvalidArgument, match=r"\(address, length\)"):
                call()
        # Whether a + 1 TiB passes the end of user space depends on where ASLR put the
        # mapping (it ends inside user space when a < 0x7f0000000000): either refusal will
        # do, as long as it comes at once and without allocating anything.
        with pytest.raises(InvalidArgument, match=r"end of user space|not mapped"):
            move((a, 2**40), first_node())
        assert time.monotonic() - t0 < 5
        hole = maps_gap_after(a)
        with pytest.raises(InvalidArgument, match=f"{hole:#x}.* not mapped") as exc:
            bind((a, hole - a + PAGE_SIZE), first_node())
        assert exc.value.address == hole
        with pytest.raises(InvalidArgument, match="not mapped"):
            move((a, hole - a + PAGE_SIZE), first_node())
        assert get_mempolicy(m).mode is MemPolicyMode.DEFAULT  # nothing was applied
        # The forms that are meant: a tuple is a range, a list or array holds addresses.
        assert move((a, 2 * PAGE_SIZE), first_node()).tolist() == [first_node()] * 2
        assert move([a, a + 3 * PAGE_SIZE], first_node()).tolist() == [first_node()] * 2
        assert node_of((a + PAGE_SIZE, PAGE_SIZE)).tolist() == [first_node()]
        for bad in ((a,), (a, PAGE_SIZE, 1)):
            with pytest.raises(InvalidArgument, match="list or numpy array"):
                node_of(bad)
        with pytest.raises(InvalidArgument, match=r"Mapping or an \(address, length\)"):
            bind([a, PAGE_SIZE], first_node())
        bind((a, 2 * PAGE_SIZE), first_node(), MemPolicyMode.BIND)
        line = next(l for l in open("/proc/self/numa_maps") if int(l.split()[0], 16) == a)
        assert line.split()[1] == f"bind:{first_node()}"
    doc = " ".join(__import__("physmem.numa.policy").numa.policy.__doc__.split())
    assert "a tuple is always a range" in doc


@pytest.mark.parametrize("value", ["1", 1, 1j, None], ids=repr)
@pytest.mark.parametrize("name,call", [
    ("strict", lambda m, v: bind(m, first_node(), strict=v)),
    ("move", lambda m, v: bind(m, first_node(), move=v)),
    ("move_all", lambda m, v: bind(m, first_node(), move_all=v)),
    ("static_nodes", lambda m, v: bind(m, first_node(), static_nodes=v)),
    ("relative_nodes", lambda m, v: bind(m, first_node(), relative_nodes=v)),
    ("static_nodes", lambda m, v: set_mempolicy(MemPolicyMode.BIND, first_node(), static_nodes=v)),
    ("relative_nodes", lambda m, v: set_mempolicy(MemPolicyMode.BIND, first_node(), relative_nodes=v)),
    ("numa_balancing", lambda m, v: set_mempolicy(MemPolicyMode.BIND, first_node(), numa_balancing=v)),
    ("move_all", lambda m, v: move(m, first_node(), move_all=v)),
], ids=lambda x: x if isinstance(x, str) else "")
def test_switches_take_only_bools(name, call, value):
    with Mapping.anonymous(PAGE_SIZE) as m:
        try:
            with pytest.raises(InvalidArgument, match=rf"^{name} must be True or False"):
                call(m, value)
            assert get_mempolicy(m).mode is MemPolicyMode.DEFAULT and get_mempolicy().mode is MemPolicyMode.DEFAULT
        finally:
            set_mempolicy(MemPolicyMode.DEFAULT)
