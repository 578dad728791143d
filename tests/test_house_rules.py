"""ARCHITECTURE.md's rules on errors and arguments, checked on the package source: every
exception class lives in physmem/errors.py, and no module outside physmem/_args.py hand-rolls
the type checks _args does (``isinstance(x, bool)`` leading to an InvalidArgument)."""
from __future__ import annotations

import ast
import pathlib

import physmem

PACKAGE = pathlib.Path(physmem.__file__).parent


def exception_classes(source: str) -> list[str]:
    """Classes deriving from an exception (a base named ...Error, ...Exception, or one of
    physmem's errors imported by name)."""
    tree = ast.parse(source)
    imported_errors = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                       and (n.module or "").endswith("errors") for a in n.names}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.id if isinstance(base, ast.Name) else (
                    base.attr if isinstance(base, ast.Attribute) else "")
                if name.endswith(("Error", "Exception")) or name in imported_errors:
                    found.append(node.name)
                    break
    return found


def hand_rolled_checks(source: str) -> list[int]:
    """Lines of ``if ... isinstance(x, bool) ...: raise InvalidArgument``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.If):
            continue
        tests_bool = any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                         and c.func.id == "isinstance" and len(c.args) == 2
                         and "bool" in ast.unparse(c.args[1]) for c in ast.walk(node.test))
        raises = any(isinstance(s, ast.Raise) and s.exc is not None
                     and "InvalidArgument" in ast.unparse(s.exc) for s in node.body)
        if tests_bool and raises:
            lines.append(node.lineno)
    return lines


def test_the_scanners_see_what_they_must_refuse():
    assert exception_classes("class PlotUnavailable(PhysmemError, ImportError):\n  pass\n") \
        == ["PlotUnavailable"]
    assert exception_classes("from ..errors import FileMissing\nclass X(FileMissing): pass\n") \
        == ["X"]
    assert exception_classes("class Pool(NamedTuple):\n  pass\n") == []
    assert hand_rolled_checks("if isinstance(v, bool) or v < 0:\n"
                              "    raise InvalidArgument('no')\n") == [1]
    assert hand_rolled_checks("if isinstance(v, bool):\n    v = int(v)\n") == []


def test_errors_are_made_in_errors_py():
    found = [f"physmem/{p.relative_to(PACKAGE)}: {name}" for p in sorted(PACKAGE.rglob("*.py"))
             if p.name != "errors.py" for name in exception_classes(p.read_text())]
    assert not found, "exception classes outside physmem/errors.py:\n" + "\n".join(found)


def test_arguments_are_checked_with_args():
    found = [f"physmem/{p.relative_to(PACKAGE)}:{line}" for p in sorted(PACKAGE.rglob("*.py"))
             if p.name != "_args.py" for line in hand_rolled_checks(p.read_text())]
    assert not found, "hand-rolled argument checks (use physmem/_args.py):\n" + "\n".join(found)
