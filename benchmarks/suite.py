"""The unprivileged half of the test suite: how long a contributor without root waits.

Target: ``pytest -m "not root"``, run as uid 65534 from outside the checkout, takes under a
minute of wall time (median). It is timed by the suite's own test of that half
(``tests/test_suite_split.py::test_the_unprivileged_half_passes_as_nobody``), which grants
the unprivileged user search permission on the way to the interpreter and restores it, and
prints the child's wall and CPU time; the test itself only guards against twice the target,
since a timed test cannot tell a slow suite from a busy neighbour and this benchmark can
(run_all.py records the load). The first run after a change also builds the wheel and fills
mypy's cache, kept per user for the runs after it: it is shown apart, and the target is for
the runs after it.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import Stats, Verdicts, info, need_root, rounds  # noqa: E402

TESTS = Path(__file__).resolve().parents[1] / "tests"
TEST = "test_suite_split.py::test_the_unprivileged_half_passes_as_nobody"
LINE = re.compile(r"unprivileged half: (\d+) tests, (\d+) skipped, ([\d.]+) s of CPU, "
                  r"([\d.]+) s of wall time")


def one_run() -> tuple[int, float, float]:
    """(tests run, CPU seconds, wall seconds) of one unprivileged half."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                        str(TESTS / TEST)], capture_output=True, text=True, timeout=900,
                       # Not the checkout: ``python -m`` would import its unbuilt source.
                       cwd="/")
    m = LINE.search(r.stdout)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"  ERROR: the unprivileged half failed:\n{r.stdout[-3000:]}"
                         f"{r.stderr[-2000:]}")
    return int(m[1]), float(m[3]), float(m[4])


def main() -> int:
    v = Verdicts("unprivileged half of the test suite")
    if not need_root():  # the test switches to uid 65534 and back
        v.skip("pytest -m 'not root' as uid 65534", "needs root to switch users")
        return 2
    # The first run after a change builds the wheel and fills mypy's cache, which the
    # runs after it (a contributor's every other run) reuse: shown apart, not timed.
    first = one_run()
    info("first run after a change (builds the wheel, fills mypy's cache)",
         f"{first[2]:.1f} s wall, {first[1]:.1f} s CPU")
    runs = [one_run() for _ in range(rounds(3))]
    wall = Stats(tuple(r[2] for r in runs))
    cpu = Stats(tuple(r[1] for r in runs))
    print(f"  {runs[0][0]} tests; wall {wall.show(1, 's')}; CPU {cpu.show(1, 's')}")
    info("CPU time / wall time (2 CPUs would allow 2.0)",
         f"{cpu.median / wall.median:.2f}")
    v.value("pytest -m 'not root' as uid 65534, wall time", wall.median, "s", at_most=60.0,
            fmt="{:.1f}")
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
