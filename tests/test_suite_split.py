"""The suite's two halves: ``pytest -m "not root"`` runs as anyone and changes nothing; plain
``pytest`` (root) runs everything and restores what it changes.

The rule that keeps them apart: a test that needs root or changes the system asks for the
``is_root`` fixture, or for a fixture built on it (``pools_restored``, ``hugepage_pool``,
``sysctl_restored``, ``run_unprivileged``, ``frozen_proc``, ...), and conftest gives it the
``root`` marker (``hugepages`` too, for pools); it never decides by itself with
``os.geteuid()``, which the marker cannot see. These tests check the rule on the real suite,
and that the unprivileged half passes as uid 65534 without a test skipped for want of root.
"""
from __future__ import annotations

import ast
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT_FIXTURES, python_env

TESTS = Path(__file__).resolve().parent

# Records what a collection selected and what ``-m`` left out, with each test's fixtures
# and markers.
PLUGIN = """
import json, os

def describe(item):
    return {"fixtures": sorted(getattr(item, "fixturenames", ())),
            "markers": sorted({m.name for m in item.iter_markers()})}

def pytest_deselected(items):
    DESELECTED.update({item.nodeid: describe(item) for item in items})

DESELECTED = {}

def pytest_collection_finish(session):
    with open(os.environ["SPLIT_REPORT"], "w") as f:
        json.dump({"selected": {item.nodeid: describe(item) for item in session.items},
                   "deselected": DESELECTED}, f)
"""


def collect(tmp_path: Path, *args: str) -> dict[str, dict[str, dict[str, list[str]]]]:
    """``pytest --collect-only ARGS`` over this suite, in a child: what it selected, and what
    it deselected."""
    (tmp_path / "split_plugin.py").write_text(PLUGIN)
    report = tmp_path / "collected.json"
    env, cwd = python_env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    env["SPLIT_REPORT"] = str(report)
    # --assert=plain: nothing runs, so the asserts need no rewriting (2.5 s of the 4 s).
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "split_plugin",
                        "-p", "no:cacheprovider", "--assert=plain", str(TESTS), *args],
                       capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(report.read_text())


def test_not_root_selects_no_test_that_needs_root(tmp_path):
    got = collect(tmp_path, "-m", "not root")
    unprivileged, left_out = got["selected"], got["deselected"]
    everything = {**unprivileged, **left_out}
    rooted = {n for n, t in everything.items() if ROOT_FIXTURES & set(t["fixtures"])}
    pooled = {n for n, t in everything.items() if "pools_restored" in t["fixtures"]}
    assert rooted and pooled <= rooted
    # conftest marks what uses the fixtures ...
    assert all("root" in everything[n]["markers"] for n in rooted)
    assert all("hugepages" in everything[n]["markers"] for n in pooled)
    # ... and the unprivileged selection leaves all of it out, and only what is marked.
    assert rooted <= set(left_out) and not rooted & set(unprivileged)
    assert all({"root", "hugepages"} & set(t["markers"]) for t in left_out.values())
    assert not any({"root", "hugepages"} & set(t["markers"]) for t in unprivileged.values())
    assert len(unprivileged) > len(everything) / 2, "most of the suite runs unprivileged"


def root_decided_inline(source: str) -> list[int]:
    """Lines where a test decides by ``geteuid()`` whether to skip (``if ...: pytest.skip``
    or ``skipif(...)``), which the ``root`` marker cannot see."""
    def asks_euid(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Attribute) and n.attr in ("geteuid", "getuid")
                   for n in ast.walk(node))

    def skips(nodes: list[ast.stmt]) -> bool:
        return any(isinstance(n, ast.Attribute) and n.attr == "skip"
                   for stmt in nodes for n in ast.walk(stmt))

    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and asks_euid(node.test) and skips(node.body):
            hits.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "skipif" and any(asks_euid(a) for a in node.args):
            hits.append(node.lineno)
    return hits


def test_no_test_decides_by_itself_that_it_needs_root():
    planted = ("import os, pytest\n"
               "def test_a():\n    if os.geteuid() != 0:\n        pytest.skip('root')\n"
               "@pytest.mark.skipif(os.geteuid() != 0, reason='root')\ndef test_b(): pass\n")
    assert root_decided_inline(planted) == [3, 5]
    found = {p.name: lines for p in sorted(TESTS.glob("*.py")) if p.name != "conftest.py"
             if (lines := root_decided_inline(p.read_text()))}
    # Session-wide snapshots cannot ask the function-scoped is_root: conftest's own do it,
    # and the tests using them ask is_root as well.
    assert not found, f"ask for the is_root fixture instead: {found}"


# Written by the kernel on every fork: not a setting.
VOLATILE = {"/proc/sys/kernel/ns_last_pid"}


def system_settings() -> dict[str, object]:
    """What a test could leave changed, read with plain open(): every hugepage pool's
    counters that a write sets (per size and per node), every sysctl root can write under
    vm, kernel and fs, the mounts of this mount namespace, the swap areas, and which memory
    blocks are online."""
    state: dict[str, object] = {}
    for pattern in ("/sys/kernel/mm/hugepages/*/nr_*hugepages",
                    "/sys/devices/system/node/node*/hugepages/*/nr_hugepages",
                    "/sys/devices/system/memory/memory*/state"):
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            state[str(path)] = path.read_text()
    for base in ("/proc/sys/vm", "/proc/sys/kernel", "/proc/sys/fs"):
        for folder, _, files in os.walk(base):
            for name in files:
                path = os.path.join(folder, name)
                if path in VOLATILE or not os.stat(path).st_mode & 0o200:
                    continue
                try:
                    with open(path) as f:
                        state[path] = f.read()
                except OSError:   # write-only (compact_memory, drop_caches)
                    pass
    with open("/proc/self/mountinfo") as f:
        # Mount point, type and source; mount ids and peer groups are not settings.
        state["mounts"] = sorted(" ".join(line.split()[4:5] + line.split(" - ")[1].split()[:2])
                                 for line in f)
    with open("/proc/swaps") as f:
        state["swaps"] = sorted(line.split()[0] for line in f.readlines()[1:])
    return state


def test_system_settings_see_a_change(is_root):
    """The check below can fail: a mount made in a new mount namespace shows in that
    namespace's reading (unshare -m keeps the test's own namespace untouched)."""
    probe = ("import sys; sys.path.insert(0, %r); import test_suite_split as t; "
             "import json; print(json.dumps(t.system_settings()['mounts']))" % str(TESTS))
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs split-probe /mnt && {sys.executable} -c {probe!r}"],
                       capture_output=True, text=True, timeout=60, env=python_env()[0])
    if r.returncode != 0 and "Operation not permitted" in r.stderr:
        pytest.skip("unshare -m needs CAP_SYS_ADMIN")
    assert r.returncode == 0, r.stderr
    assert "/mnt tmpfs split-probe" in json.loads(r.stdout)
    assert "/mnt tmpfs split-probe" not in system_settings()["mounts"]


def test_the_unprivileged_half_passes_as_nobody(run_unprivileged):
    """``pytest -m "not root"`` as uid 65534 from outside the checkout: no failure, no error,
    no test skipped for want of root, and no pool, sysctl, mount, swap
    area or memory block changed by it.

    The minute is a benchmark's target (benchmarks/suite.py, which times this test and
    records the load): the half is serial and CPU-bound, so a busy neighbour (another test
    run, a busy VM host) stretches it, and a timed test cannot tell that from a slow suite.
    Here the CPU time it used is printed beside the wall time, and twice the minute fails."""
    work = Path(tempfile.mkdtemp(prefix="physmem-split-", dir="/tmp"))
    before = system_settings()
    try:
        os.chown(work, 65534, 65534)
        report = work / "report.xml"
        t0, used0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        # pytest's per-user temporary root keeps what a run may reuse (the built wheel).
        r = run_unprivileged(f"""
            import sys, pytest
            sys.exit(pytest.main(["-q", "-m", "not root", "-p", "no:cacheprovider",
                                  "--junitxml", {str(report)!r}, {str(TESTS)!r}]))
        """, timeout=600, reach=(TESTS,), cwd=str(work))
        took, used = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (used.ru_utime - used0.ru_utime) + (used.ru_stime - used0.ru_stime)
        after = system_settings()
        changed = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys()
                   if before.get(k) != after.get(k)}
        assert not changed, f"the unprivileged half changed the system: {changed}"
        assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-3000:]
        suite = ET.parse(report).getroot().find("testsuite")
        assert suite is not None
        skipped = [(case.get("name"), s.get("message", ""))
                   for case in suite.iter("testcase") for s in case.findall("skipped")]
        for_root = [s for s in skipped if "root" in s[1].lower()]
        assert not for_root, f"tests skipped for want of root, not marked root: {for_root}"
        print(f"unprivileged half: {suite.get('tests')} tests, {len(skipped)} skipped, "
              f"{cpu:.1f} s of CPU, {took:.1f} s of wall time")
        assert int(suite.get("tests", 0)) > 500
        # The target is a minute on a quiet machine (README); a timed test only guards
        # against the half growing far past it, since a busy neighbour alone costs 50%.
        assert took < 120, f"the unprivileged half took {took:.0f} s ({cpu:.0f} s of CPU)"
    finally:
        shutil.rmtree(work, ignore_errors=True)
