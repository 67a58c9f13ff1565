"""The test suite's own layout: test modules share code only through tests/harness/ and
conftest.py, and every test that reaches the test Docker engine carries the `docker` mark (so
`pytest -m "not docker"` runs on a machine without one)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SHARED = ("tests.harness", "tests.conftest")  # what a test module may import from tests/
DOCKER_FIXTURES = {"docker_client", "rclone_image", "pg_volume", "write_config"}


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the file, inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                package = ["tests", *path.parent.relative_to(TESTS).parts]
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # module.name: `from tests import test_x` names a module, `from m import f` an object
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _test_module_names() -> set[str]:
    return {p.stem for p in TESTS.glob("test_*.py")}


def _is_test_module(name: str, test_modules: set[str]) -> bool:
    parts = name.split(".")
    if parts[0] == "tests":
        return len(parts) > 1 and parts[1] in test_modules
    return parts[0] in test_modules  # `import test_x` with tests/ on sys.path


def test_test_modules_import_only_harness_and_conftest_from_tests() -> None:
    test_modules = _test_module_names()
    bad = []
    for path in sorted(TESTS.glob("test_*.py")):
        for line, name in _imported_modules(path):
            own = name == "tests" or name.startswith("tests.")
            if (own and not name.startswith(SHARED)) or _is_test_module(name, test_modules):
                bad.append(f"{path.name}:{line} imports {name}")
    assert not bad, "move what is shared into tests/harness/ or conftest.py:\n" + "\n".join(bad)


def test_harness_and_conftest_import_no_test_module() -> None:
    test_modules = _test_module_names()
    files = [TESTS / "conftest.py", *sorted((TESTS / "harness").rglob("*.py"))]
    bad = [
        f"{path.relative_to(TESTS)}:{line} imports {name}"
        for path in files
        for line, name in _imported_modules(path)
        if _is_test_module(name, test_modules)
    ]
    assert not bad, "\n".join(bad)


def test_helper_modules_live_in_harness() -> None:
    """tests/ itself holds only test modules, conftest.py and __init__.py."""
    loose = sorted(
        p.name for p in TESTS.glob("*.py")
        if not p.name.startswith("test_") and p.name not in ("conftest.py", "__init__.py")
    )
    assert not loose, f"helper modules belong in tests/harness/: {loose}"


def test_every_test_using_the_docker_fixtures_is_marked_docker(
    request: pytest.FixtureRequest,
) -> None:
    """Over the tests selected in this session (under `-m "not docker"`: that none of them needs
    the engine through a fixture)."""
    unmarked = [
        item.nodeid for item in request.session.items
        if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("docker") is None
    ]
    assert not unmarked, f"use the test Docker engine without the docker mark: {unmarked}"
