"""ARCHITECTURE.md's rules on errors and arguments, checked on the package source: every
exception class lives in physmem/errors.py, and no module outside physmem/_args.py hand-rolls
the type checks _args does (an ``isinstance`` of a scalar or text type, ``operator.index``,
``np.issubdtype`` or a dtype kind, leading to an InvalidArgument)."""
from __future__ import annotations

import ast
import pathlib
import re

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


# The types _args.py checks for: an isinstance test naming one of them is a type check.
_CHECKED_TYPES = re.compile(r"\b(bool|bool_|int|integer|float|floating|complex|number|Integral|"
                            r"Real|Number|str|bytes|bytearray|memoryview)\b")


def _is_type_test(node: ast.AST) -> bool:
    """``isinstance(x, <a type _args checks>)``, ``operator.index(x)``, ``np.issubdtype(...)``
    or a ``.dtype.kind`` / ``.kind`` comparison."""
    if isinstance(node, ast.Call):
        func = ast.unparse(node.func)
        if func == "isinstance" and len(node.args) == 2:
            return bool(_CHECKED_TYPES.search(ast.unparse(node.args[1])))
        return func in ("operator.index", "index") or func.endswith("issubdtype")
    return isinstance(node, ast.Attribute) and node.attr == "kind"


def _raises_invalid_argument(statements: list[ast.stmt]) -> bool:
    return any(isinstance(s, ast.Raise) and s.exc is not None
               and "InvalidArgument" in ast.unparse(s.exc) for s in statements)


def hand_rolled_checks(source: str) -> list[int]:
    """Lines of ``if <type test>: raise InvalidArgument`` (in either branch), and of
    ``try: operator.index(x) except ...: raise InvalidArgument``: the checks _args does."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If):
            if any(map(_is_type_test, ast.walk(node.test))) and (
                    _raises_invalid_argument(node.body) or _raises_invalid_argument(node.orelse)):
                lines.append(node.lineno)
        elif isinstance(node, ast.Try):
            tested = any(_is_type_test(n) for s in node.body for n in ast.walk(s))
            if tested and any(_raises_invalid_argument(h.body) for h in node.handlers):
                lines.append(node.lineno)
    return lines


def test_the_scanners_see_what_they_must_refuse():
    assert exception_classes("class PlotUnavailable(PhysmemError, ImportError):\n  pass\n") \
        == ["PlotUnavailable"]
    assert exception_classes("from ..errors import FileMissing\nclass X(FileMissing): pass\n") \
        == ["X"]
    assert exception_classes("class Pool(NamedTuple):\n  pass\n") == []
    refused = {
        "bool test": "if isinstance(v, bool) or v < 0:\n    raise InvalidArgument('no')\n",
        "str test": "if not isinstance(name, str) or not name:\n    raise InvalidArgument('x')\n",
        "numpy scalar, raising in else": "if isinstance(v, (int, np.integer)):\n    pass\n"
                                         "else:\n    raise InvalidArgument('x')\n",
        "float test": "if isinstance(t, float):\n    raise InvalidArgument(f'{t}')\n",
        "bytes test": "x = 1\nif isinstance(b, (bytes, bytearray)):\n"
                      "    raise InvalidArgument('b')\n",
        "dtype kind": "if arr.dtype.kind not in 'iu':\n    raise InvalidArgument('ints')\n",
        "issubdtype": "if not np.issubdtype(a.dtype, np.integer):\n"
                      "    raise InvalidArgument('ints')\n",
        "operator.index": "try:\n    v = operator.index(x)\nexcept TypeError:\n"
                          "    raise InvalidArgument('x') from None\n",
        "kind in a try": "try:\n    if a.dtype.kind != 'u':\n        raise TypeError\n"
                         "except TypeError:\n    raise InvalidArgument('x') from None\n",
    }
    for what, source in refused.items():
        assert hand_rolled_checks(source), what
    allowed = {
        "bool made an int": "if isinstance(v, bool):\n    v = int(v)\n",
        "dispatch on str": "if isinstance(v, str):\n    return [v]\n",
        "an object of physmem's": "if not isinstance(t, Topology):\n"
                                  "    raise InvalidArgument('t')\n",
        "a semantic check": "if size % 4096:\n    raise InvalidArgument('size')\n",
        "other error": "if isinstance(v, bool):\n    raise TypeError('v')\n",
    }
    for what, source in allowed.items():
        assert not hand_rolled_checks(source), what


def test_errors_are_made_in_errors_py():
    found = [f"physmem/{p.relative_to(PACKAGE)}: {name}" for p in sorted(PACKAGE.rglob("*.py"))
             if p.name != "errors.py" for name in exception_classes(p.read_text())]
    assert not found, "exception classes outside physmem/errors.py:\n" + "\n".join(found)


def test_arguments_are_checked_with_args():
    found = [f"physmem/{p.relative_to(PACKAGE)}:{line}" for p in sorted(PACKAGE.rglob("*.py"))
             if p.name != "_args.py" for line in hand_rolled_checks(p.read_text())]
    assert not found, "hand-rolled argument checks (use physmem/_args.py):\n" + "\n".join(found)
