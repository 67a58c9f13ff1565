"""Code shape (issue 19, item 6): no class in supervisor/ spans more than MAX_CLASS_LINES lines.
Function complexity is ruff's job (C90, [tool.ruff.lint.mccabe] in pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "supervisor"
MAX_CLASS_LINES = 200


def class_lengths(package: Path) -> dict[str, int]:
    """Every class (nested ones too) under package: "path:Class" -> lines it spans."""
    lengths = {}
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                lengths[f"{where}:{node.name}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_class_over_max_lines() -> None:
    lengths = class_lengths(PACKAGE)
    assert lengths, f"no class found under {PACKAGE}"
    offenders = sorted(f"{name} ({lines} lines)" for name, lines in lengths.items()
                       if lines > MAX_CLASS_LINES)
    assert not offenders, (f"classes over {MAX_CLASS_LINES} lines, split them: "
                           + ", ".join(offenders))
