"""PNG pictures of a :class:`~physmem.analysis.physmap.CellMap` and of fragmentation records.

matplotlib is optional (``pip install 'physmem[plot]'``); it is imported on first use with
the Agg backend, so no display is needed.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .._syntax import format_size
from ..errors import MissingDependency
from .classes import (BLOCK_STATE_INFO, CLASS_INFO, COLOURS, FRAME_INFO, BlockState, Frame,
                      PageClass)
from .fragmentation import ZoneFragmentation
from .physmap import CellMap

if TYPE_CHECKING:
    from matplotlib.artist import Artist

    from .contiguity import Forecast

__all__ = ["plot_map", "plot_frag", "plot_contig"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency("pictures need matplotlib: pip install 'physmem[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _size(n: float) -> str:
    return format_size(int(n), exact=False)


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


# Migrate types in the order the kernel lists them, each with one colour in every chart.
MIGRATE_COLOURS = {"Unmovable": COLOURS["slab"], "Movable": COLOURS["movable"],
                   "Reclaimable": COLOURS["reclaimable"], "HighAtomic": COLOURS["hugetlb"],
                   "CMA": COLOURS["offline"], "Isolate": COLOURS["noflags"]}


def plot_frag(records: Sequence[ZoneFragmentation], path: str) -> None:
    """What only the buddy allocator's own counts show: per zone, the free memory in blocks
    of each order, split by migrate type (/proc/pagetypeinfo, root) or as one bar
    (/proc/buddyinfo), with the share in blocks of 2 MiB and more."""
    plt = _pyplot()
    zones = [r for r in records if r.free_pages]
    if not zones:
        zones = list(records[:1])
    fig, axes = plt.subplots(len(zones) or 1, 1, figsize=(10, 1.2 + 2.6 * max(1, len(zones))),
                             dpi=110, squeeze=False)
    for ax, r in zip(axes[:, 0], zones):
        orders = np.arange(len(r.free_blocks))
        sizes = [_size(r.page_size << k) for k in range(len(orders))]
        bottom = np.zeros(len(orders))
        types = r.by_type if r.by_type else {"free (buddyinfo)": r.free_blocks}
        for t, counts in types.items():
            mib = np.array([c << k for k, c in enumerate(counts)], dtype=float) \
                * r.page_size / (1 << 20)
            if not mib.any():
                continue
            ax.bar(orders, mib, bottom=bottom, color=MIGRATE_COLOURS.get(t, COLOURS["free"]),
                   edgecolor="#444444", lw=0.4, label=t)
            bottom += mib
        for k, total in enumerate(bottom):
            if total:
                blocks = sum(v[k] for v in types.values())
                ax.text(k, total, f"{blocks}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(orders)
        ax.set_xticklabels(sizes, fontsize=7)
        # Log scale: the few MiB in small blocks are the fragmentation, next to GiBs in big ones.
        ax.set_yscale("log")
        if bottom.any():
            ax.set_ylim(bottom[bottom > 0].min() / 2, bottom.max() * 3)
        ax.set_ylabel("free MiB (log scale)")
        ax.set_title(f"node {r.node} {r.zone}: {_size(r.free_pages * r.page_size)} free, "
                     f"{r.share_2m:.0%} in blocks of 2 MiB or more (numbers: free blocks)",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", title="migrate type" if r.by_type else None,
                  title_fontsize=7)
    axes[-1, 0].set_xlabel("buddy block size (order)")
    fig.suptitle("Free memory by buddy order and migrate type", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_contig(fc: Forecast, path: str) -> None:
    """Two panels: free memory in runs at least so long (log axis, hugepage sizes marked),
    and per hugepage size the blocks free now / in the pool / after compaction /
    uninitialised / blocked, with the pages obtainable."""
    plt = _pyplot()

    # The fewest-blocker blocks of each size (the list holds them size by size).
    nearly = [nf for size in fc.sizes
              for nf in [x for x in fc.nearly_free if x.size == size][:4 if size != fc.sizes[0] else 7]]
    heights = [3, 0.8 + 0.6 * len(fc.sizes), 0.6 + 0.9 * len(fc.sizes),
               0.6 + 0.32 * max(1, len(nearly))]
    fig, (ax, bx, cx, dx) = plt.subplots(4, 1, figsize=(10, 3.4 + 1.6 * sum(heights) / 2),
                                         dpi=110, gridspec_kw={"height_ratios": heights})
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
        lo, hi = t["obtainable_now_range"]
        labels.append(f"{_size(size)} blocks ({t['blocks']})\nget now {t['obtainable_now']}"
                      f" ({lo}-{hi})")
    bx.set_yticks(range(len(fc.sizes)))
    bx.set_yticklabels(labels, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlim(0, 1)
    bx.set_xlabel("share of the aligned blocks of each size")
    bx.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=5, fontsize=7, frameon=False)
    _plot_blockers(cx, fc)
    _plot_nearly_free(dx, fc, nearly)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_blockers(ax: Any, fc: Forecast) -> None:
    """Per size, one bar per blocker class: the blocked blocks it appears in."""
    by_label = {label: colour for label, colour in FRAME_INFO.values()}
    rows: list[tuple[str, str, int, int]] = []
    for size in fc.sizes:
        blocks: dict[str, int] = {}
        frames: dict[str, int] = {}
        for z in fc.rows(size):
            for k, v in z.blockers.items():
                blocks[k] = blocks.get(k, 0) + v
            for k, v in z.blocker_frames.items():
                frames[k] = frames.get(k, 0) + v
        for k, v in sorted(blocks.items(), key=lambda kv: -kv[1])[:6]:
            rows.append((_size(size), k, v, frames.get(k, 0)))
    if not rows:
        ax.text(0.5, 0.5, "no blocked blocks", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    y = np.arange(len(rows))
    ax.barh(y, [r[2] for r in rows], color=[by_label.get(r[1], COLOURS["other"]) for r in rows],
            edgecolor="#444444", lw=0.4)
    for i, (_, _label, count, nframes) in enumerate(rows):
        extra = f", {nframes} frames" if nframes else ""
        ax.text(count, i, f" {count} blocks{extra}", va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r[0]}: {r[1]}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(r[2] for r in rows) * 1.35)
    ax.set_xlabel("blocked blocks each class appears in (a block may have several)")
    ax.set_title("What blocks them", fontsize=9)


def _plot_nearly_free(ax: Any, fc: Forecast, nearly: list[Any]) -> None:
    """The blocks held back by the fewest frames: each a strip, its blocking frames marked
    where they sit, in their class's colour."""
    by_label = {label: colour for label, colour in FRAME_INFO.values()}
    if not nearly:
        ax.text(0.5, 0.5, "no nearly free blocks", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    for i, nf in enumerate(nearly):
        n = nf.size // fc.page_size
        ax.barh(i, 1.0, color=BLOCK_STATE_INFO[BlockState.FREE][1], edgecolor="#444444",
                lw=0.4, height=0.6)
        xs = [(f.pfn - nf.start_pfn) / n for f in nf.frames]
        ax.scatter(xs, [i] * len(xs), marker="|", s=180, linewidths=2.2,
                   c=[by_label.get(f.cls, COLOURS["other"]) for f in nf.frames])
        classes = sorted({f.cls for f in nf.frames})
        ax.text(1.01, i, f"{nf.blockers} frame(s): {', '.join(classes)}", va="center",
                fontsize=7, transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(nearly)))
    ax.set_yticklabels([f"{_size(nf.size)} at {nf.start_pfn * fc.page_size:#x} ({nf.zone})"
                        for nf in nearly], fontsize=7, family="monospace")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xticklabels(["start", "1/4", "1/2", "3/4", "end"], fontsize=7)
    ax.set_title("Nearly free: the blocks held back by the fewest frames, and where they sit",
                 fontsize=9)
