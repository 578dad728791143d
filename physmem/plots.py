"""PNG pictures of a :class:`~physmem.physmap.CellMap` and of fragmentation records.

matplotlib is optional (``pip install 'physmem[plot]'``); it is imported on first use with
the Agg backend, so no display is needed.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import PhysmemError
from .fragmentation import ZoneFragmentation
from .physmap import CLASS_INFO, CellMap, PageClass

if TYPE_CHECKING:
    from matplotlib.artist import Artist

__all__ = ["PlotUnavailable", "plot_map", "plot_frag"]


class PlotUnavailable(PhysmemError, ImportError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("pictures need matplotlib: pip install 'physmem[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def plot_map(cm: CellMap, path: str, *, columns: int | None = None) -> None:
    """One square per cell, rows of ``columns`` cells (chosen for a near-square grid)."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    n = len(cm.counts)
    columns = columns or max(32, 1 << round(math.log2(math.sqrt(n))))
    rows = -(-n // columns)
    grid = np.full(rows * columns, PageClass.HOLE, dtype=np.uint8)
    grid[:n] = cm.dominant
    cmap = ListedColormap([CLASS_INFO[c][1] for c in PageClass])
    grid_w = 8.0   # inches of grid; legend and zone labels get the rest
    fig_w = grid_w + 5.5
    fig_h = max(4.0, min(40.0, 1.2 + grid_w * rows / columns))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    ax.imshow(grid.reshape(rows, columns), cmap=cmap, vmin=-0.5, vmax=len(PageClass) - 0.5,
              interpolation="nearest", aspect="equal", extent=(0, columns, rows, 0))
    row_bytes = columns * cm.cell_bytes
    step = max(1, rows // 16)
    ax.set_yticks(np.arange(0, rows, step) + 0.5)
    ax.set_yticklabels([f"{r * row_bytes:#x}" for r in range(0, rows, step)], fontsize=7,
                       family="monospace")
    xt = np.linspace(0, columns, 5)
    ax.set_xticks(xt)
    ax.set_xticklabels([f"+{_size(x * cm.cell_bytes)}" for x in xt], fontsize=7)
    ax.set_ylabel("physical address (row start)")
    ax.set_xlabel(f"offset in row ({_size(row_bytes)} per row, one square = {_size(cm.cell_bytes)})")
    # Zone starts: a staircase line separating cells before the boundary from those after.
    min_gap = rows / (fig_h * 72 / 22)   # rows per two lines of label text
    label_y = -math.inf
    for z in cm.zones:
        c = z.start_pfn / cm.cell_pages
        r, x = int(c // columns), c % columns
        ax.plot([0, x, x, columns], [r + 1, r + 1, r, r], color="#00a0a0", lw=1.6)
        label_y = max(r + 0.5, label_y + min_gap)
        ax.annotate(f"node {z.node} {z.zone} from {z.start_pfn * cm.page_size:#x}",
                    xy=(columns, r + 0.5), xytext=(columns + 1.5, label_y), fontsize=7,
                    va="center", ha="left", color="#007070", annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color="#00a0a0", lw=0.8))
    handles: list[Artist] = []   # Patch swatches, then a Line2D marker
    from matplotlib.patches import Patch
    pages = cm.pages_per_class()
    for c in PageClass:
        if pages[c]:
            handles.append(Patch(facecolor=CLASS_INFO[c][1], edgecolor="#444444", lw=0.5,
                                 label=f"{CLASS_INFO[c][0]}  {_size(int(pages[c]) * cm.page_size)}"))
    if cm.pid_pages is not None:
        hit = np.flatnonzero(cm.pid_pages)
        cell_pt = grid_w * 72 / columns
        ax.scatter(hit % columns + 0.5, hit // columns + 0.5, s=(cell_pt * 0.75) ** 2, marker="s",
                   facecolors="none", edgecolors="black", linewidths=1.0)
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], marker="s", ls="", markerfacecolor="none",
                              markeredgecolor="black",
                              label=f"pid {cm.pid}: {_size(int(cm.pid_pages.sum()) * cm.page_size)} "
                                    f"in {len(hit)} cells"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.3, 1.0), fontsize=8,
              title="dominant state of each cell", title_fontsize=8, frameon=False)
    ax.set_xlim(0, columns)
    ax.set_ylim(rows, 0)
    total = cm.frames * cm.page_size
    ax.set_title(f"physical memory: {_size(total)} in {n} cells of {_size(cm.cell_bytes)}",
                 fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def plot_frag(records: Sequence[ZoneFragmentation], path: str) -> None:
    """Per zone, free memory by block size, stacked by migrate type where known."""
    plt = _pyplot()
    zones = [r for r in records if r.free_pages]
    if not zones:
        zones = list(records)
    fig, axes = plt.subplots(len(zones), 1, figsize=(9, 2.9 * len(zones)), dpi=110, squeeze=False)
    colours = {"Unmovable": "#d7301f", "Movable": "#4393c3", "Reclaimable": "#ff7f00",
               "HighAtomic": "#6a3d9a", "CMA": "#1b9e77", "Isolate": "#969696"}
    for ax, r in zip(axes[:, 0], zones):
        orders = np.arange(len(r.free_blocks))
        mib = r.page_size * (1 << orders) / (1 << 20)
        bottom = np.zeros(len(orders))
        if r.by_type:
            for t, blocks in r.by_type.items():
                v = np.array(blocks[:len(orders)], dtype=float) * mib
                if v.any():
                    ax.bar(orders, v, bottom=bottom, label=t, color=colours.get(t, "#999999"))
                    bottom += v
        else:
            ax.bar(orders, np.array(r.free_blocks, dtype=float) * mib, color="#4393c3",
                   label="free")
        ax.set_xticks(orders)
        ax.set_xticklabels([_size(r.page_size << int(k)) for k in orders], fontsize=7)
        ax.set_ylabel("free MiB")
        run = "?" if r.largest_run_pages is None else _size(r.largest_run_pages * r.page_size)
        g1 = "?" if r.available_1g is None else str(r.available_1g)
        s1 = "?" if r.share_1g is None else f"{r.share_1g:.0%}"
        ax.set_title(f"node {r.node} {r.zone}: {_size(r.free_pages * r.page_size)} free; "
                     f"{r.share_2m:.0%} in blocks >= 2 MiB, {s1} in runs >= 1 GiB; "
                     f"largest run {run}; 2 MiB pages {r.available_2m}, 1 GiB pages {g1}",
                     fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("free block size (buddy order)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
