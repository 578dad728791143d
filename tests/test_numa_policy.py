"""physmem.numa policy against the real kernel: /proc/self/numa_maps and /sys node lists
are the independent witnesses."""
from __future__ import annotations

import errno
import re
import threading

import numpy as np
import pytest

from physmem import InvalidArgument, Mapping
from physmem.mapping import PAGE_SIZE, Advice
from physmem.numa import Policy, bind, get_policy, move, node_of, online_nodes, set_policy

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
        bind(m, {node}, Policy.BIND)
        assert f"bind:{node}" in numa_maps_line(m.address)
        pol = get_policy(m.address)
        assert pol.mode is Policy.BIND and pol.nodes == {node}
        bind(m, node, Policy.INTERLEAVE)
        assert f"interleave:{node}" in numa_maps_line(m.address)
        bind(m, (), Policy.LOCAL)
        assert "local" in numa_maps_line(m.address)
        assert get_policy(m).mode is Policy.LOCAL


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
        set_policy(Policy.BIND, [node])
        seen["policy"] = get_policy()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["policy"].mode is Policy.BIND and seen["policy"].nodes == {node}
    assert get_policy().mode is Policy.DEFAULT  # this thread untouched
    with open(f"/proc/self/task/{threading.get_native_id()}/numa_maps"):
        pass


def test_invalid_nodes_are_named():
    with Mapping.anonymous(MiB) as m:
        with pytest.raises(InvalidArgument, match="not online"):
            bind(m, {1000})
        with pytest.raises(InvalidArgument, match="at least one node"):
            bind(m, (), Policy.BIND)
        with pytest.raises(InvalidArgument, match="out of range"):
            bind(m, {5000})
        with pytest.raises(InvalidArgument, match="mode="):
            bind(m, {0}, 99)
    with pytest.raises(InvalidArgument, match="Mapping or"):
        bind("nope", {0})
    with pytest.raises(InvalidArgument, match="page aligned"):
        bind((PAGE_SIZE + 1, PAGE_SIZE), {0})
