"""PNG pictures of a :class:`~physmem.analysis.physmap.CellMap` and of fragmentation records.

matplotlib is optional (``pip install 'physmem[plot]'``); it is imported on first use with
the Agg backend, so no display is needed.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import PhysmemError
from .classes import (BLOCK_STATE_INFO, CLASS_INFO, COLOURS, FRAME_INFO, BlockState, Frame,
                      PageClass)
from .fragmentation import ZoneFragmentation
from .physmap import CellMap

if TYPE_CHECKING:
    from matplotlib.artist import Artist

    from .contiguity import Forecast

__all__ = ["PlotUnavailable", "plot_map", "plot_frag", "plot_contig"]


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


def plot_map(cm: CellMap, path: str, *, columns: int | None = None,
             blockers: Forecast | None = None) -> None:
    """One square per cell, rows of ``columns`` cells (chosen for a near-square grid).

    ``blockers`` (a :func:`~physmem.analysis.contiguity.forecast`) outlines every block of the
    largest hugepage size in the colour of its state, labelled with its blocker count.
    """
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
        ax.plot([0, x, x, columns], [r + 1, r + 1, r, r], color=COLOURS["zone_edge"], lw=1.6)
        label_y = max(r + 0.5, label_y + min_gap)
        ax.annotate(f"node {z.node} {z.zone} from {z.start_pfn * cm.page_size:#x}",
                    xy=(columns, r + 0.5), xytext=(columns + 1.5, label_y), fontsize=7,
                    va="center", ha="left", color="#007070", annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color=COLOURS["zone_edge"], lw=0.8))
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
    if blockers is not None:
        handles.extend(_outline_blocks(ax, blockers, cm, columns, rows))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.3, 1.0), fontsize=8,
              title="dominant state of each cell", title_fontsize=8, frameon=False)
    ax.set_xlim(0, columns)
    ax.set_ylim(rows, 0)
    total = cm.frames * cm.page_size
    ax.set_title(f"physical memory: {_size(total)} in {n} cells of {_size(cm.cell_bytes)}",
                 fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _outline_blocks(ax: Any, fc: Forecast, cm: CellMap, columns: int, rows: int) -> list[Artist]:
    """Rectangles around each largest-size block, edged in its state's colour."""
    from matplotlib.patches import Patch, Rectangle

    size = max(fc.sizes)
    per = size // cm.cell_bytes           # cells per block
    if per < 1:
        return []
    states, nblk = fc.states[size], fc.blockers[size]
    fontsize = 7.0
    for b, st in enumerate(states.tolist()):
        first = b * per
        r0, c0 = divmod(first, columns)
        if per >= columns:
            x, y, w, h = 0, r0, columns, per // columns
        else:
            x, y, w, h = c0, r0, per, 1
        colour = BLOCK_STATE_INFO[BlockState(st)][1]
        ax.add_patch(Rectangle((x + 0.15, y + 0.15), w - 0.3, h - 0.3, fill=False,
                               edgecolor=colour, lw=2.2))
        if st == BlockState.BLOCKED:
            ax.text(x + w / 2, y + h / 2, f"{int(nblk[b])}", ha="center", va="center",
                    fontsize=fontsize, color="white",
                    bbox=dict(boxstyle="round,pad=0.15", fc=colour, ec="none", alpha=0.85))
    out: list[Artist] = []
    for s in sorted(set(states.tolist())):
        label, colour = BLOCK_STATE_INFO[BlockState(s)]
        out.append(Patch(facecolor="none", edgecolor=colour, lw=2,
                         label=f"{_size(size)} block: {label} ({int((states == s).sum())})"))
    out.append(Patch(facecolor=BLOCK_STATE_INFO[BlockState.BLOCKED][1], edgecolor="none",
                     label="number: frames blocking it"))
    return out


def plot_frag(records: Sequence[ZoneFragmentation], path: str, *,
              forecast: Forecast | None = None) -> None:
    """The fragmentation picture: :func:`plot_contig` of a forecast of the records' nodes."""
    if forecast is None:
        from .contiguity import forecast as make

        nodes = {r.node for r in records}
        forecast = make(node=nodes.pop() if len(nodes) == 1 else None)
    plot_contig(forecast, path)


def plot_contig(fc: Forecast, path: str) -> None:
    """Two panels: free memory in runs at least so long (log axis, hugepage sizes marked),
    and per hugepage size the blocks free now / in the pool / after compaction /
    uninitialised / blocked, with the pages obtainable."""
    plt = _pyplot()

    fig, (ax, bx) = plt.subplots(2, 1, figsize=(10, 5.2 + 0.8 * len(fc.sizes)),
                                 dpi=110, gridspec_kw={"height_ratios": [3, 0.8 + 0.6 * len(fc.sizes)]})
    page = fc.page_size
    runs = fc.free_runs
    if fc.node is not None and len(runs):
        keep = np.zeros(len(runs), dtype=bool)
        for z in fc.spans:
            if z.node == fc.node:
                keep |= (runs[:, 0] >= z.start_pfn) & (runs[:, 0] < z.end_pfn)
        runs = runs[keep]
    lengths = np.sort(runs[:, 1]) * page if len(runs) else np.zeros(0, dtype=np.int64)
    gib = float(1 << 30)
    if len(lengths):
        # Free bytes in runs of at least x: a step down at each run length.
        total_at = np.cumsum(lengths[::-1])[::-1]
        xs = np.concatenate(([page], np.repeat(lengths, 2)))
        ys = np.concatenate(([total_at[0]], np.column_stack((total_at, np.append(total_at[1:], 0))).ravel()))
        ax.plot(xs, ys / gib, color=FRAME_INFO[Frame.FREE][1], lw=0)  # keep autoscale
        ax.fill_between(xs, ys / gib, step=None, color=FRAME_INFO[Frame.FREE][1], alpha=0.6)
        ax.plot(xs, ys / gib, color="#1a6e1a", lw=1.8, label="free now (buddy)")
        xmax = float(lengths[-1]) * 1.5
    else:
        xmax = float(max(fc.sizes)) * 2
    ax.set_xscale("log", base=2)
    ax.set_xlim(page, max(xmax, max(fc.sizes) * 1.5))
    ax.set_ylim(bottom=0)
    ticks = [page << k for k in range(0, 64) if page << k <= ax.get_xlim()[1]][::2]
    ax.set_xticks(ticks)
    ax.set_xticklabels([_size(t) for t in ticks], fontsize=7)
    ax.set_xlabel("contiguous run length (log scale)")
    ax.set_ylabel("free memory in runs at least this long (GiB)")
    top = ax.get_ylim()[1]
    right = ax.get_xlim()[1]
    for k, size in enumerate(fc.sizes):
        t = fc.totals(size)
        at = float(lengths[lengths >= size].sum()) / gib if len(lengths) else 0.0
        ax.axvline(size, color="#444444", ls="--", lw=1)
        ax.annotate(f"{_size(size)} pages\nnow {t['obtainable_now']}, after compaction "
                    f"{t['obtainable_after_compaction']}\n({at:.1f} GiB free in runs >= {_size(size)})",
                    xy=(size, top * (0.45 - 0.17 * (k % 2))),
                    xytext=(-4 if size * 16 > right else 4, 0), textcoords="offset points",
                    fontsize=8, va="center", ha="right" if size * 16 > right else "left",
                    color="#222222",
                    bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="#999999", alpha=0.9))
    where = "" if fc.node is None else f" on node {fc.node}"
    ax.set_title(f"Will it fit? Free memory{where} by contiguous run length", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)

    order = [BlockState.FREE, BlockState.POOL, BlockState.COMPACTABLE,
             BlockState.UNINITIALISED, BlockState.BLOCKED]
    keys = {BlockState.FREE: "free_now", BlockState.POOL: "pool",
            BlockState.COMPACTABLE: "after_compaction",
            BlockState.UNINITIALISED: "uninitialised", BlockState.BLOCKED: "blocked"}
    labels = []
    for i, size in enumerate(fc.sizes):
        t = fc.totals(size)
        total = max(1, t["blocks"])
        left = 0.0
        for st in order:
            v = t[keys[st]]
            share = v / total
            bx.barh(i, share, left=left, color=BLOCK_STATE_INFO[st][1], edgecolor="#444444",
                    lw=0.4, label=BLOCK_STATE_INFO[st][0] if i == 0 else None)
            if share > 0.06:
                bx.text(left + share / 2, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if st == BlockState.BLOCKED else "black")
            left += share
        labels.append(f"{_size(size)} blocks ({t['blocks']})")
    bx.set_yticks(range(len(fc.sizes)))
    bx.set_yticklabels(labels, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlim(0, 1)
    bx.set_xlabel("share of the aligned blocks of each size")
    bx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=5, fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
