"""The shell commands in README.md run as written (with this physmem as `physmem`)."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import python_env

README = Path(__file__).resolve().parent.parent / "README.md"
POOLS = sorted(Path("/sys/kernel/mm/hugepages").glob("hugepages-*/nr_hugepages"))
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


@pytest.fixture
def pools_restored(is_root):
    before = {p: p.read_text() for p in POOLS}
    yield
    for p, value in before.items():
        p.write_text(value)


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
