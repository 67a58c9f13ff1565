"""The test venv installs requirements-test.txt and then the project with --no-deps
(scripts/setup.sh), so a dependency named only in pyproject.toml is never installed on a fresh
machine: every one of them must be pinned there too (lxml once reached main without it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    """The distribution name of a requirement, normalised as PEP 503 does."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group()).lower()


def test_every_dependency_is_pinned_for_the_test_venv() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["test"]}
    pinned = {}
    for line in (ROOT / "requirements-test.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"requirements-test.txt: {line!r} is not pinned with =="
            pinned[_name(line)] = line
    assert sorted(wanted - pinned.keys()) == []
