"""Untrusted names from S3: printed escaped (core.text), refused as paths (restore.names). Pure."""

from __future__ import annotations

from supervisor.core.text import printable
from supervisor.restore.names import refusal


def test_printable_escapes_control_characters_only() -> None:
    assert printable("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
    assert printable("\n\r\t\x00\x7f\x9b\x80\x9f") == "\\n\\r\\t\\x00\\x7f\\x9b\\x80\\x9f"
    kept = "receipts/2026/é ü 漢字 \\ back\\slash %00 \xa0"
    assert printable(kept) == kept
    assert printable(printable("\x1b[2J")) == "\\x1b[2J"  # idempotent: applying twice is safe


def test_refusal_names_why() -> None:
    cases = {
        "2026/03/r1.pdf": "", "a..b/c.d": "", "...": "", ".hidden": "",
        "..": "has a '..' segment", "a/../b": "has a '..' segment", "./a": "has a '.' segment",
        "/etc/passwd": "starts with '/'", "a//b": "has an empty segment",
        "a/": "has an empty segment", "": "has an empty segment",
        "a\x00b": "holds a NUL", "a\\b": "holds a backslash",
    }
    assert {name: refusal(name) for name in cases} == cases
