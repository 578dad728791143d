"""Kubernetes node labels from the contiguity forecast, through Node Feature Discovery.

kubelet reads hugepage capacity once, at start; what the kernel could hand out now, or after
compaction, reaches no scheduler. NFD's worker turns the files of its ``features.d``
directory (its "local" feature source) into node labels; :func:`write` puts the forecast
there (``physmem nfd``, or ``physmem exporter --nfd DIR`` after every forecast).

The file follows NFD's local-source rules: one ``name=value`` a line under our own label
namespace ``physmem.io/``; written as a dotfile (which NFD skips) and renamed into place; a
``# +expiry-time=`` line so the labels lapse if physmem stops refreshing them; values that
are valid label values (at most 63 characters); far under NFD's 64 kB file limit.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

from ._args import as_interval
from ._replace import replace_file
from .errors import InvalidArgument

if TYPE_CHECKING:
    from .analysis.contiguity import Forecast

__all__ = ["DEFAULT_DIR", "FILE_NAME", "PREFIX", "MAX_FILE_BYTES", "Obtainable",
           "obtainable", "dma_pinning", "labels", "render", "write", "expiry_after"]

DEFAULT_DIR = "/etc/kubernetes/node-feature-discovery/features.d"
FILE_NAME = "physmem"
PREFIX = "physmem.io/"
MAX_FILE_BYTES = 65536       # NFD ignores a larger feature file altogether
MAX_VALUE = 63               # a Kubernetes label value
# A label value (empty, or alphanumerics at both ends with - _ . inside); the name part of
# a label key follows the same pattern, non-empty.
_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
# Labels outlive the writer by this many refresh intervals: one missed refresh is no reason
# to take a node out of scheduling, three are. NFD's worker reads the file only every
# sleep-interval (60 s by default), so an interval below that counts as that.
EXPIRY_INTERVALS = 3
NFD_SLEEP_INTERVAL = 60.0


@dataclass(frozen=True)
class Obtainable:
    """Machine totals for one hugepage size (pages; runs in bytes), from the forecast."""

    size: int
    now: int
    after_compaction: int
    longest_run_now: int
    longest_run_after_compaction: int


def obtainable(fc: Forecast) -> tuple[Obtainable, ...]:
    """Per hugepage size, what the forecast says the kernel could hand out (pool pages
    included) and the longest run of adjacent such pages, now and after compaction."""
    out = []
    for size in fc.sizes:
        t = fc.totals(size)
        out.append(Obtainable(size, t["obtainable_now"], t["obtainable_after_compaction"],
                              t["longest_run_now"], t["longest_run_after_compaction"]))
    return tuple(out)


def dma_pinning() -> bool:
    """Whether a process like this one can pin DMA memory for the long term now
    (:func:`physmem.dma.pin.unavailable_reason` says why not): in a pod, the pod's seccomp
    profile and memlock limit answer as much as the kernel's ``kernel.io_uring_disabled``."""
    from .dma.pin import unavailable_reason

    return unavailable_reason() is None


def labels(figures: Iterable[Obtainable], *, dma: bool) -> dict[str, str]:
    """The node labels, in a stable order: per size ``hugepages-<size>-obtainable-now`` and
    ``-after-compaction`` (pages), ``longest-contiguous`` and
    ``longest-contiguous-after-compaction`` (bytes of adjacent obtainable memory, the best
    size), ``dma-pinning`` (true/false)."""
    from .hugepages.sizes import format_size

    out: dict[str, str] = {}
    best_now = best_after = 0
    for f in sorted(figures, key=lambda f: f.size):
        name = f"{PREFIX}hugepages-{format_size(f.size)}"
        out[f"{name}-obtainable-now"] = str(f.now)
        out[f"{name}-obtainable-after-compaction"] = str(f.after_compaction)
        best_now = max(best_now, f.longest_run_now)
        best_after = max(best_after, f.longest_run_after_compaction)
    out[f"{PREFIX}longest-contiguous"] = str(best_now)
    out[f"{PREFIX}longest-contiguous-after-compaction"] = str(best_after)
    out[f"{PREFIX}dma-pinning"] = "true" if dma else "false"
    return out


def expiry_after(interval: float, now: _dt.datetime | None = None) -> _dt.datetime:
    """When labels refreshed every ``interval`` seconds should lapse: three intervals (at
    least three of NFD's 60 s rediscovery periods) from ``now`` (UTC, whole seconds)."""
    start = now or _dt.datetime.now(_dt.timezone.utc)
    seconds = EXPIRY_INTERVALS * max(interval, NFD_SLEEP_INTERVAL)
    return (start + _dt.timedelta(seconds=seconds)).replace(microsecond=0)


def render(node_labels: Mapping[str, str], expires: _dt.datetime) -> bytes:
    """The feature file's text. Raises InvalidArgument for a label NFD or Kubernetes would
    refuse (so a bad label fails here, not silently on the node)."""
    if expires.tzinfo is None:
        raise InvalidArgument("expires must carry a time zone")
    stamp = expires.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = ["# physmem: what this node's kernel could hand out, from physmem's contiguity "
             "forecast", f"# +expiry-time={stamp}"]
    for key, value in node_labels.items():
        prefix, sep, name = key.partition("/")
        if (not sep or not prefix or len(prefix) > 253 or len(name) > 63
                or not _NAME.fullmatch(name)):
            raise InvalidArgument(f"{key!r} is not a namespaced label name")
        if len(value) > MAX_VALUE or not _VALUE.fullmatch(value):
            raise InvalidArgument(f"label {key}: {value!r} is not a label value "
                                  f"(at most {MAX_VALUE} of A-Z a-z 0-9 - _ .)")
        lines.append(f"{key}={value}")
    data = ("\n".join(lines) + "\n").encode()
    if len(data) >= MAX_FILE_BYTES:
        raise InvalidArgument(f"the feature file would be {len(data)} bytes; NFD ignores "
                              f"files of {MAX_FILE_BYTES} bytes and more")
    return data


def write(directory: str, node_labels: Mapping[str, str], *, interval: float,
          name: str = FILE_NAME) -> str:
    """Write the feature file ``directory/name`` for labels refreshed every ``interval``
    seconds (a dotfile renamed into place, mode 0644); returns its path."""
    interval = as_interval(interval)
    return replace_file(directory, name, render(node_labels, expiry_after(interval)))
