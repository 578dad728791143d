"""The parser fuzz tests (tests/_parser_fuzz.py), run in a child whose address space and CPU
time are limited: a parser that expands a range or allocates by a count it read fails there
as a MemoryError (or a child killed for its CPU time), never as the OOM killer."""
from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

from conftest import python_env

FUZZ = Path(__file__).with_name("_parser_fuzz.py")
# Enough for Python, pytest, hypothesis and numpy (about 0.5 GiB of address space), far less
# than one expanded "0-4294967295" or a 2**(10**6) shift.
AS_LIMIT = 2 << 30
CPU_SECONDS = 120


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, resource.RLIM_INFINITY))


def test_parsers_in_a_memory_limited_child(tmp_path):
    env, _ = python_env()
    # One BLAS thread: each of its threads reserves address space at numpy's import.
    env = dict(env, PHYSMEM_FUZZ_AS_LIMIT=str(AS_LIMIT), OPENBLAS_NUM_THREADS="1")
    # tmp_path as the working directory keeps hypothesis' example database out of the tree.
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--rootdir", str(FUZZ.parent), str(FUZZ)],
                       capture_output=True, text=True, env=env, cwd=tmp_path,
                       preexec_fn=_limit, timeout=5 * CPU_SECONDS)
    if r.returncode < 0:   # SIGXCPU: a parser spent the CPU limit (a hang, a huge expansion)
        raise AssertionError(f"the fuzz child was killed by {signal.Signals(-r.returncode).name} "
                             f"after: {r.stdout[-2000:]}")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    tests = sum(1 for line in FUZZ.read_text().splitlines() if line.startswith("def test_"))
    assert re.search(rf"\b{tests} passed\b", r.stdout), r.stdout[-2000:]
    assert "skipped" not in r.stdout and "MemoryError" not in r.stdout
