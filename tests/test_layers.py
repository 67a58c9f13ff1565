"""The package's imports point one way: each subpackage imports only from the layers below it
(docs/development.md draws them), and no module imports itself back through another, imports
inside functions included. Read from the source with ast: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "supervisor"
# Bottom to top. A package may import its own modules and any package of a lower layer.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),
    frozenset({"storage", "postgres", "alerts"}),
    frozenset({"config"}),
    frozenset({"containers"}),
    frozenset({"record"}),
    frozenset({"upload", "restore", "health"}),
    frozenset({"verify"}),
    frozenset({"daemon"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """The package's modules `path` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in MODULES} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in MODULES and m != "supervisor"}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _package(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_every_subpackage_has_a_layer() -> None:
    top = {_package(m) for m in MODULES if m != "supervisor"}
    assert top - RANK.keys() == set()


def test_imports_point_down_the_layers() -> None:
    wrong = sorted(
        f"{src} imports {dst}" for src, targets in GRAPH.items() for dst in targets
        if _package(src) != _package(dst) and RANK[_package(dst)] >= RANK[_package(src)])
    assert wrong == []


def test_no_import_circle() -> None:
    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(GRAPH[start])
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += GRAPH[module]
        return seen

    assert sorted(m for m in GRAPH if m in reaches(m)) == []


def test_at_most_ten_modules_directly_in_the_package() -> None:
    assert len(list(PACKAGE.glob("*.py"))) <= 10


def test_depth_of_the_import_graph() -> None:
    """The longest chain of imports (for the record: cli down to core)."""
    depth: dict[str, int] = {}

    def longest(module: str) -> int:
        if module not in depth:
            depth[module] = 1 + max((longest(m) for m in GRAPH[module]), default=0)
        return depth[module]

    assert max(longest(m) for m in GRAPH) <= len(LAYERS) + 6
