"""The one benchmark harness: fair rounds, honest statistics, a verdict on every target.

Rules every benchmark here follows, because a skeptic checks them first:

* every contender gets the same number of rounds, run interleaved in a freshly shuffled
  order each round, in one process, so drift in the machine's speed hits all alike;
* each contender is reported as median with min-max spread; ratios are of medians;
* each target is printed as one verdict line ending in ``met`` or ``MISSED`` (the line
  ``run_all.py`` collects), and a benchmark that states no verdict is an error.
"""
from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

VERDICT_WORDS = ("met", "MISSED")


def _stop(signum: int, _frame: object) -> None:
    # A benchmark grows pools, mounts hugetlbfs and writes sysfs: a SIGTERM (run_all.py's
    # timeout, a CI runner giving up) or SIGHUP must unwind through its finally blocks, which
    # put all of that back, instead of ending the process where it stands. Later signals are
    # ignored so that the restoring itself is not cut short.
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)
    raise SystemExit(128 + signum)


for _signal in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(_signal, _stop)
ROUNDS_ENV = "PHYSMEM_BENCH_ROUNDS"  # run_all.py --rounds: every benchmark's rounds, for quick runs


def rounds(default: int) -> int:
    """The rounds a benchmark runs: ``default``, unless run_all.py --rounds set them all."""
    value = os.environ.get(ROUNDS_ENV)
    return max(1, int(value)) if value else default


# Commands run from an empty directory: ``python -m`` puts its working directory first on
# sys.path, so from a checkout's root it would import the source tree (unbuilt) instead of
# the installed physmem the benchmark measures in process.
_NEUTRAL = tempfile.mkdtemp(prefix="physmem-bench-cwd-")
atexit.register(shutil.rmtree, _NEUTRAL, True)


def physmem_command(*args: str) -> list[str]:
    """The physmem CLI of the physmem this process imports (run it with :func:`run_command`)."""
    return [sys.executable, "-m", "physmem.cli", *args]


def run_command(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """Run a command to its end, output discarded, from the empty directory; a failure raises."""
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    return subprocess.run(cmd, check=True, cwd=_NEUTRAL, **kwargs)


def physmem_origin() -> str:
    """Which physmem this process measures: version and the directory it was imported from."""
    import physmem

    return f"physmem {physmem.__version__} from {os.path.dirname(physmem.__file__)}"


def check_command_origin() -> None:
    """Stop (exit 2) unless the CLI a benchmark times is the physmem it imports."""
    here = os.path.dirname(__import__("physmem").__file__)
    got = subprocess.run([sys.executable, "-c", "import os, physmem; "
                          "print(os.path.dirname(physmem.__file__))"], capture_output=True,
                         text=True, cwd=_NEUTRAL).stdout.strip()
    if got != here:
        print(f"  ERROR: the physmem command imports {got or 'nothing'}, this process {here}")
        sys.exit(2)


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
            self_timed: bool = False, scale: float = 1e3, unit: str = "ms") -> dict[str, Stats]:
    """Time each contender ``rounds`` times, interleaved in a shuffled order per round.

    ``self_timed``: each contender returns the seconds of its own timed part (for work that
    needs an untimed set-up and tear-down around it, such as starting a server). ``scale``
    and ``unit``: how the times are printed."""
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
            print(f"  {n:<52} {stats[n].show(scale, unit)}")
    return stats


class Verdicts:
    """Collects target verdicts; ``finish()`` gives the benchmark's exit code."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.met = 0
        self.missed = 0
        print(f"== {title}")
        print(f"  {physmem_origin()}")

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
        # A contender faster than its clock's resolution has a zero minimum: an open end.
        top = f"{num.hi / den.lo:.2f}" if den.lo > 0 else "inf"
        spread = f"({num.lo / den.hi:.2f}-{top})"
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
