"""ARCHITECTURE.md's layer table is the import graph's law, checked on the package source.

The table names, for each layer, where its modules live (the ``where`` column). Every module
of physmem must sit in one layer; an import (at module level, inside a function, or under
TYPE_CHECKING: a dependency all the same) may reach its own layer or the ones below, never a
higher one - except a package's ``__init__`` re-exporting its own submodules. And no import
chain may come back to where it started.
"""
from __future__ import annotations

import ast
import pathlib
import re


# The checkout's source and map (an installed physmem has no ARCHITECTURE.md beside it).
REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "physmem"
ARCHITECTURE = REPO / "ARCHITECTURE.md"


def parse_layers(markdown: str, package: str = "physmem") -> list[tuple[str, list[str]]]:
    """(layer, places) bottom to top from the first table: places are paths relative to the
    package, a directory ending in ``/``; paths outside the package are left out."""
    layers = []
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    for row in rows[2:]:  # the header and the |---| line
        cells = [c.strip() for c in row.strip("|").split("|")]
        places = []
        for token in re.findall(r"`([^`]+)`", cells[1]):
            token = token.removeprefix(f"{package}/")
            if token.endswith((".py", "/")) and not token.startswith(("csrc/", "setup.py")):
                places.append(token)
        layers.append((cells[0], places))
    return layers


def _module_path(root: pathlib.Path, dotted: str) -> str | None:
    """The file of module ``dotted`` relative to ``root`` (the package directory)."""
    parts = dotted.split(".")
    if parts[0] != root.name:
        return None
    rel = pathlib.Path(*parts[1:]) if len(parts) > 1 else pathlib.Path()
    if (root / rel / "__init__.py").is_file():
        return (rel / "__init__.py").as_posix()
    if parts[1:] and (root / rel).with_suffix(".py").is_file():
        return rel.with_suffix(".py").as_posix()
    if parts[1:] and ((root / rel).with_suffix(".pyi").is_file()
                      or any(root.glob(f"{rel.as_posix()}.*.so"))):
        return ""  # the C core (an extension module): below every Python layer
    return None


def import_graph(root: pathlib.Path) -> dict[str, dict[str, int]]:
    """module path -> {imported module path: first line}, every import in the file."""
    graph: dict[str, dict[str, int]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        me = ".".join((root.name, *rel.with_suffix("").parts))
        package = me.removesuffix(".__init__") if rel.name == "__init__.py" else me.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [_module_path(root, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    sub = _module_path(root, f"{module}.{alias.name}")
                    targets.append(sub if sub is not None else _module_path(root, module))
            for target in targets:
                if target and target != rel.as_posix():
                    edges.setdefault(target, node.lineno)
        graph[rel.as_posix()] = edges
    return graph


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """Index of the layer whose most specific place holds ``module``."""
    best, best_len = None, -1
    for index, (_, places) in enumerate(layers):
        for place in places:
            hit = module.startswith(place) if place.endswith("/") else module == place
            if hit and len(place) > best_len:
                best, best_len = index, len(place)
    return best


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(root: pathlib.Path, markdown: str) -> list[str]:
    layers = parse_layers(markdown, root.name)
    graph = import_graph(root)
    found = []
    for module in graph:
        if layer_of(module, layers) is None:
            found.append(f"{module}: in no layer of the table")
    for module, edges in sorted(graph.items()):
        mine = layer_of(module, layers)
        if mine is None:
            continue
        for target, line in sorted(edges.items()):
            theirs = layer_of(target, layers)
            if theirs is None or theirs <= mine:
                continue
            if module.endswith("__init__.py") and target.startswith(module.removesuffix("__init__.py")):
                continue  # a package re-exporting its own parts
            found.append(f"{module}:{line}: imports {target} ({layers[theirs][0]}) from "
                         f"layer {layers[mine][0]}")
    for component in _cycles(graph):
        found.append("import cycle: " + " <-> ".join(component))
    return found


TABLE = """\
| layer | where | what |
|---|---|---|
| base | `pkg/__init__.py`, `pkg/base.py` | bottom |
| middle | `pkg/mid/`, `low.py` | middle |
| top | `pkg/top.py` | top |
"""


def _tree(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_checker_refuses_an_upward_import_and_a_cycle(tmp_path):
    clean = {"__init__.py": "from . import top\n", "base.py": "",
             "mid/__init__.py": "from .a import x\n", "mid/a.py": "from ..base import y\n",
             "low.py": "import pkg.base\n", "top.py": "from .mid import a\nfrom . import low\n"}
    assert violations(_tree(tmp_path / "clean", clean), TABLE) == []
    planted = {**clean,
               # upward, inside a function: a dependency all the same
               "base.py": "def f():\n    from .top import z\n",
               # a cycle inside one layer
               "mid/a.py": "from .. import low\n", "low.py": "from .mid import a\n",
               "stray.py": ""}
    found = violations(_tree(tmp_path / "planted", planted), TABLE)
    assert "stray.py: in no layer of the table" in found
    assert "base.py:2: imports top.py (top) from layer base" in found
    assert "import cycle: low.py <-> mid/a.py" in found
    assert len(found) == 3, found


def test_table_places_are_real():
    layers = parse_layers(ARCHITECTURE.read_text())
    assert [name for name, _ in layers][:3] == ["C core", "build", "base"]
    for name, places in layers:
        for place in places:
            assert (PACKAGE / place).exists(), f"ARCHITECTURE.md ({name}): no physmem/{place}"


def test_imports_follow_the_layers_and_close_no_cycle():
    found = violations(PACKAGE, ARCHITECTURE.read_text())
    assert not found, "ARCHITECTURE.md's layering is broken:\n" + "\n".join(found)
