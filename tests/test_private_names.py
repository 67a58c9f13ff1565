"""No module uses another module's private names: what modules share is public (the dry run is the
run's own path, so it shares everything by construction)."""

from __future__ import annotations

import ast
from pathlib import Path

from supervisor.record.report import human_size

PACKAGE = Path(__file__).resolve().parent.parent / "supervisor"


def _private_uses(path: Path) -> list[str]:
    """`from supervisor.x import _y` and `x._y` (x a module of the package) in one file."""
    modules = {p.stem for p in PACKAGE.rglob("*.py")}
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("supervisor"):
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in modules and node.attr.startswith("_")
              and not node.attr.startswith("__")):
            found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return found


def test_no_module_uses_private_names_of_another() -> None:
    found = {str(p.relative_to(PACKAGE)): _private_uses(p) for p in sorted(PACKAGE.rglob("*.py"))}
    assert {path: uses for path, uses in found.items() if uses} == {}


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**4)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3072.0 GiB"]
