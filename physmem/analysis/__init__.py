"""What physical memory holds and what it could give, from /proc/kpageflags and friends.

* :mod:`.physmap` - every frame classified, counted per cell; free runs;
* :mod:`.fragmentation` - free memory per zone and how much comes in large pieces;
* :mod:`.contiguity` - the hugepage forecast: what can be had now, after compaction, never;
* :mod:`.plots` - PNG pictures of all three (matplotlib, optional).

Submodules load on import, not with the package: the CLI pays only for what it uses.
"""
