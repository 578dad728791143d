"""The run finder against a plain Python walk over the same numbers."""
from __future__ import annotations

import numpy as np
import pytest

from physmem._runs import RUN_DTYPE, find_runs, runs_of


def _walk(values, step, mask, require):
    runs, prev = [], None
    for i, v in enumerate(int(x) for x in values):
        if v & require != require:
            prev = None
            continue
        p = v & mask
        if prev is not None and p == (prev + step) % (1 << 64):
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
        prev = p
    return runs


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("step,mask,require", [(1, (1 << 64) - 1, 0), (4096, (1 << 64) - 1, 0),
                                               (1, (1 << 55) - 1, 1 << 63), (0, 0, 1 << 63)])
def test_find_runs_matches_a_python_walk(seed, step, mask, require):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    # Mostly adjacent numbers, with jumps and entries missing the required bit.
    v = np.cumsum(rng.choice([step, step, step, 0, 7 * step + 3], n)).astype(np.uint64)
    v |= np.where(rng.random(n) < 0.9, np.uint64(1 << 63), np.uint64(0))
    first, length = find_runs(v, step=step, mask=mask, require=require)
    assert first.dtype == np.intp and length.dtype == np.intp
    assert [[a, b] for a, b in zip(first.tolist(), length.tolist())] == _walk(v, step, mask, require)


@pytest.mark.parametrize("seed", range(20))
def test_runs_of_matches_a_python_walk(seed):
    rng = np.random.default_rng(seed)
    m = rng.random(int(rng.integers(0, 300))) < rng.random()
    want = _walk(m.astype(np.uint64), 0, 0, 1)
    got = runs_of(m, first=1000)
    assert got.dtype == np.int64 and got.shape == (len(want), 2)
    assert got.tolist() == [[s + 1000, n] for s, n in want]


def test_one_dtype_for_runs_of_memory():
    from physmem import pagemap

    assert pagemap.RUN_DTYPE is RUN_DTYPE
    assert RUN_DTYPE.names == ("vaddr", "paddr", "nbytes")


def _heads_walk(f, first_pfn, buddy, max_order):
    out = [bool(v & buddy) for v in f]
    for h in [i for i, v in enumerate(f) if v & buddy]:
        order = 0
        while order < max_order:
            size = 2 << order
            if (first_pfn + h) % size or h + size > len(f) \
                    or any(f[h + (size >> 1):h + size]):
                break
            order += 1
        out[h:h + (1 << order)] = [True] * (1 << order)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_extend_free_heads_matches_a_python_walk(seed):
    from physmem._runs import extend_free_heads

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    buddy = 1 << 10
    f = rng.choice([0, 0, 0, 0, buddy, 1 << 5, buddy | 1], n).astype(np.int64)
    first = int(rng.integers(0, 64))
    order = int(rng.integers(0, 8))
    got = extend_free_heads(f, first, buddy, order)
    assert got.dtype == bool
    assert got.tolist() == _heads_walk(f.tolist(), first, buddy, order)
