"""The one benchmark harness: fair rounds, honest statistics, a verdict on every target.

Rules every benchmark here follows, because a skeptic checks them first:

* every contender gets the same number of rounds, run interleaved in a freshly shuffled
  order each round, in one process, so drift in the machine's speed hits all alike;
* each contender is reported as median with min-max spread; ratios are of medians;
* each target is printed as one verdict line ending in ``met`` or ``MISSED`` (the line
  ``run_all.py`` collects), and a benchmark that states no verdict is an error.
"""
from __future__ import annotations

import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

VERDICT_WORDS = ("met", "MISSED")


@dataclass(frozen=True)
class Stats:
    """Wall times of one contender, in seconds."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def lo(self) -> float:
        return min(self.samples)

    @property
    def hi(self) -> float:
        return max(self.samples)

    def show(self, scale: float = 1e3, unit: str = "ms") -> str:
        return (f"median {self.median * scale:9.3f} {unit}  (min {self.lo * scale:.3f}, "
                f"max {self.hi * scale:.3f}, n={len(self.samples)})")


def measure(contenders: dict[str, Callable[[], Any]], rounds: int, *,
            seed: int | None = None, show: bool = True,
            self_timed: bool = False) -> dict[str, Stats]:
    """Time each contender ``rounds`` times, interleaved in a shuffled order per round.

    ``self_timed``: each contender returns the seconds of its own timed part (for work that
    needs an untimed set-up and tear-down around it, such as starting a server)."""
    rng = random.Random(seed)
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            fn = contenders[name]
            t0 = time.perf_counter()
            got = fn()
            times[name].append(float(got) if self_timed else time.perf_counter() - t0)
    stats = {n: Stats(tuple(t)) for n, t in times.items()}
    if show:
        for n in contenders:
            print(f"  {n:<52} {stats[n].show()}")
    return stats


class Verdicts:
    """Collects target verdicts; ``finish()`` gives the benchmark's exit code."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.met = 0
        self.missed = 0
        print(f"== {title}")

    def _line(self, label: str, value: str, target: str, ok: bool) -> bool:
        word = "met" if ok else "MISSED"
        print(f"  {label:<58} {value:>26}   target {target:<16} {word}")
        if ok:
            self.met += 1
        else:
            self.missed += 1
        return ok

    def ratio(self, label: str, num: Stats, den: Stats, *, at_most: float | None = None,
              at_least: float | None = None) -> bool:
        """``num.median / den.median`` against a bound; the spread shown is the ratio's range
        from the contenders' extremes (best case / worst case)."""
        r = num.median / den.median
        spread = f"({num.lo / den.hi:.2f}-{num.hi / den.lo:.2f})"
        if at_most is not None:
            return self._line(label, f"{r:.2f}x {spread}", f"<= {at_most:g}x", r <= at_most)
        assert at_least is not None
        return self._line(label, f"{r:.2f}x {spread}", f">= {at_least:g}x", r >= at_least)

    def value(self, label: str, value: float, unit: str, *, at_most: float | None = None,
              at_least: float | None = None, fmt: str = "{:,.2f}") -> bool:
        shown = f"{fmt.format(value)} {unit}"
        if at_most is not None:
            return self._line(label, shown, f"<= {fmt.format(at_most)} {unit}", value <= at_most)
        assert at_least is not None
        return self._line(label, shown, f">= {fmt.format(at_least)} {unit}", value >= at_least)

    def check(self, label: str, ok: bool, shown: str, target: str) -> bool:
        """A yes/no target (an equality, a refusal) with what was observed."""
        return self._line(label, shown, target, ok)

    def skip(self, label: str, reason: str) -> None:
        """A contender that could not run here: said, not silently dropped."""
        print(f"  {label:<58} skipped: {reason}")

    def finish(self) -> int:
        if self.met + self.missed == 0:
            print(f"  ERROR: {self.title} stated no verdict")
            return 2
        print(f"  {self.title}: {self.met} met, {self.missed} missed")
        return 1 if self.missed else 0


def info(label: str, text: str) -> None:
    """A figure reported for information, with no target (run_all does not collect it)."""
    print(f"  {label:<58} {text}")


def need_root() -> bool:
    if os.geteuid() != 0:
        print("needs root: physical frame numbers are hidden from unprivileged users")
        return False
    return True


def peer_path(name: str) -> str | None:
    """A peer binary built by benchmarks/peers/setup.sh, or None (with the reason printed)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "bin", name)
    if os.access(path, os.X_OK):
        return path
    print(f"  peer {name} is not built: run benchmarks/peers/setup.sh", file=sys.stdout)
    return None
