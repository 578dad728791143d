"""README.md runs as written: its shell commands (with this physmem as `physmem`) and its
Python blocks (each in a fresh interpreter, after a short prelude that supplies the names a
block leaves to the reader: a buffer's ``addr``, a ``pid``, ...)."""
from __future__ import annotations

import importlib.util
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import kept_dir, python_env

README = Path(__file__).resolve().parent.parent / "README.md"
# Not run here: installing (CI just did), the test suite itself, and the benchmarks (each
# has its own run in benchmarks/run_all.py).
SKIP = re.compile(r"^(pip install|pytest|python benchmarks/)")


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.split("  #")[0].strip()
                if part and not part.startswith("#") and not SKIP.match(part):
                    commands.append(part)
    return commands


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory):
    """PATH with a `physmem` that runs the package under test (installed or in a checkout)."""
    env, _ = python_env()
    bindir = tmp_path_factory.mktemp("bin")
    shim = bindir / "physmem"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m physmem.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    return env


def test_readme_has_the_two_command_quick_start():
    quick = re.search(r"## Quick start\n\n```sh\n(.*?)```", README.read_text(), re.S)
    assert quick, "README.md lost its quick start"
    lines = quick.group(1).strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("pip install . && physmem ")
    assert lines[1] == "pip install '.[test]' && pytest"
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python3 -m pip install --quiet '.[test]'" in ci and "\npytest\n" in ci


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, shell_env, pools_restored):
    # Through stdin, as an interactive shell would run it: `bash -c` would exec the last
    # command in place of the shell, and `$$` would then name physmem, not the shell.
    proc = subprocess.run(["bash", "-s"], input=command, capture_output=True, text=True,
                          env=shell_env, cwd="/", timeout=120)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip(), f"{command} printed nothing"


# The names README's Python leaves to the reader. A block that uses a name not defined here
# or in the block fails with NameError, as it would for a user.
PRELUDE = """
import ctypes, mmap, os
import numpy as np
pid = os.getpid()                                   # a process to look at: this one
_buf = mmap.mmap(-1, 4 << 20)
_buf.write(b"x" * (4 << 20))                        # every page present
addr = ctypes.addressof(ctypes.c_char.from_buffer(_buf))
length = len(_buf)
addresses = np.arange(addr, addr + length, 4096, dtype=np.uint64)
offsets = np.arange(0, 64 << 20, 2 << 20, dtype=np.uint64)
source_bytes = bytes(256 << 20)                     # what the userfaultfd server hands out
"""
# Sysctls README's examples write; put back after each block.
SYSCTLS = ("vm/min_free_kbytes", "kernel/numa_balancing", "vm/overcommit_memory",
           "vm/overcommit_ratio", "vm/overcommit_kbytes")


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture
def sysctls_restored(sysctl_restored):
    for name in SYSCTLS:
        if Path("/proc/sys", name).exists():
            sysctl_restored(name)


def test_readme_has_python_blocks():
    assert len(readme_python_blocks()) >= 6


@pytest.mark.parametrize("block", readme_python_blocks(),
                         ids=lambda b: b.strip().splitlines()[0][:40])
def test_readme_python_block_runs(block, sysctls_restored, hugepage_pool):
    # Hugepages for the blocks that allocate them (the DMA block grows its own pool).
    hugepage_pool(40, required=False)
    env, cwd = python_env()
    proc = subprocess.run([sys.executable, "-c", PRELUDE + block], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)
    assert proc.returncode == 0, f"{block}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def test_readme_python_type_checks(request, tmp_path_factory):
    # What a user's type checker says about the README's code (physmem ships py.typed).
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install '.[test]')")
    # Blocks and mypy's cache kept across runs in one place: mypy rechecks only the blocks
    # (and physmem modules) whose source changed.
    kept = kept_dir(request, tmp_path_factory, "physmem-readme-mypy")
    for old in kept.glob("block*.py"):
        old.unlink()
    files = []
    for i, block in enumerate(readme_python_blocks()):
        files.append(kept / f"block{i}.py")
        files[-1].write_text(PRELUDE + block)
    env, cwd = python_env()
    r = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports",
                        "--cache-dir", str(kept / "cache"), *map(str, files)],
                       capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
