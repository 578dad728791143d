"""The benchmarks run as README says: from a fresh clone after ``pip install .``, with no
in-place build. ``python -m physmem.cli`` started from a checkout's root imports the source
tree, whose extension is not built there; a benchmark must measure the installed package.

One benchmark (kpageflags: in process and through the CLI, a few seconds) runs through
run_all.py from a ``git clone`` of this checkout's HEAD into a venv that ``pip install``ed
the clone. The physmem it reports measuring is checked against the venv's own site-packages,
read by the venv's interpreter from an empty directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.root
def test_a_benchmark_runs_from_a_fresh_clone_after_pip_install(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: nothing to clone")
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    r = subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    r = subprocess.run([python, "-m", "pip", "install", "-q", str(clone)], capture_output=True,
                       text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert not list((clone / "physmem").rglob("*.so")), "the clone was built in place"
    r = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    installed = str(Path(r.stdout.strip()) / "physmem")

    # From the clone's root, as README runs it: the failure mode is importing ./physmem.
    r = subprocess.run([python, "benchmarks/run_all.py", "--only", "kpageflags", "--rounds", "1",
                        "--report-only"], capture_output=True, text=True, env=env, timeout=300,
                       cwd=clone)
    output = (clone / "benchmarks" / "results" / "kpageflags.txt").read_text()
    assert r.returncode == 0, r.stdout + r.stderr + output
    assert f"from {installed}\n" in output, output      # what the benchmark measured
    assert "Traceback" not in output and "ERROR" not in output, output
    table = (clone / "benchmarks" / "results" / "table.md").read_text()
    assert f"from {installed}." in table, table
    rows = [line for line in table.splitlines() if line.startswith("| kpageflags | ")]
    verdicts = [row.split("|")[5].split()[0] for row in rows]
    assert "met" in verdicts or "MISSED" in verdicts, table   # targets stated
    # An ERROR row for a crash or a missing verdict fails; one saying the pools changed
    # while it ran may be another process's doing on a shared machine.
    assert not [row for row in rows if "failed" in row or "no verdict" in row], table
    assert not list((clone / "physmem").rglob("*.so")), "the benchmark built the clone"
