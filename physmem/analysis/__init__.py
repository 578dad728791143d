"""What physical memory holds and what it could give, from /proc/kpageflags and friends.

* :mod:`.classes` - what a frame holds, what it means for a contiguous allocation, what a
  block can become, and the one colour table they share;
* :mod:`.physmap` - every frame classified, counted per cell; free runs;
* :mod:`.fragmentation` - free memory per zone and how much comes in large pieces;
* :mod:`.contiguity` - the hugepage forecast: what can be had now, after compaction, never;
* :mod:`.plots` - PNG pictures of all three (matplotlib, optional).

Runs of adjacent pages come from :mod:`physmem._runs` (the C run finder). Submodules load
on import, not with the package: the CLI pays only for what it uses.
"""

__all__ = ["classes", "contiguity", "fragmentation", "physmap", "plots", "runcheck"]
