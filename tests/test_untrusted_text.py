"""Untrusted names from S3: printed escaped (core.text) by restore, status and doctor, refused as
paths (restore.names). Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from supervisor.config.load import HealthConfig
from supervisor.core.text import printable
from supervisor.health import doctor
from supervisor.health.verdict import evaluate
from supervisor.postgres.dumps import DatabaseDumps, Dump
from supervisor.restore.names import refusal
from tests.harness.signals import one_destination


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


def test_status_shows_a_planted_dump_key_escaped_in_every_output() -> None:
    now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    planted = "last/ardua-\x1b]0;pwned\x07-20261206.dump"
    dump = Dump(key=planted, size=0, modified=now - timedelta(hours=3))  # 0 B: named in a problem
    prev = Dump(key="last/ardua-20261205.dump", size=500, modified=now - timedelta(days=1))
    verdict = evaluate(one_destination(now, (DatabaseDumps("ardua", dump, prev),), in_s3=True,
                                       dump_job="db-upload"), HealthConfig(), now)
    shown = [verdict.render(), verdict.status_line(), json.dumps(verdict.to_json())]
    assert all("\x1b" not in text and "\x07" not in text for text in shown)
    assert "ardua-\\x1b]0;pwned\\x07-20261206.dump" in verdict.render()


def test_doctor_shows_a_detail_from_the_bucket_escaped() -> None:
    shown = doctor.render([doctor.Row("lifecycle", "WARNING", "rule \x1b[2Jwipe expires")])
    assert "\x1b" not in shown and "rule \\x1b[2Jwipe expires" in shown
