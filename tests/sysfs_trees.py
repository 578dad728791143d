"""The vendored sysfs/procfs fixture trees (tests/data/sysfs), unpacked once per session."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

# Vendored (hwloc's test data, BSD-3-Clause: see data/sysfs/README.md and HWLOC-COPYING.txt),
# so a fresh clone runs the suite with nothing outside the repository.
FIXTURES = Path(__file__).resolve().parent / "data" / "sysfs"
_cache: dict[str, Path] = {}


def archives() -> list[str]:
    return sorted(p.name[: -len(".tar.bz2")] for p in FIXTURES.glob("*.tar.bz2"))


def lstopo_text(name: str) -> str | None:
    p = FIXTURES / f"{name}.lstopo.txt"
    return p.read_text() if p.exists() else None


_scratch: list[Path] = []


def _scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where trees are unpacked and doctored, once per session: tmpfs (/dev/shm) where there
    is one, since the trees are thousands of small files and creating them on a disk-backed
    /tmp was most of these tests' time; pytest's temporary directory otherwise. Removed when
    the session's process exits."""
    if not _scratch:
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
            _scratch.append(Path(tempfile.mkdtemp(prefix="physmem-trees-", dir=shm)))
            atexit.register(shutil.rmtree, _scratch[0], True)
        else:
            _scratch.append(tmp_path_factory.mktemp("trees"))
    return _scratch[0]


def doctored_copy(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of an unpacked tree for one test to change. Its files are hard links to the
    tree's (a copy of every file cost seconds per test), so change a file only with
    :func:`put`, which gives the copy a file of its own; removing files is safe."""
    dest = Path(tempfile.mkdtemp(prefix="doctored-", dir=_scratch_dir(tmp_path_factory)))
    root = dest / tree.name
    shutil.copytree(tree, root, symlinks=True, copy_function=os.link)
    return root


def put(path: Path, text: str) -> None:
    """Write ``text`` to a file of a doctored copy, never through to the tree it links to."""
    path.unlink(missing_ok=True)
    path.write_text(text)


def unpack(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tree's root (holding ``sys/`` and ``proc/``); archives hold one top folder."""
    if name not in _cache:
        dest = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_scratch_dir(tmp_path_factory)))
        archive = FIXTURES / f"{name}.tar.bz2"
        if shutil.which("tar"):
            # GNU tar is ~10x faster than tarfile on these many-small-file trees.
            subprocess.run(["tar", "-xjf", str(archive), "-C", str(dest)], check=True)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="tar")
        # The archives hold read-only files; tests doctor copies of the trees, also when
        # not run as root (root writes regardless of the mode).
        for directory, _, files in os.walk(dest):
            os.chmod(directory, 0o755)
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o644)
        (top,) = [p for p in dest.iterdir() if p.is_dir()]
        _cache[name] = top
    return _cache[name]


class Trees(dict):
    """``trees[name]`` unpacks on first use, so a test run pays only for the trees it reads."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self._factory = tmp_path_factory

    def __missing__(self, name: str) -> Path:
        if name not in archives():
            raise KeyError(name)
        self[name] = unpack(name, self._factory)
        return self[name]
