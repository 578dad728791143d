"""The package surface: lazy subpackages, the error hierarchy and its errno mapping."""
from __future__ import annotations

import errno
import importlib
import os
import pickle
import pkgutil
import subprocess
import sys

import pytest

import physmem
from physmem import errors
from physmem.errors import error_from_errno

from conftest import python_env


def test_subpackages_load_on_first_use():
    env, cwd = python_env()
    code = ("import sys, physmem; assert 'physmem.dma' not in sys.modules; "
            "assert callable(physmem.validate.run); assert physmem.dma.allocate_contiguous; "
            "assert 'physmem.dma' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=cwd)
    assert out.stdout.strip() == "ok", out.stderr
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        physmem.nonsense  # noqa: B018


def test_no_name_hides_a_submodule():
    # A package attribute named like one of its submodules must be that submodule: a function
    # called like its module (hugepages.reserve once) makes ``package.module.name`` fail.
    hidden = []
    for info in pkgutil.walk_packages(physmem.__path__, "physmem."):
        if info.name.endswith(".__main__"):
            continue  # runs the CLI
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue  # an optional dependency (matplotlib, prometheus-client) is missing
        parent, _, leaf = info.name.rpartition(".")
        if getattr(sys.modules[parent], leaf) is not module:
            hidden.append(info.name)
    assert hidden == []


def test_no_function_is_named_like_its_module():
    # ``analysis.fragmentation.fragmentation`` read as the module in one place and the
    # function in the next; a name means one thing.
    import ast
    import pathlib

    root = pathlib.Path(physmem.__file__).parent
    same = []
    for path in sorted(root.rglob("*.py")):
        if path.stem.startswith("_"):
            continue  # a private module (proc._maps) leaves its name to the function
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == path.stem:
                same.append(f"{path.relative_to(root)}: {node.name}")
    assert same == []


def test_dir_shows_only_the_api():
    names = dir(physmem)
    assert "TYPE_CHECKING" not in names and "annotations" not in names
    assert [n for n in names if n.startswith("_")] == ["__version__"]
    for gone in ("describe", "summarize", "PM", "physmap", "fragmentation", "cpus"):
        assert gone not in names
    assert set(physmem.__all__) <= set(names)


def test_every_public_module_says_what_is_public():
    # __all__ in each public module, and every name in it is there.
    for info in pkgutil.walk_packages(physmem.__path__, "physmem."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue  # an optional dependency (prometheus-client) is missing
        assert isinstance(getattr(module, "__all__", None), list), info.name
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, (info.name, missing)


def test_a_record_is_importable_from_one_place():
    from physmem import proc, validate

    for name in ("Finding", "Severity", "Report"):
        assert name not in proc.__all__ and name not in validate.__all__
    assert not hasattr(proc, "Finding")


def test_every_listed_name_resolves():
    for name in dir(physmem):
        assert getattr(physmem, name) is not None, name


@pytest.mark.parametrize("module,old", [
    ("physmem", "cpus"), ("physmem.numa", "Policy"), ("physmem.overcommit", "Policy"),
    ("physmem.validate", "validate"), ("physmem.proc", "parse_cpu_list"),
])
def test_renamed_names_are_gone(module, old):
    # Pre-1.0 has no callers to protect: one name per thing, no shim behind it.
    with pytest.raises(AttributeError, match=f"no attribute '{old}'"):
        getattr(importlib.import_module(module), old)


@pytest.mark.parametrize("err,cls,builtin", [
    (errno.EACCES, errors.PermissionDenied, PermissionError),
    (errno.EPERM, errors.PermissionDenied, PermissionError),
    (errno.ENOENT, errors.FileMissing, FileNotFoundError),
    (errno.ESRCH, errors.ProcessGone, ProcessLookupError),
    (errno.ENOTTY, errors.FeatureUnavailable, OSError),
    (errno.ENOSYS, errors.FeatureUnavailable, OSError),
    (errno.ENOMEM, errors.OutOfMemory, MemoryError),
    (errno.EIO, errors.PhysmemOSError, OSError),
])
def test_errno_maps_to_one_class_and_its_builtin(err, cls, builtin):
    exc = error_from_errno(err, "reading things", path="/proc/x")
    assert type(exc) is cls and isinstance(exc, builtin) and isinstance(exc, errors.PhysmemError)
    assert exc.errno == err and exc.path == "/proc/x" and exc.filename == "/proc/x"
    assert "reading things" in str(exc) and "/proc/x" in str(exc)
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is cls and str(again) == str(exc) and again.path == exc.path


def test_gone_process_is_told_apart_from_a_missing_file(tmp_path):
    gone = error_from_errno(errno.ENOENT, "reading maps", path=str(tmp_path / "99999" / "maps"),
                            pid=99999)
    assert isinstance(gone, errors.ProcessGone) and gone.pid == 99999
    (tmp_path / "42").mkdir()
    missing = error_from_errno(errno.ENOENT, "reading numa_maps",
                               path=str(tmp_path / "42" / "numa_maps"), pid=42)
    assert isinstance(missing, errors.FileMissing)


def test_permission_hint_depends_on_who_asks():
    exc = error_from_errno(errno.EACCES, "opening")
    expected = "refused even to root" if os.geteuid() == 0 else "run as root"
    assert expected in str(exc)


def test_value_errors_are_value_errors():
    for cls in (errors.InvalidArgument, errors.ParseError, errors.NotContiguous):
        assert issubclass(cls, ValueError)
    parse = errors.ParseError("bad field", path="/proc/meminfo", lineno=3, line=b"MemTotal: x")
    assert str(parse) == "/proc/meminfo:3: bad field: b'MemTotal: x'"
    assert issubclass(errors.PageNotPresent, LookupError)
    assert issubclass(errors.PfnUnavailable, PermissionError)


def test_topology_on_a_wrong_root_says_so(tmp_path):
    from physmem import topology

    with pytest.raises(errors.FileMissing, match="is a sysfs tree|a sysfs tree"):
        topology.discover(sys_root=str(tmp_path), proc_root=str(tmp_path))


@pytest.mark.parametrize("old", ["physmap", "contiguity", "fragmentation", "topology.cpulist",
                                 "_deprecated"])
def test_moved_modules_are_gone(old):
    """physmem.physmap & co. live in physmem.analysis only."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"physmem.{old}")
