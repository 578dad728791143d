"""Only the raw C layer (physmem/_raw/) may touch cffi's ``ffi``/``lib``:
everything else calls its typed functions, so ``lib`` (``Any`` to mypy) cannot leak."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import physmem

PACKAGE = Path(physmem.__file__).resolve().parent
RAW = PACKAGE / "_raw"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _lib_imports(path: Path) -> list[str]:
    """The imports in ``path`` that bring in physmem._native, or ffi/lib from the raw layer."""
    found = []
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("physmem._native")]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] \
                if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = {a.name for a in node.names}
            if module.startswith("physmem._native") or "_native" in names or \
                    (module.startswith("physmem._raw") and names & {"ffi", "lib"}):
                found.append(f"from {module} import {', '.join(sorted(names))}")
    return found


def test_only_the_raw_layer_imports_lib():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert RAW / "__init__.py" in sources
    offenders = {str(p.relative_to(PACKAGE)): imports for p in sources
                 if RAW not in p.parents and (imports := _lib_imports(p))}
    assert offenders == {}, f"import the raw layer's typed functions instead: {offenders}"
    # The checker itself sees the raw layer's own import (so it is not blind).
    assert _lib_imports(RAW / "__init__.py")


def test_no_lib_or_ffi_name_outside_the_raw_layer():
    # The imports and calls a reviewer would grep for, plus the names themselves: no module
    # may reach lib through an alias or an attribute either.
    pattern = re.compile(r"import lib\b|_lib import|from \.+_native|\bffi\.|\blib\.(pm|PM)_")
    hits = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}"
            for p in sorted(PACKAGE.rglob("*.py")) if RAW not in p.parents
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []
