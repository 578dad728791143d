"""Timing helpers shared by the benchmarks: best of several runs, ratio lines with targets."""
from __future__ import annotations

import time
from typing import Any, Callable


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Fastest of ``repeat`` runs in seconds (the least disturbed by a noisy machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def best_interleaved(fns: list[Callable[[], Any]], rounds: int = 15) -> list[float]:
    """Fastest time of each function over ``rounds`` rounds run in turn, so that drift in the
    machine's speed (other tenants, frequency) hits every contender alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def report(label: str, ratio: float, target: str, ok: bool) -> bool:
    print(f"  {label:<58} {ratio:8.2f}x   target {target:<12} {'met' if ok else 'MISSED'}")
    return ok


def show_time(label: str, seconds: float, extra: str = "") -> None:
    print(f"  {label:<58} {seconds * 1e3:9.2f} ms {extra}")
