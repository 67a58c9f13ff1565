"""The documentation stays true to the repository: docs/configuration.md is what
scripts/gen_config_docs.py makes of KEYS today, and every relative link in README.md and
docs/*.md (with its #anchor, as GitHub slugs headings) points at something that exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
README_MAX_LINES = 250


def _generator() -> ModuleType:
    path = ROOT / "scripts" / "gen_config_docs.py"
    spec = importlib.util.spec_from_file_location("gen_config_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_doc_is_generated_from_the_declared_keys() -> None:
    generated = _generator().render()
    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert current == generated, "docs/configuration.md is stale: python scripts/gen_config_docs.py"


def test_generator_check_mode_fails_on_a_stale_file(tmp_path: Path, capsys) -> None:
    gen = _generator()
    out = tmp_path / "configuration.md"
    assert gen.main(["--output", str(out)]) == 0
    assert gen.main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("`jobs.NAME.timeout`", "`timeout`"))
    assert gen.main(["--check", "--output", str(out)]) == 1
    assert "stale" in capsys.readouterr().err


def test_configuration_doc_names_keys_as_an_operator_writes_them() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for shown in ("`jobs.NAME.timeout`", "`drill.port`", "`drill.checks[].sql`",
                  "`destinations.NAME.bucket`"):
        assert f"| {shown} |" in text
    assert "jobs.*" not in text
    assert "| `destinations.NAME.bucket` | required |" in text


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


# -- links -----------------------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link targets and markup dropped, lower case, everything
    but letters, digits, '_', '-' and spaces removed, spaces turned into '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(page.read_text(encoding="utf-8")):
        if m := _HEADING.match(line):
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    """Link targets outside code (a link's text may wrap onto the next line)."""
    lines = [_INLINE_CODE.sub("", line) for line in _prose(page.read_text(encoding="utf-8"))]
    return _LINK.findall("\n".join(lines))


def test_slugs_are_githubs() -> None:
    assert slug("Compare modes: cheap hourly passes and a deep pass") == (
        "compare-modes-cheap-hourly-passes-and-a-deep-pass")
    assert slug("`ardua-backup doctor`: is the bucket protected?") == (
        "ardua-backup-doctor-is-the-bucket-protected")
    assert slug("[[drill.checks]]") == "drillchecks"
    assert slug("[jobs.NAME]") == "jobsname"


def test_the_pages_have_links_to_check() -> None:
    assert len(DOCS) >= 9
    assert "docs/configuration.md" in links(ROOT / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert broken == []


def test_the_security_page_names_tests_that_exist() -> None:
    """Each rule of docs/security.md names its test; every name there is a real test."""
    text = (ROOT / "docs" / "security.md").read_text()
    tests = ROOT / "tests"
    defined = {m for path in tests.glob("test_*.py")
               for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    files = set(re.findall(r"`(tests/[\w/]+\.py)", text))
    named = set(re.findall(r"\b(test_\w+)\b(?!\.py)", text))
    assert files and named
    assert sorted(f for f in files if not (ROOT / f).is_file()) == []
    assert sorted(named - defined) == []
