"""verify's plan, pure: what is due, in which order, within the budget; the coverage; and the
steady cost of the plan on a simulated calendar (benchmarks/verify.py prints the same figure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from supervisor.config.keys import parse_size
from supervisor.config.load import HealthConfig
from supervisor.health.verdict import Signals, evaluate
from supervisor.record.proofs import Held, Proof, coverage
from supervisor.verify.plan import DUMP, FILE, Item, due, within

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = 86400.0


def _item(key: str, size: int = 10, etag: str = "") -> Item:
    return Item(FILE, "s3", key, (Held("s3", key, etag or f"etag-{key}", size),))


def _proved(item: Item, days_ago: float, ok: bool = True) -> dict:
    return {h.ident: Proof(ok, "" if ok else "bad", NOW - timedelta(days=days_ago), h.size)
            for h in item.objects}


@pytest.mark.parametrize(("ages", "expected"), [
    ({}, ["a", "b", "c"]),  # never proven: all due, by key
    ({"a": 1, "b": 40, "c": 31}, ["b", "c"]),  # oldest first; a is fresh
    ({"a": 40, "b": None, "c": 1}, ["b", "a"]),  # missing before old
    ({"a": 29.9, "b": 29.9, "c": 29.9}, []),  # a second run right after: nothing
])
def test_due_order(ages: dict, expected: list[str]) -> None:
    items = [_item(k) for k in "abc"]
    proofs: dict = {}
    for item in items:
        if ages.get(item.key) is not None:
            proofs |= _proved(item, ages[item.key])
    assert [i.key for i in due(items, proofs, NOW, 30 * DAY)] == expected


def test_a_changed_object_is_due_at_once() -> None:
    old, new = _item("k", etag="old"), _item("k", etag="new")
    assert due([new], _proved(old, 0), NOW, 30 * DAY) == [new]


def test_a_copy_of_proven_bytes_is_not_due() -> None:
    """A hard link's server-side copy (another key, the same ETag) shares the proof; another
    destination's copy does not."""
    last, daily = _item("last/x", etag="same"), _item("daily/x", etag="same")
    offsite = Item(FILE, "offsite", "last/x", (Held("offsite", "last/x", "same", 10),))
    assert due([last, daily, offsite], _proved(last, 1), NOW, 30 * DAY) == [offsite]


def test_a_directory_dump_is_due_when_one_file_is() -> None:
    files = (Held("s3", "d/toc.dat", "1", 5), Held("s3", "d/3.dat.gz", "2", 5))
    dump = Item(DUMP, "s3", "d", files)
    proofs = {files[0].ident: Proof(True, "", NOW, 5)}
    assert due([dump], proofs, NOW, 30 * DAY) == [dump]


@pytest.mark.parametrize(("sizes", "budget", "spent", "taken"), [
    ([4, 4, 4], None, 0, 3),  # --all
    ([4, 4, 4], 8, 0, 2),
    ([4, 4, 4], 7, 0, 1),
    ([50, 1], 10, 0, 1),  # larger than the budget: still proven, alone
    ([5], 10, 8, 0),  # the budget spent by an earlier destination
    ([2], 10, 8, 1),
])
def test_within_the_budget(sizes: list[int], budget: int | None, spent: int,
                           taken: int) -> None:
    items = [_item(str(n), size) for n, size in enumerate(sizes)]
    todo, left = within(items, budget, spent)
    assert (len(todo), todo + left) == (taken, items)


def test_coverage() -> None:
    a, b, c, d = (_item(k) for k in "abcd")
    proofs = _proved(a, 1) | _proved(b, 40) | _proved(c, 2, ok=False)
    cov = coverage([h for i in (a, b, c, d) for h in i.objects], proofs, NOW, 30 * DAY)
    assert (cov.total, cov.proven, cov.ratio) == (4, 1, 0.25)
    assert [h.key for h, _ in cov.failed] == ["c"] and cov.oldest == NOW - timedelta(days=40)


@pytest.mark.parametrize(("text", "size"), [("10G", 10 << 30), ("500M", 500 << 20),
                                            ("64KiB", 64 << 10), (1000, 1000), ("7", 7)])
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "10X", "-1", 0, True, 1.5, "G"])
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def _row(signals: Signals) -> tuple[str, str, list[str]]:
    verdict = evaluate(signals, HealthConfig(), NOW)
    row = next(c for c in verdict.checks if c.name == "verified")
    return row.state, row.detail, [p.text for p in verdict.problems]


def test_status_row_verified() -> None:
    """OK with full coverage; WARNING when a proof is missing or stale; CRITICAL naming a failed
    key (escaped); UNKNOWN when it could not be read; no row when verify is not in use."""
    a, b = Held("s3", "postgres/last/a.dump", "1", 5), Held("s3", "receipts/\x1b]0;x\x07", "2", 5)
    week = NOW - timedelta(days=6)
    ok = Proof(True, "", week, 5)
    month = 30 * DAY
    state, detail, _ = _row(Signals(verified=coverage([a, b], {a.ident: ok, b.ident: ok}, NOW,
                                                      month), verified_max_age_s=month))
    assert (state, detail) == ("OK", "2/2 objects, oldest proof 6d 0h")
    state, detail, problems = _row(Signals(verified=coverage([a, b], {a.ident: ok}, NOW, month),
                                           verified_max_age_s=month))
    assert state == "WARNING" and detail.startswith("1/2 objects") and "verify" in problems[0]
    bad = Proof(False, "pg_restore cannot read it whole", week, 5)
    state, detail, problems = _row(Signals(verified=coverage(
        [a, b], {a.ident: ok, b.ident: bad}, NOW, month), verified_max_age_s=month))
    assert state == "CRITICAL" and "receipts/\\x1b]0;x\\x07" in detail and "\x1b" not in detail
    assert "pg_restore cannot read it whole" in problems[0]
    assert _row(Signals(verified_error="not read: S3 down"))[0] == "UNKNOWN"
    verdict = evaluate(Signals(), HealthConfig(), NOW)
    assert all(c.name != "verified" for c in verdict.checks)
