"""The vocabularies of physical memory analysis and the one colour table they share.

:class:`PageClass` says what a frame holds (the physical map); :class:`Frame` refines it by
what a frame means for a contiguous allocation (movable, reclaimable, blocking, ...), and
:class:`BlockState` says what a whole aligned block can become. A meaning has one colour in
every picture and legend (:data:`COLOURS`); the ``*_INFO`` tables pair it with each
vocabulary's label.
"""
from __future__ import annotations

import enum

import numpy as np

__all__ = ["COLOURS", "PageClass", "CLASS_INFO", "N_CLASSES", "Frame", "FRAME_INFO",
           "N_FRAMES", "FIRST_BLOCKER", "BlockState", "BLOCK_STATE_INFO", "PAGE_CLASS_FRAME"]

COLOURS: dict[str, str] = {
    "hole": "#ffffff",
    "free": "#b8e186",
    "anon": "#d7301f",
    "file": "#4393c3",
    "movable": "#9ecae1",
    "reclaimable": "#c6dbef",
    "slab": "#ff7f00",
    "pgtable": "#6a3d9a",
    "hugetlb": "#e7298a",
    "pool": "#f1b6da",
    "reserved": "#252525",
    "noflags": "#969696",
    "uninitialised": "#e0e0e0",
    "mlocked": "#8c510a",
    "offline": "#000080",
    "other": "#fdd835",
    "zone_edge": "#00a0a0",
    "blocked": "#67001f",
}


class PageClass(enum.IntEnum):
    """What a frame holds, in the order a cell's colour is chosen on a tie (lowest wins)."""

    HOLE = 0
    FREE = 1
    ANON = 2
    FILE = 3
    SLAB = 4
    PGTABLE = 5
    HUGETLB = 6
    RESERVED = 7
    NOFLAGS = 8
    UNMANAGED = 9
    OTHER = 10


# class -> (legend label, colour, text-strip character)
CLASS_INFO: dict[PageClass, tuple[str, str, str]] = {
    PageClass.HOLE: ("hole / not RAM", COLOURS["hole"], " "),
    PageClass.FREE: ("free (buddy)", COLOURS["free"], "."),
    PageClass.ANON: ("anonymous", COLOURS["anon"], "a"),
    PageClass.FILE: ("page cache", COLOURS["file"], "f"),
    PageClass.SLAB: ("slab", COLOURS["slab"], "s"),
    PageClass.PGTABLE: ("page tables", COLOURS["pgtable"], "p"),
    PageClass.HUGETLB: ("hugetlb", COLOURS["hugetlb"], "H"),
    PageClass.RESERVED: ("reserved", COLOURS["reserved"], "R"),
    PageClass.NOFLAGS: ("allocated, no flags", COLOURS["noflags"], "k"),
    PageClass.UNMANAGED: ("not yet given to the allocator", COLOURS["uninitialised"], "u"),
    PageClass.OTHER: ("other", COLOURS["other"], "?"),
}
N_CLASSES = len(PageClass)


class Frame(enum.IntEnum):
    """What one frame means for a contiguous allocation. Codes from HOLE on are blockers."""

    FREE = 0
    MOVABLE = 1
    UNINITIALISED = 2
    RECLAIMABLE = 3     # clean, unmapped page cache: reclaim frees it, no migration needed
    HOLE = 4
    ZONE_EDGE = 5       # not a frame state: a block that crosses a zone boundary
    RESERVED = 6
    SLAB = 7
    PGTABLE = 8
    HUGETLB = 9
    KERNEL = 10         # allocated, no flags: kernel pages (and per-CPU free lists)
    UNEVICTABLE = 11    # mlocked/unevictable while compact_unevictable_allowed is 0
    OFFLINE = 12
    UNMOVABLE = 13      # anything else: non-LRU page cache/anon (pinned, isolated), poison


N_FRAMES = len(Frame)
FIRST_BLOCKER = Frame.HOLE

# frame class -> (legend label, colour)
FRAME_INFO: dict[Frame, tuple[str, str]] = {
    Frame.FREE: ("free (buddy)", COLOURS["free"]),
    Frame.MOVABLE: ("movable (LRU)", COLOURS["movable"]),
    Frame.UNINITIALISED: ("not yet initialised", COLOURS["uninitialised"]),
    Frame.RECLAIMABLE: ("clean page cache", COLOURS["reclaimable"]),
    Frame.HOLE: ("hole / not RAM", COLOURS["hole"]),
    Frame.ZONE_EDGE: ("zone boundary", COLOURS["zone_edge"]),
    Frame.RESERVED: ("reserved", COLOURS["reserved"]),
    Frame.SLAB: ("slab", COLOURS["slab"]),
    Frame.PGTABLE: ("page tables", COLOURS["pgtable"]),
    Frame.HUGETLB: ("hugetlb", COLOURS["hugetlb"]),
    Frame.KERNEL: ("kernel, no flags", COLOURS["noflags"]),
    Frame.UNEVICTABLE: ("mlocked", COLOURS["mlocked"]),
    Frame.OFFLINE: ("offline / poisoned", COLOURS["offline"]),
    Frame.UNMOVABLE: ("unmovable, other", COLOURS["other"]),
}

# The frame class of each page class, before contiguity refines anonymous and page cache
# frames (by KPF_LRU, cleanliness, mlock) and marks offline ones.
PAGE_CLASS_FRAME = np.zeros(N_CLASSES, dtype=np.uint8)
for _pc, _fr in ((PageClass.HOLE, Frame.HOLE), (PageClass.FREE, Frame.FREE),
                 (PageClass.ANON, Frame.MOVABLE), (PageClass.FILE, Frame.MOVABLE),
                 (PageClass.SLAB, Frame.SLAB), (PageClass.PGTABLE, Frame.PGTABLE),
                 (PageClass.HUGETLB, Frame.HUGETLB), (PageClass.RESERVED, Frame.RESERVED),
                 (PageClass.NOFLAGS, Frame.KERNEL), (PageClass.UNMANAGED, Frame.UNINITIALISED),
                 (PageClass.OTHER, Frame.UNMOVABLE)):
    PAGE_CLASS_FRAME[_pc] = _fr


class BlockState(enum.IntEnum):
    """State of one naturally aligned block of a hugepage size."""

    FREE = 0
    POOL = 1
    COMPACTABLE = 2
    UNINITIALISED = 3
    BLOCKED = 4


# block state -> (legend label, colour)
BLOCK_STATE_INFO: dict[BlockState, tuple[str, str]] = {
    BlockState.FREE: ("free now", COLOURS["free"]),
    BlockState.POOL: ("free hugetlb page", COLOURS["pool"]),
    BlockState.COMPACTABLE: ("free after compaction", COLOURS["movable"]),
    BlockState.UNINITIALISED: ("not yet initialised", COLOURS["uninitialised"]),
    BlockState.BLOCKED: ("blocked", COLOURS["blocked"]),
}
