"""physmem ships py.typed: its annotations must hold up under ``mypy --strict``."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

import physmem

from conftest import kept_dir


def test_mypy_is_clean(request, tmp_path_factory):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install '.[test]')")
    package_dir = os.path.dirname(os.path.abspath(physmem.__file__))
    # The package that was imported (installed or in-place build), copied out first: mypy
    # given a path inside site-packages takes site-packages as a source root and trips over
    # other modules there. The copy and mypy's cache are kept across runs, in one place, so
    # that mypy rechecks only what changed: it compares each module's source (size, mtime,
    # then hash) with its cache entry and rechecks the changed modules and their dependents.
    kept = kept_dir(request, tmp_path_factory, "physmem-mypy")
    copy = kept / "src" / "physmem"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(package_dir, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "physmem", "--ignore-missing-imports",
         "--cache-dir", str(kept / "mypy_cache")],
        capture_output=True, text=True, timeout=120, cwd=copy.parent)
    assert r.returncode == 0, f"mypy found type errors:\n{r.stdout}{r.stderr}"


def test_virt_to_phys_has_a_precise_type(tmp_path):
    """The headline function is typed: an int for an int, an array for an array, and mypy
    refuses to take either as the other."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install '.[test]')")
    package_dir = os.path.dirname(os.path.abspath(physmem.__file__))
    copy = tmp_path / "src" / "physmem"
    shutil.copytree(package_dir, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (tmp_path / "src" / "use.py").write_text(
        "import numpy as np\nfrom physmem import virt_to_phys\n"
        "a: int = virt_to_phys(4096)\n"
        "b: np.ndarray = virt_to_phys(np.zeros(2, np.uint64))\n"
        "c: np.ma.MaskedArray = virt_to_phys([4096], strict=False)\n"
        "d: int | None = virt_to_phys(4096, strict=False)\n"
        "e: int = virt_to_phys(4096, strict=False)\n"        # may be None: refused
        "f: int = virt_to_phys(np.zeros(2, np.uint64))\n")   # an array: refused
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "use.py", "--ignore-missing-imports",
         "--cache-dir", str(tmp_path / "mypy_cache")],
        capture_output=True, text=True, timeout=120, cwd=copy.parent)
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert [e.split(":")[1] for e in errors] == ["7", "8"], r.stdout
