"""Layering rules that keep one reader per kernel file, checked on the package source.

Only the two readers open, list or write files: ``physmem/proc/_read.py`` (everything under
/proc) and ``physmem/_sysfs.py`` (everything under /sys, cgroup files included). Everything
else asks them, so errno is mapped in one place and every reader takes the root paths.
"""
from __future__ import annotations

import ast
import errno
import os
import pathlib

import pytest

import physmem
from physmem import _sysfs
from physmem.errors import FileMissing, InvalidArgument, ParseError, PhysmemOSError
from physmem.proc import _read

PACKAGE = pathlib.Path(physmem.__file__).parent
READERS = {"proc/_read.py", "_sysfs.py", "_readcore.py"}  # the last: what both share

# Calls that open, list, walk or write a file by path.
FILE_FUNCTIONS = {"open", "listdir", "scandir", "walk", "glob", "iglob", "read_text",
                  "read_bytes", "write_text", "write_bytes", "opendir",
                  # ...and those that look at one: a /proc or /sys path is asked through the
                  # readers as much as it is read through them
                  "stat", "lstat", "readlink", "isdir", "isfile", "islink", "exists", "access",
                  "realpath", "statvfs"}
# Sites outside the readers that touch files which are not kernel interface files, and why.
ALLOWED = {
    # The files on a hugetlbfs mount are the user's (DPDK's rtemap_*), not kernel interfaces:
    # opened and listed through descriptors relative to the mount, never by path.
    ("hugepages/_hugetlbfs.py", "open"): "opens hugetlbfs mounts, directories and files",
    ("hugepages/_hugetlbfs.py", "scandir"): "lists hugetlbfs directories by descriptor",
    # The pool lock and the ledgers are physmem's own files under /run/physmem, opened
    # relative to a checked directory fd (never by a path a neighbour could redirect).
    ("hugepages/_ledger.py", "open"): "the pool lock file, ledger files and their directory",
    ("hugepages/_ledger.py", "listdir"): "lists the ledgers to settle dead processes' claims",
    ("hugepages/_hugetlbfs.py", "stat"): "stats the user's files on a hugetlbfs mount by fd",
    # The interpreter the pool guardian is started with: not a kernel file.
    ("_raw/poolguard.py", "access"): "whether sys.executable can be run",
    # ENOENT under /proc/<pid> is ProcessGone only if /proc/<pid> itself is gone: the one
    # errno mapping looks, below the readers, for every reader alike.
    ("errors.py", "isdir"): "whether /proc/<pid> still exists",
    # Paths the user gives on the command line (an output file, a --textfile directory).
    ("cli/_options.py", "exists"): "a path given as a flag",
    ("cli/_options.py", "isdir"): "a path given as a flag",
    ("cli/_options.py", "stat"): "a path given as a flag",
}


def _reader_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names bound to a reader module, names bound to a function imported from one).

    Anything imported from physmem itself counts as the readers' (``proc.stat()`` parses
    /proc/<pid>/stat through them): those modules are checked on their own."""
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = (node.module or "").rsplit(".", 1)[-1]
            ours = node.level > 0 or (node.module or "").split(".")[0] == "physmem"
            for alias in node.names:
                bound = alias.asname or alias.name
                if alias.name in ("_read", "_sysfs") or ours:
                    modules.add(bound)
                if source in ("_read", "_sysfs") or ours:
                    functions.add(bound)
    return modules, functions


def _file_calls(source: str) -> list[tuple[int, str, str]]:
    """(line, receiver or '', function) of each call that may touch a file by path, the
    readers' own functions (imported from them by name or called on them) left out."""
    tree = ast.parse(source)
    reader_modules, reader_functions = _reader_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FILE_FUNCTIONS:
            if func.id not in reader_functions:
                found.append((node.lineno, "", func.id))
        elif isinstance(func, ast.Attribute) and func.attr in FILE_FUNCTIONS:
            receiver = func.value.id if isinstance(func.value, ast.Name) else "?"
            if receiver not in reader_modules:
                found.append((node.lineno, receiver, func.attr))
    return sorted(found)


def _modules() -> list[tuple[str, str]]:
    return [(p.relative_to(PACKAGE).as_posix(), p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))]


def test_scanner_sees_what_it_must_refuse():
    # The check below can only fail if the scanner finds these spellings at all.
    calls = _file_calls("open('/proc/x')\nos.open(p, 0)\nos.listdir('/sys')\nos.walk(r)\n"
                        "pathlib.Path('/proc/iomem').read_text()\nPath(p).open()\n"
                        "glob.glob('/sys/*')\n")
    assert [c[2] for c in calls] == ["open", "open", "listdir", "walk", "read_text", "open",
                                     "glob"]
    # The readers' API is not an offence, however it is imported.
    assert not _file_calls("from ..proc._read import read_bytes\nfrom .. import _sysfs\n"
                           "from ..proc import _read as r\nread_bytes(p)\n_sysfs.listdir(p)\n"
                           "r.read_bytes(p)\n")
    # But a name imported from elsewhere is.
    assert _file_calls("from os import listdir\nlistdir('/sys')\n")
    # Looking at a file counts as much as reading it.
    calls = _file_calls("os.stat('/proc/1/fd/3')\nos.readlink('/proc/1/ns/mnt')\n"
                        "os.path.isdir('/proc/1')\nos.path.exists('/sys/x')\n"
                        "os.access('/sys/x', os.W_OK)\nos.lstat(p)\n")
    assert [c[2] for c in calls] == ["stat", "readlink", "isdir", "exists", "access", "lstat"]
    # physmem's own functions of those names (proc.stat parses /proc/<pid>/stat) are not.
    assert not _file_calls("from ..proc import stat\nfrom .proc import pidstat\n"
                           "stat(pid)\npidstat.stat(pid)\n")


def test_only_the_readers_open_kernel_files():
    offenders = []
    used = set()
    for name, source in _modules():
        if name in READERS:
            continue
        for line, receiver, func in _file_calls(source):
            if (name, func) in ALLOWED:
                used.add((name, func))
                continue
            call = f"{receiver}.{func}" if receiver else func
            offenders.append(f"physmem/{name}:{line}: {call}()")
    assert not offenders, ("files opened outside physmem/proc/_read.py and physmem/_sysfs.py "
                           "(use those readers):\n" + "\n".join(offenders))
    assert used == set(ALLOWED), f"stale ALLOWED entries: {set(ALLOWED) - used}"


def _names(expr: ast.AST) -> set[str]:
    return ({n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
            | {n.attr for n in ast.walk(expr) if isinstance(n, ast.Attribute)})


def _builds_path(value: ast.AST) -> bool:
    # f"{root}/x", root + "/x", os.path.join(root, ...): a path spelled from a root, not the
    # result of a call that merely took one (a mount point found in /proc/self/mounts).
    return isinstance(value, (ast.JoinedStr, ast.BinOp)) or (
        isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
        and value.func.attr in ("join", "format"))


def _assignments(scope: ast.AST) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and _builds_path(node.value):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, set()).update(_names(node.value))
    return out


def _root_mixups(source: str) -> list[tuple[int, str]]:
    """Calls of the /sys reader on a path built from ``proc_root``, and the reverse.

    Paths are often built first (``path = f"{sys_root}/..."``): plain assignments in the
    same function are followed."""
    tree = ast.parse(source)
    owner: dict[str, str] = {}  # bound name -> "_read" or "_sysfs", module or function
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source_mod = (node.module or "").rsplit(".", 1)[-1]
            for alias in node.names:
                if alias.name in ("_read", "_sysfs"):
                    owner[alias.asname or alias.name] = alias.name
                elif source_mod in ("_read", "_sysfs"):
                    owner[alias.asname or alias.name] = source_mod
    wrong_root = {"_read": "sys_root", "_sysfs": "proc_root"}
    found = []

    def check(call: ast.Call, assigned: dict[str, set[str]]) -> None:
        func = call.func
        name = func.id if isinstance(func, ast.Name) else (
            func.value.id if isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name) else None)
        if name not in owner or not call.args:
            return
        arg = call.args[0]
        roots = _names(arg)
        roots |= {r for n in ast.walk(arg) if isinstance(n, ast.Name)
                  for r in assigned.get(n.id, ())}
        if wrong_root[owner[name]] in roots:
            found.append((call.lineno, name))

    def visit(node: ast.AST, assigned: dict[str, set[str]]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = assigned
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = {**assigned, **_assignments(child)}
            elif isinstance(child, ast.Call):
                check(child, assigned)
            visit(child, inner)

    visit(tree, {})
    return sorted(found)


def test_each_reader_keeps_to_its_tree():
    assert _root_mixups("from .._sysfs import read_optional\nread_optional(f'{proc_root}/x')\n")
    assert not _root_mixups("from .._sysfs import read_optional\nread_optional(f'{sys_root}/x')")
    assert _root_mixups("from ..proc._read import read_bytes\n"
                        "def f(sys_root):\n    path = f'{sys_root}/x'\n    read_bytes(path)\n")
    assert not _root_mixups("from ..proc._read import read_bytes\ndef f(sys_root):\n"
                            "    path = f'{sys_root}/x'\ndef g(proc_root):\n"
                            "    path = f'{proc_root}/x'\n    read_bytes(path)\n")
    offenders = [f"physmem/{name}:{line}: {func}()" for name, source in _modules()
                 for line, func in _root_mixups(source)]
    assert not offenders, ("/proc read through the sysfs reader or /sys through the /proc "
                           "reader:\n" + "\n".join(offenders))


def test_the_readers_exist_and_are_the_ones_that_open():
    sources = dict(_modules())
    for reader in READERS:
        assert any(func == "open" for _, _, func in _file_calls(sources[reader])), reader


# The readers' contract, on files whose state the test sets up itself.

def test_missing_file_is_file_missing_with_its_path(tmp_path):
    path = str(tmp_path / "absent")
    for read in (_read.read_bytes, _sysfs.read):
        with pytest.raises(FileMissing) as info:
            read(path)
        assert info.value.path == path and info.value.errno == errno.ENOENT
    assert _read.read_optional(path) is None and _sysfs.read_optional(path) is None
    # A path through a regular file (ENOTDIR) is missing too for the optional readers.
    (tmp_path / "file").write_bytes(b"1\n")
    assert _read.read_optional(str(tmp_path / "file" / "x")) is None
    assert _sysfs.read_optional(str(tmp_path / "file" / "x")) is None


def test_other_errno_keeps_its_class_and_path(tmp_path):
    # A directory cannot be read: EISDIR, not "missing", from both readers alike.
    path = str(tmp_path)
    for read in (_read.read_bytes, _read.read_optional, _sysfs.read, _sysfs.read_optional):
        with pytest.raises(PhysmemOSError) as info:
            read(path)
        assert info.value.errno == errno.EISDIR and info.value.path == path
        assert not isinstance(info.value, FileNotFoundError)


def test_readers_return_the_bytes_on_disk(tmp_path):
    data = os.urandom(5000) + b"\n\x00\x00"
    (tmp_path / "f").write_bytes(data)
    path = str(tmp_path / "f")
    assert _read.read_bytes(path) == _sysfs.read(path) == data
    # Captured trees pad with NULs: the optional readers drop them and the newline.
    assert _read.read_optional(path) == _sysfs.read_optional(path) == data.rstrip(b"\x00\n")


def test_writers_write_once_and_map_errno(tmp_path):
    path = str(tmp_path / "knob")
    (tmp_path / "knob").write_bytes(b"")
    _read.write_bytes(path, b"7\n", "cannot set knob")
    _sysfs.write(path, 8, "cannot set knob")
    assert (tmp_path / "knob").read_bytes() == b"8"
    for write in (lambda p: _read.write_bytes(p, b"1", "cannot set knob"),
                  lambda p: _sysfs.write(p, 1, "cannot set knob")):
        with pytest.raises(FileMissing) as info:
            write(str(tmp_path / "absent" / "knob"))
        assert info.value.path == str(tmp_path / "absent" / "knob")
        assert "cannot set knob" in str(info.value)


def test_kernel_rejection_is_invalid_argument():
    # /proc/self/oom_score_adj takes -1000..1000: the kernel itself says EINVAL to 5000.
    path = "/proc/self/oom_score_adj"
    with pytest.raises(InvalidArgument) as info:
        _read.write_bytes(path, b"5000\n", "cannot set oom_score_adj", rejected="refused")
    assert info.value.path == path
    with pytest.raises(PhysmemOSError) as info2:
        _read.write_bytes(path, b"5000\n", "cannot set oom_score_adj")
    assert info2.value.errno == errno.EINVAL


def test_odd_content_is_parse_error_with_the_path(tmp_path):
    (tmp_path / "n").write_bytes(b"twelve\n")
    with pytest.raises(ParseError) as info:
        _sysfs.read_int(str(tmp_path / "n"))
    assert info.value.path == str(tmp_path / "n")
