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


@pytest.fixture(scope="module")
def checkout_for_mypy(request, tmp_path_factory):
    """The imported package (installed or in-place build) copied out, and mypy's cache: mypy
    given a path inside site-packages takes site-packages as a source root and trips over
    other modules there. Both are kept across runs, in one place, so that mypy rechecks only
    what changed: it compares each module's source (size, mtime, then hash) with its cache
    entry and rechecks the changed modules and their dependents."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install '.[test]')")
    package_dir = os.path.dirname(os.path.abspath(physmem.__file__))
    kept = kept_dir(request, tmp_path_factory, "physmem-mypy")
    copy = kept / "src" / "physmem"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(package_dir, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return copy.parent, kept / "mypy_cache"


def mypy(where, cache, *targets):
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", *targets,
                           "--ignore-missing-imports", "--cache-dir", str(cache)],
                          capture_output=True, text=True, timeout=120, cwd=where)


def test_mypy_is_clean(checkout_for_mypy):
    r = mypy(*checkout_for_mypy, "physmem")
    assert r.returncode == 0, f"mypy found type errors:\n{r.stdout}{r.stderr}"


def test_virt_to_phys_has_a_precise_type(checkout_for_mypy):
    """The headline function is typed: an int for an int, an array for an array, and mypy
    refuses to take either as the other."""
    where, cache = checkout_for_mypy
    (where / "use.py").write_text(
        "import numpy as np\nfrom physmem import virt_to_phys\n"
        "a: int = virt_to_phys(4096)\n"
        "b: np.ndarray = virt_to_phys(np.zeros(2, np.uint64))\n"
        "c: np.ma.MaskedArray = virt_to_phys([4096], strict=False)\n"
        "d: int | None = virt_to_phys(4096, strict=False)\n"
        "e: int = virt_to_phys(4096, strict=False)\n"        # may be None: refused
        "f: int = virt_to_phys(np.zeros(2, np.uint64))\n")   # an array: refused
    r = mypy(where, cache, "use.py")
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert [e.split(":")[1] for e in errors] == ["7", "8"], r.stdout
