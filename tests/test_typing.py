"""physmem ships py.typed: its annotations must hold up under mypy."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

import physmem


def test_mypy_is_clean(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install '.[test]')")
    package_dir = os.path.dirname(os.path.abspath(physmem.__file__))
    # The package that was imported (installed or in-place build), with a throwaway cache so
    # a stale one cannot hide errors.
    r = subprocess.run(
        [sys.executable, "-m", "mypy", package_dir, "--ignore-missing-imports",
         "--cache-dir", str(tmp_path / "mypy_cache")],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"mypy found type errors:\n{r.stdout}{r.stderr}"
