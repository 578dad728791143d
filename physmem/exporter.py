"""The fleet view: physmem's readings as Prometheus metrics (``physmem exporter``).

Needs the ``prometheus-client`` library (``pip install 'physmem[exporter]'``).

Two kinds of readings. Cheap ones (hugepage pools, buddyinfo, pagetypeinfo, vmstat, the
boot command line) are read at every scrape. Expensive ones (the whole-machine kpageflags
scans, every process's hugetlb mappings, the doctor checks) run in a background thread on
their own interval; a scrape serves the last result with its age, so it never waits for a
scan. Until a reading's first run has finished its metrics are absent, and
``physmem_reading_pending`` is 1 and ``physmem_reading_age_seconds`` NaN for it. A reading that fails counts in ``physmem_reading_errors_total`` and keeps serving its
last good result; it never fails the scrape. A reading the process has no right to (not root)
leaves its metrics out, not zero, and ``physmem_metric_unavailable_info`` says why.

The contiguity and holder readings are plain callables returning :class:`ContiguityReading`
and :class:`HolderReading`; by default the contiguity forecast
(:func:`physmem.analysis.contiguity.forecast`) and the hugepage audit (:func:`physmem.hugepages.audit`).
Pass others to :class:`Exporter` (``forecast=``, ``holders=``) to feed other sources into
the same metrics.
"""
from __future__ import annotations

import logging
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import addressing, nfd, proc
from ._args import as_interval, as_positive, as_timeout
from ._replace import replace_file
from .errors import InvalidArgument

try:
    from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
    from prometheus_client.core import (
                                        CounterMetricFamily,
                                        GaugeMetricFamily,
                                        InfoMetricFamily,
                                        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised through a subprocess in the tests
    raise ImportError(
        "the physmem exporter needs the prometheus-client library: "
        "pip install 'physmem[exporter]' (or pip install prometheus-client)") from exc

__all__ = ["Exporter", "ContiguityFigure", "ContiguityReading", "Holder", "HolderReading",
           "DmaHolder", "DmaReading", "MetricsServer", "read_contiguity", "read_frames",
           "read_holders", "read_dma", "parse_listen", "DEFAULT_INTERVAL", "DMA_PROCESSES",
           "HTTP_TIMEOUT", "HTTP_CONNECTIONS", "HTTP_HEADER_BYTES"]

_log = logging.getLogger(__name__)
DEFAULT_INTERVAL = 60.0
NS = "physmem"
# vmstat counters worth a fleet view: transparent hugepages, compaction, hugetlb allocation.
_VMSTAT_PREFIXES = ("thp_", "compact_", "htlb_")

# Bounds of the HTTP server (README "Fleet view"), each one a limit a slow or hostile client
# runs into instead of the exporter's memory or its scrapes.
HTTP_TIMEOUT = 10            # seconds a connection may stay silent: half a request, a reply unread
HTTP_CONNECTIONS = 512       # open at once; more wait in the kernel's listen backlog
HTTP_HEADER_BYTES = 16384    # request line and headers (and any body); more closes the connection
_HTTP_THREADS = 2            # scrapes built at once; each is some 10 ms of file reads
# Processes labelled in the DMA metrics: the largest holders; the rest are summed into one
# series, so a host with thousands of mlocking processes still gives a bounded scrape.
DMA_PROCESSES = 20


@dataclass(frozen=True)
class ContiguityFigure:
    """How many blocks of ``size`` bytes one zone can give: ``free_now`` from free memory as
    it is; ``after_compaction`` (free now included) and ``blocked`` when the source
    forecasts them (else ``None``).
    """

    node: int
    zone: str
    size: int
    free_now: int
    after_compaction: int | None = None
    blocked: int | None = None
    # Pages the kernel could hand out, the pool's free pages included (forecast only).
    obtainable_now: int | None = None
    obtainable_after_compaction: int | None = None


@dataclass(frozen=True)
class ContiguityReading:
    """The expensive contiguity reading: figures per zone and size, longest free run per zone
    (bytes), longest run of obtainable pages per zone and size (bytes, now and after
    compaction). Sizes the figures leave out are taken from buddyinfo at scrape time."""

    figures: tuple[ContiguityFigure, ...]
    longest_run: dict[tuple[int, str], int] = field(default_factory=dict)
    # (node, zone, size) -> (now, after compaction): bytes of adjacent obtainable pages.
    longest_obtainable: dict[tuple[int, str, int], tuple[int, int]] = field(default_factory=dict)
    # Machine totals per size, for NFD's node labels (empty: the source gives none).
    totals: tuple[nfd.Obtainable, ...] = ()


@dataclass(frozen=True)
class Holder:
    """``bytes`` of hugetlb pages of ``size`` mapped by the processes named ``process``."""

    process: str
    size: int
    bytes: int


@dataclass(frozen=True)
class HolderReading:
    """Who holds hugepages: per process name and size, plus hugetlbfs files nobody maps
    (``orphaned``: size -> bytes) and processes that could not be read (other users' without
    root, or gone mid-read)."""

    holders: tuple[Holder, ...]
    orphaned: dict[int, int]
    unreadable: int = 0


def read_contiguity(proc_root: str = "/proc", sys_root: str = "/sys") -> ContiguityReading:
    """The contiguity forecast (:func:`physmem.analysis.contiguity.forecast`, one whole-machine
    /proc/kpageflags scan, root) per zone and hugepage size: blocks free now, free after
    compaction (free now included) and blocked; the longest obtainable runs; and the longest
    free run per zone. Raises PermissionDenied without the right."""
    from .analysis.contiguity import forecast

    fc = forecast(proc_root=proc_root, sys_root=sys_root)
    figures = tuple(ContiguityFigure(z.node, z.zone, z.size, z.free_now,
                                     z.free_now + z.after_compaction, z.blocked,
                                     z.obtainable_now, z.obtainable_after_compaction)
                    for z in fc.zones)
    obtainable = {(z.node, z.zone, z.size): (z.longest_run_now, z.longest_run_after_compaction)
                  for z in fc.zones}
    runs = fc.free_runs   # (start_pfn, pages) of every free run of the machine
    longest: dict[tuple[int, str], int] = {}
    for span in fc.spans:
        # A run crossing a zone boundary is two runs: the allocator never merges across.
        lo = np.maximum(runs[:, 0], span.start_pfn)
        hi = np.minimum(runs[:, 0] + runs[:, 1], span.end_pfn)
        best = int((hi - lo).max(initial=0)) if len(runs) else 0
        key = (span.node, span.zone)
        longest[key] = max(longest.get(key, 0), max(best, 0) * fc.page_size)
    return ContiguityReading(figures, longest, obtainable, nfd.obtainable(fc))


def read_frames(proc_root: str = "/proc") -> dict[str, int]:
    """Bytes of physical memory per page class (:class:`~physmem.analysis.physmap.PageClass` names,
    lower case) from one scan of every frame's kpageflags (root), classified as
    :func:`~physmem.analysis.physmap.cell_map` does (free block tails, memory not yet handed over)."""
    from .analysis.physmap import PageClass, cell_map

    m = cell_map(proc_root=proc_root)
    return {c.name.lower(): int(n) * m.page_size for c, n in zip(PageClass, m.pages_per_class())}


def read_holders(proc_root: str = "/proc", sys_root: str = "/sys") -> HolderReading:
    """Hugetlb memory per process name and page size, and hugetlbfs file memory no process
    maps or holds open, from the hugepage audit (:func:`physmem.hugepages.audit`). A page
    shared by several processes counts for each of them."""
    from .hugepages import audit, hugetlbfs_mounts

    report = audit(proc_root=proc_root, sys_root=sys_root)
    held: dict[tuple[str, int], int] = {}
    for m in report.mappings:
        if m.pages:
            key = (m.comm, m.page_size)
            held[key] = held.get(key, 0) + m.pages * m.page_size
    # Every mounted size shows, 0 included, so an alert sees the series go back to 0.
    orphaned: dict[int, int] = {mnt.page_size: 0 for mnt in hugetlbfs_mounts(proc_root)
                                if mnt.page_size}
    for f in report.orphans:
        orphaned[f.page_size] = orphaned.get(f.page_size, 0) + f.bytes
    holders = tuple(Holder(c, s, b) for (c, s), b in sorted(held.items()))
    return HolderReading(holders, orphaned, len(report.unreadable))


@dataclass(frozen=True)
class DmaHolder:
    """A process holding DMA-relevant memory: ``pinned`` bytes (VmPin) and
    ``locked_unpinned`` bytes held resident (mlocked or hugetlb) that no pin holds (None:
    its mappings could not be read). ``pid`` 0 with ``comm`` ``"(other)"`` sums the
    processes beyond :data:`DMA_PROCESSES`."""

    pid: int
    comm: str
    pinned: int
    locked_unpinned: int | None


@dataclass(frozen=True)
class DmaReading:
    """The largest DMA holders (see :class:`DmaHolder`), and how many held some at all."""

    holders: tuple[DmaHolder, ...]
    processes: int


def read_dma(proc_root: str = "/proc", limit: int = DMA_PROCESSES) -> DmaReading:
    """Pinned and locked-but-unpinned memory per process. /proc/PID/status (readable by
    all) picks the processes holding any (VmPin, VmLck or HugetlbPages); their mappings are
    then audited (:func:`physmem.dma.audit`, without locating pages: smaps and io_uring
    fdinfo, which other users' processes keep to root). The ``limit`` largest are kept, the
    rest summed into one holder."""
    from .dma import audit
    from .errors import PhysmemError
    from .proc import status
    from .proc.fds import pids

    found = []
    for pid in pids(proc_root):
        try:
            st = status(pid, proc_root)
        except (PhysmemError, OSError):
            continue   # gone meanwhile
        pinned = int(st.get("VmPin", 0))
        if not (pinned or st.get("VmLck") or st.get("HugetlbPages")):
            continue
        locked: int | None
        try:
            locked = audit(pid, pages=False, proc_root=proc_root).locked_unpinned_bytes
        except PermissionError:
            locked = None
        except (PhysmemError, OSError):
            continue   # gone meanwhile
        found.append(DmaHolder(pid, str(st.get("Name", "")), pinned, locked))
    found.sort(key=lambda h: (-(h.pinned + (h.locked_unpinned or 0)), h.pid))
    kept, rest = found[:limit], found[limit:]
    if rest:
        kept.append(DmaHolder(0, "(other)", sum(h.pinned for h in rest),
                              sum(h.locked_unpinned or 0 for h in rest)))
    return DmaReading(tuple(kept), len(found))


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9877"``, ``"[::1]:9877"`` or ``":9877"`` (every address) -> (host, port).
    Port 0 asks the kernel for a free port."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        raise InvalidArgument(f"--listen {text!r} is not HOST:PORT (e.g. 127.0.0.1:9877)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if number > 65535:
        raise InvalidArgument(f"--listen {text!r}: port {number} is out of range (0-65535)")
    return host or "0.0.0.0", number


def _severities() -> Sequence[str]:
    from .findings import Severity

    return [s.name.lower() for s in Severity]


class _Reading:
    """One background reading: the last good result, when it came, and how reading went."""

    def __init__(self, name: str, interval: float, read: Callable[[], list[Metric]],
                 metrics: Sequence[str]) -> None:
        self.name = name
        self.interval = interval
        self.read = read
        self.metrics = metrics          # what it produces, for the unavailable info
        self.result: list[Metric] | None = None
        self.finished: float | None = None   # monotonic time of the last good result
        self.duration: float | None = None
        self.errors = 0
        self.running = False
        self.ran = threading.Event()    # set once the first run has finished, however it went
        self.unavailable: str | None = None
        self.last_error: str | None = None
        self.next_due = 0.0

    def run(self) -> None:
        self.running = True
        t0 = time.monotonic()
        try:
            result = self.read()
        except PermissionError as exc:  # PermissionDenied included: absent, not an error
            self.unavailable = str(exc)
            self.result = None
        except Exception as exc:  # noqa: BLE001 - any failure is a metric, never a dead thread
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            _log.warning("reading %s failed (serving its last result): %s", self.name,
                         self.last_error)
        else:
            self.result, self.unavailable = result, None
            self.finished = time.monotonic()
        finally:
            self.duration = time.monotonic() - t0
            self.running = False
            self.next_due = t0 + self.interval
            self.ran.set()


class Exporter(Collector):
    """A Prometheus collector over physmem's readings, with its own registry.

    ``interval`` is the seconds between two runs of each background reading. ``forecast`` and
    ``holders`` replace the contiguity and holder readings (see the module docstring).
    ``nfd_dir``: after each contiguity reading, write NFD's feature file there
    (:mod:`physmem.nfd`; its own reading "nfd", so a failed write counts as its error).
    ``start()`` starts the background thread; ``refresh()`` runs every reading once, now.
    """

    def __init__(self, *, interval: float = DEFAULT_INTERVAL, sys_root: str = "/sys",
                 proc_root: str = "/proc",
                 forecast: Callable[[], ContiguityReading] | None = None,
                 holders: Callable[[], HolderReading] | None = None,
                 nfd_dir: str | None = None) -> None:
        self.interval = iv = as_interval(interval)
        self.sys_root, self.proc_root = sys_root, proc_root
        self._forecast = forecast or (lambda: read_contiguity(proc_root, sys_root))
        self._holders = holders or (lambda: read_holders(proc_root, sys_root))
        self._contiguity: ContiguityReading | None = None
        self._scrape_errors: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.readings = {r.name: r for r in (
            _Reading("contiguity", iv, self._read_contiguity,
                     [f"{NS}_contiguity_blocks (gigantic sizes; after_compaction, blocked)",
                      f"{NS}_contiguity_obtainable_pages",
                      f"{NS}_contiguity_longest_free_run_bytes",
                      f"{NS}_contiguity_longest_obtainable_run_bytes"]),
            _Reading("frames", iv, self._read_frames, [f"{NS}_frames_bytes"]),
            _Reading("holders", iv, self._read_holders,
                     [f"{NS}_hugepages_mapped_bytes", f"{NS}_hugepages_orphaned_bytes"]),
            _Reading("doctor", iv, self._read_doctor, [f"{NS}_doctor_findings"]),
            _Reading("dma", iv, self._read_dma, [f"{NS}_dma_pinned_bytes",
                                                 f"{NS}_dma_locked_unpinned_bytes"]),
        )}
        self.nfd_dir = nfd_dir
        self._dma: bool | None = None
        if nfd_dir is not None:
            # After "contiguity" in the loop's order: each run writes the reading just taken.
            self.readings["nfd"] = _Reading("nfd", iv, self._write_nfd, [])
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # --- background -------------------------------------------------------------------
    def start(self) -> None:
        """Start the background readings (a daemon thread); idempotent."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="physmem-readings", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the background thread after its current reading."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(as_timeout(timeout))

    def refresh(self) -> None:
        """Run every background reading once, in this thread."""
        for r in self.readings.values():
            r.run()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until every background reading has finished its first run (started by
        :meth:`start`); False if ``timeout`` seconds passed first."""
        wait = as_timeout(timeout)
        deadline = None if wait is None else time.monotonic() + wait
        for r in self.readings.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not r.ran.wait(left):
                return False
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            due = [r for r in self.readings.values() if r.next_due <= now]
            for r in due:
                if self._stop.is_set():
                    return
                r.run()
            wake = min(r.next_due for r in self.readings.values())
            self._stop.wait(max(0.0, wake - time.monotonic()))

    # --- expensive readings: each returns finished metric families ---------------------
    def _read_contiguity(self) -> list[Metric]:
        reading = self._forecast()
        self._contiguity = reading
        run = GaugeMetricFamily(f"{NS}_contiguity_longest_free_run_bytes",
                                "Longest run of physically adjacent free memory per zone",
                                labels=["node", "zone"])
        for (node, zone), b in sorted(reading.longest_run.items()):
            run.add_metric([str(node), zone], b)
        obt = GaugeMetricFamily(f"{NS}_contiguity_longest_obtainable_run_bytes",
                                "Longest run of physically adjacent hugepages of a size the "
                                "kernel could give per zone, now or after compaction",
                                labels=["node", "zone", "size_bytes", "state"])
        for (node, zone, size), (now, after) in sorted(reading.longest_obtainable.items()):
            obt.add_metric([str(node), zone, str(size), "now"], now)
            obt.add_metric([str(node), zone, str(size), "after_compaction"], after)
        return [run, obt]

    def _write_nfd(self) -> list[Metric]:
        reading = self._contiguity
        if reading is None or not reading.totals:
            raise RuntimeError("no contiguity forecast with machine totals to label the node "
                               "from (see the contiguity reading)")
        if self._dma is None:   # a property of the kernel and this process: probed once
            self._dma = nfd.dma_pinning()
        assert self.nfd_dir is not None
        nfd.write(self.nfd_dir, nfd.labels(reading.totals, dma=self._dma),
                  interval=self.interval)
        return []

    def _read_frames(self) -> list[Metric]:
        fam = GaugeMetricFamily(f"{NS}_frames_bytes", "Physical memory per page class, from "
                                "a whole-machine /proc/kpageflags scan", labels=["class"])
        for name, b in read_frames(self.proc_root).items():
            fam.add_metric([name], b)
        return [fam]

    def _read_holders(self) -> list[Metric]:
        h = self._holders()
        held = GaugeMetricFamily(f"{NS}_hugepages_mapped_bytes",
                                 "Hugetlb memory mapped by processes of this name (shared pages "
                                 "count once per process)", labels=["process", "size_bytes"])
        for x in h.holders:
            held.add_metric([x.process, str(x.size)], x.bytes)
        orphan = GaugeMetricFamily(f"{NS}_hugepages_orphaned_bytes",
                                   "Hugetlbfs file memory that no process maps or holds open",
                                   labels=["size_bytes"])
        for size, b in sorted(h.orphaned.items()):
            orphan.add_metric([str(size)], b)
        unread = GaugeMetricFamily(f"{NS}_hugepages_unreadable_processes",
                                   "Processes whose mappings could not be read (no right to)")
        unread.add_metric([], h.unreadable)
        return [held, orphan, unread]

    def _read_doctor(self) -> list[Metric]:
        from .validate import SECTIONS, run

        report = run(sys_root=self.sys_root, proc_root=self.proc_root)
        counts = {(s, v): 0 for s in SECTIONS for v in _severities()}
        for f in report.findings:
            key = (f.section, f.severity.name.lower())
            counts[key] = counts.get(key, 0) + 1
        fam = GaugeMetricFamily(f"{NS}_doctor_findings", "physmem doctor findings",
                                labels=["section", "severity"])
        for (s, v), n in sorted(counts.items()):
            fam.add_metric([s, v], n)
        return [fam]

    def _read_dma(self) -> list[Metric]:
        reading = read_dma(self.proc_root)
        labels = ["pid", "comm"]
        pinned = GaugeMetricFamily(f"{NS}_dma_pinned_bytes",
                                   "Memory pinned for the long term (VmPin: io_uring fixed "
                                   "buffers, RDMA and VFIO pins): nothing moves it; the "
                                   f"{DMA_PROCESSES} largest holders, pid 0 sums the rest",
                                   labels=labels)
        locked = GaugeMetricFamily(f"{NS}_dma_locked_unpinned_bytes",
                                   "Memory held resident (mlocked or hugetlb) that no pin "
                                   "holds: memory offline, compaction and migration can move "
                                   f"it; the {DMA_PROCESSES} largest holders, pid 0 sums the "
                                   "rest", labels=labels)
        for h in reading.holders:
            key = [str(h.pid), h.comm]
            pinned.add_metric(key, h.pinned)
            if h.locked_unpinned is not None:
                locked.add_metric(key, h.locked_unpinned)
        count = GaugeMetricFamily(f"{NS}_dma_holder_processes",
                                  "Processes holding pinned, mlocked or hugetlb memory (all of "
                                  "them, labelled or not)")
        count.add_metric([], reading.processes)
        return [pinned, locked, count]

    # --- the scrape -------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        unavailable: dict[str, str] = {}
        for section, build in (("hugepages", self._pools), ("buddyinfo", self._buddy),
                               ("pagetypeinfo", self._pagetypeinfo), ("vmstat", self._vmstat),
                               ("cmdline", self._configured)):
            try:
                families = list(build())
            except PermissionError as exc:
                unavailable.update({m: str(exc) for m in _SECTION_METRICS[section]})
                continue
            except Exception:  # noqa: BLE001 - a failed reading is a metric, not a failed scrape
                with self._lock:
                    self._scrape_errors[section] = self._scrape_errors.get(section, 0) + 1
                continue
            yield from families
        yield from self._background(unavailable)
        info = InfoMetricFamily(f"{NS}_metric_unavailable",
                                "Metrics left out because this process may not read their source",
                                labels=["metric"])
        for metric, reason in sorted(unavailable.items()):
            info.add_metric([metric], {"reason": reason})
        yield info
        errors = CounterMetricFamily(f"{NS}_scrape_errors", "Cheap readings that failed during "
                                     "a scrape, by section", labels=["section"])
        with self._lock:
            for section in _SECTION_METRICS:
                errors.add_metric([section], self._scrape_errors.get(section, 0))
        yield errors
        dur = GaugeMetricFamily(f"{NS}_scrape_duration_seconds",
                                "Time this scrape took to gather its metrics")
        dur.add_metric([], time.perf_counter() - t0)
        yield dur

    def _background(self, unavailable: dict[str, str]) -> Iterator[Metric]:
        now = time.monotonic()
        age = GaugeMetricFamily(f"{NS}_reading_age_seconds",
                                "Seconds since the background reading last succeeded",
                                labels=["reading"])
        dur = GaugeMetricFamily(f"{NS}_reading_duration_seconds",
                                "How long the last run of the background reading took",
                                labels=["reading"])
        err = CounterMetricFamily(f"{NS}_reading_errors", "Failed runs of the background reading",
                                  labels=["reading"])
        running = GaugeMetricFamily(f"{NS}_reading_running",
                                    "1 while the background reading is running",
                                    labels=["reading"])
        pending = GaugeMetricFamily(f"{NS}_reading_pending",
                                    "1 until the background reading's first run has finished: "
                                    "its metrics are absent until then", labels=["reading"])
        interval = GaugeMetricFamily(f"{NS}_reading_interval_seconds",
                                     "Seconds between two runs of the background reading",
                                     labels=["reading"])
        for r in self.readings.values():
            result = r.result
            if result is not None:
                yield from result
            if r.unavailable is not None:
                unavailable.update({m: r.unavailable for m in r.metrics})
            # NaN until a first success: the series exists, so a staleness alert sees it.
            age.add_metric([r.name], math.nan if r.finished is None else now - r.finished)
            if r.duration is not None:
                dur.add_metric([r.name], r.duration)
            err.add_metric([r.name], r.errors)
            running.add_metric([r.name], int(r.running))
            pending.add_metric([r.name], int(not r.ran.is_set()))
            interval.add_metric([r.name], r.interval)
        yield from (age, dur, err, running, pending, interval)

    def _pools(self) -> Iterable[Metric]:
        from .hugepages import pools

        fam = GaugeMetricFamily(f"{NS}_hugepages_pages", "Hugepages per pool (node 'all' is the "
                                "global pool); state total, free, reserved or surplus",
                                labels=["size_bytes", "node", "state"])
        over = GaugeMetricFamily(f"{NS}_hugepages_overcommit_pages",
                                 "Surplus hugepages the pool may grow by on demand",
                                 labels=["size_bytes"])
        for p in pools(self.sys_root):
            node = "all" if p.node is None else str(p.node)
            for state, v in (("total", p.total), ("free", p.free), ("reserved", p.reserved),
                             ("surplus", p.surplus)):
                if v is not None:   # per-node pools have no reserved counter
                    fam.add_metric([str(p.size), node, state], v)
            if p.overcommit is not None:
                over.add_metric([str(p.size)], p.overcommit)
        return [fam, over]

    def _buddy(self) -> Iterable[Metric]:
        from .hugepages import supported_sizes

        page = addressing.page_size()
        zones = proc.buddyinfo(self.proc_root)
        fam = GaugeMetricFamily(f"{NS}_buddyinfo_free_blocks",
                                "Free blocks of 2**order pages per zone (/proc/buddyinfo)",
                                labels=["node", "zone", "order"])
        for z in zones:
            for order, n in enumerate(z.free):
                fam.add_metric([str(z.node), z.zone, str(order)], n)
        cont = GaugeMetricFamily(f"{NS}_contiguity_blocks",
                                 "Aligned blocks of a hugepage size per zone: free_now wholly "
                                 "free, after_compaction free once compacted (free_now "
                                 "included), blocked by a frame nothing moves (forecast, root)",
                                 labels=["node", "zone", "size_bytes", "state"])
        obtain = GaugeMetricFamily(f"{NS}_contiguity_obtainable_pages",
                                   "Hugepages of a size the kernel could hand out per zone, now or "
                                   "after compaction, the pool's free pages included (forecast, "
                                   "root)", labels=["node", "zone", "size_bytes", "state"])
        share = GaugeMetricFamily(f"{NS}_buddyinfo_free_share",
                                  "Share of the zone's free memory in free blocks of at least "
                                  "size_bytes (1: unfragmented for that size)",
                                  labels=["node", "zone", "size_bytes"])
        forecast = self._contiguity
        have: set[tuple[int, str, int]] = set()
        for f in (forecast.figures if forecast else ()):
            have.add((f.node, f.zone, f.size))
            labels = [str(f.node), f.zone, str(f.size)]
            for state, v in (("free_now", f.free_now), ("after_compaction", f.after_compaction),
                             ("blocked", f.blocked)):
                if v is not None:
                    cont.add_metric([*labels, state], v)
            for state, v in (("now", f.obtainable_now),
                             ("after_compaction", f.obtainable_after_compaction)):
                if v is not None:
                    obtain.add_metric([*labels, state], v)
        for z in zones:
            free = sum(n << k for k, n in enumerate(z.free))
            for size in supported_sizes(self.sys_root):
                order = (size // page).bit_length() - 1
                # Sizes above the buddy allocator's top order need the kpageflags scan.
                if order >= len(z.free):
                    continue
                labels = [str(z.node), z.zone, str(size)]
                big = sum(n << k for k, n in enumerate(z.free) if k >= order)
                share.add_metric(labels, big / free if free else 0.0)
                if (z.node, z.zone, size) not in have:
                    cont.add_metric([*labels, "free_now"], big >> order)
        return [fam, cont, obtain, share]

    def _pagetypeinfo(self) -> Iterable[Metric]:
        pti = proc.pagetypeinfo(self.proc_root)
        fam = GaugeMetricFamily(f"{NS}_pagetypeinfo_free_blocks",
                                "Free blocks of 2**order pages per zone and migrate type",
                                labels=["node", "zone", "migratetype", "order"])
        for (node, zone, mt), counts in sorted(pti.free.items()):
            for order, n in enumerate(counts):
                fam.add_metric([str(node), zone, mt, str(order)], n)
        blocks = GaugeMetricFamily(f"{NS}_pageblocks", "Pageblocks per zone and migrate type",
                                   labels=["node", "zone", "migratetype"])
        for (node, zone), types in sorted(pti.blocks.items()):
            for mt, n in types.items():
                blocks.add_metric([str(node), zone, mt], n)
        size = GaugeMetricFamily(f"{NS}_pageblock_size_bytes", "Size of one pageblock")
        size.add_metric([], pti.pages_per_block * addressing.page_size())
        return [fam, blocks, size]

    def _vmstat(self) -> Iterable[Metric]:
        out = []
        for name, v in sorted(proc.vmstat(self.proc_root).items()):
            if name.startswith(_VMSTAT_PREFIXES):
                fam = CounterMetricFamily(f"{NS}_vmstat_{name}", f"/proc/vmstat {name}")
                fam.add_metric([], v)
                out.append(fam)
        return out

    def _configured(self) -> Iterable[Metric]:
        from .hugepages import default_size, supported_sizes
        from .topology.cmdline import read_cmdline

        fam = GaugeMetricFamily(f"{NS}_hugepages_configured_pages",
                                "Hugepages the kernel command line asks for (hugepages=; 0 for "
                                "a size it does not name)", labels=["size_bytes", "node"])
        cmd = read_cmdline(self.proc_root)
        asked: dict[int, tuple[int, dict[int, int]]] = {}
        for req in (cmd.hugepages if cmd else ()):
            size = req.size or (cmd.default_hugepagesz if cmd else None) or default_size(self.proc_root)
            if size:
                asked[size] = (req.count, dict(req.per_node or {}))
        # Every size shows, so "not asked for" (0) differs from "not read" (absent).
        for size in sorted(set(supported_sizes(self.sys_root)) | set(asked)):
            count, per_node = asked.get(size, (0, {}))
            fam.add_metric([str(size), "all"], count)
            for node, n in sorted(per_node.items()):
                fam.add_metric([str(size), str(node)], n)
        return [fam]

    # --- output -----------------------------------------------------------------------
    def exposition(self) -> bytes:
        """One scrape in the Prometheus text format."""
        return generate_latest(self.registry)

    def as_json(self) -> list[dict[str, object]]:
        """One scrape as plain data: ``[{"name", "type", "help", "samples": [{"name",
        "labels", "value"}]}]``, families in scrape order."""
        return [{"name": m.name, "type": m.type, "help": m.documentation,
                 "samples": [{"name": x.name, "labels": dict(x.labels), "value": x.value}
                             for x in m.samples]}
                for m in self.registry.collect()]

    def write_textfile(self, directory: str, name: str = "physmem.prom") -> str:
        """Write one scrape to ``directory/name``, mode 0644, atomically and safely in a
        directory other users may write to (:func:`physmem._replace.replace_file`)."""
        return replace_file(directory, name, self.exposition())


class MetricsServer:
    """``exporter``'s metrics over HTTP (any path; ``/metrics`` by convention), served by
    waitress with bounds a slow or hostile client runs into (README "Fleet view").

    One event loop reads every connection, so a client that sends half a request holds a
    socket and a few KiB, not a thread; only complete requests reach the ``_HTTP_THREADS``
    worker threads. A connection silent for ``timeout`` seconds is closed; at most
    ``connections`` are open at once (more wait in the listen backlog); a request line and
    headers over ``header_bytes`` close the connection. prometheus-client's own
    ``start_http_server`` has none of these bounds (a thread per connection, no timeout).
    """

    def __init__(self, exporter: Exporter, host: str, port: int, *,
                 timeout: int = HTTP_TIMEOUT, connections: int = HTTP_CONNECTIONS,
                 header_bytes: int = HTTP_HEADER_BYTES) -> None:
        try:
            from waitress.server import create_server
        except ImportError as exc:
            raise ImportError("the physmem exporter's HTTP server needs the waitress library: "
                              "pip install 'physmem[exporter]' (or pip install waitress)") from exc
        for value, what in ((timeout, "timeout"), (connections, "connections"),
                            (header_bytes, "header_bytes")):
            as_positive(value, what)
        self._map: dict[int, Any] = {}
        self._server = create_server(
            make_wsgi_app(exporter.registry), map=self._map, sockets=[_bound_socket(host, port)],
            threads=_HTTP_THREADS, connection_limit=connections, channel_timeout=timeout,
            # Silent connections are looked for this often: closed within 1.5 x timeout.
            cleanup_interval=max(1, timeout // 2),
            max_request_header_size=header_bytes, max_request_body_size=header_bytes,
            # poll(2), not select(2): descriptors above 1023 are fine.
            asyncore_use_poll=True, backlog=1024, ident="physmem", expose_tracebacks=False,
            log_socket_errors=False)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one the kernel chose for port 0)."""
        return int(self._server.effective_port) 

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`close`."""
        self._server.run()

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="physmem-http",
                                        daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Close every connection and the listening socket; stop the worker threads."""
        def close_all() -> None:   # runs in the serving thread, which owns the sockets
            for dispatcher in list(self._map.values()):
                dispatcher.close()

        serving = self._thread is not None and self._thread.is_alive()
        if serving:
            self._server.trigger.pull_trigger(close_all) 
            assert self._thread is not None
            self._thread.join(as_timeout(timeout))
        else:
            close_all()
        self._server.task_dispatcher.shutdown(timeout=int(timeout)) 


def _bound_socket(host: str, port: int) -> socket.socket:
    """One socket bound to the first address ``host`` resolves to: one port (the kernel's
    choice for 0) even where a name resolves to IPv4 and IPv6. ``::`` also takes IPv4."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


_SECTION_METRICS: dict[str, list[str]] = {
    "hugepages": [f"{NS}_hugepages_pages", f"{NS}_hugepages_overcommit_pages"],
    "buddyinfo": [f"{NS}_buddyinfo_free_blocks", f"{NS}_contiguity_blocks",
                  f"{NS}_buddyinfo_free_share"],
    "pagetypeinfo": [f"{NS}_pagetypeinfo_free_blocks", f"{NS}_pageblocks",
                     f"{NS}_pageblock_size_bytes"],
    "vmstat": [f"{NS}_vmstat_*_total"],
    "cmdline": [f"{NS}_hugepages_configured_pages"],
}
