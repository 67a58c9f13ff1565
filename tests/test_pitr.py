"""Undoing a bad sync: a prefix as a versioned bucket held it at a past time.

The choice of a version is tested on its own (examples and a hypothesis property), the listing
against SeaweedFS with versioning.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import config, versions
from supervisor.versions import Entry
from tests.harness.s3server import S3Server

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# -- parse_at -------------------------------------------------------------------------------------


def test_parse_at_needs_an_offset() -> None:
    assert versions.parse_at("2026-03-02T09:30:00Z") == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert versions.parse_at("2026-03-02T10:30:00+01:00") == datetime(2026, 3, 2, 9, 30,
                                                                      tzinfo=UTC)
    assert versions.parse_at(" 2026-03-02T09:30:00.250-00:00 ").microsecond == 250000
    with pytest.raises(ValueError, match=r"no UTC offset.*2026-03-02T09:30:00Z"):
        versions.parse_at("2026-03-02T09:30:00")
    with pytest.raises(ValueError, match="no UTC offset"):
        versions.parse_at("2026-03-02")
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        versions.parse_at("yesterday")
    assert versions.format_at(datetime(2026, 3, 2, 10, 30, 1, 5, tzinfo=UTC)) == (
        "2026-03-02T10:30:01.000005Z")


# -- choosing the version live at a time (pure) ---------------------------------------------------


def _e(key: str, vid: str, minute: int, marker: bool = False, size: int = 1) -> Entry:
    return Entry(key, vid, T0 + timedelta(minutes=minute), marker, 0 if marker else size,
                 "" if marker else f"etag-{vid}")


def test_choose_newest_version_at_or_before() -> None:
    listing = [  # S3 lists each key's entries newest first
        _e("p/a", "a3", 30), _e("p/a", "a2", 20, size=2), _e("p/a", "a1", 10),
        _e("p/gone", "g2", 15, marker=True), _e("p/gone", "g1", 5),
        _e("p/back", "b3", 25), _e("p/back", "b2", 12, marker=True), _e("p/back", "b1", 2),
        _e("p/later", "l1", 40),
    ]
    at = T0 + timedelta(minutes=20)
    chosen = versions.choose(listing, at)
    assert {k: v.version_id for k, v in chosen.items()} == {"p/a": "a2"}  # LastModified <= at
    assert chosen["p/a"].size == 2 and chosen["p/a"].etag == "etag-a2"
    assert set(versions.choose(listing, T0 + timedelta(minutes=14))) == {"p/a", "p/gone"}
    assert {k: v.version_id for k, v in versions.choose(listing, T0 + timedelta(hours=1)).items()
            } == {"p/a": "a3", "p/back": "b3", "p/later": "l1"}
    assert versions.choose(listing, T0) == {}
    with pytest.raises(ValueError):
        versions.choose(listing, datetime(2026, 3, 2))


def test_choose_same_second_goes_by_listing_order() -> None:
    """SeaweedFS stamps LastModified to the second: a put and a delete within one second tie,
    and S3's listing order (newest first) decides."""
    put_then_delete = [_e("p/x", "m", 0, marker=True), _e("p/x", "v", 0)]
    assert versions.choose(put_then_delete, T0) == {}
    delete_then_put = [_e("p/x", "v2", 0), _e("p/x", "m", 0, marker=True), _e("p/x", "v1", 0)]
    assert versions.choose(delete_then_put, T0)["p/x"].version_id == "v2"


def _page(entries: list[Entry], with_order: bool) -> dict:
    """A parsed ListObjectVersions page as boto3 returns it (two lists), optionally with the
    document order the after-call hook records."""
    def row(e: Entry) -> dict:
        base = {"Key": e.key, "VersionId": e.version_id, "LastModified": e.last_modified,
                "IsLatest": False}
        return base if e.delete_marker else {**base, "Size": e.size, "ETag": f'"{e.etag}"'}
    page: dict = {"Versions": [row(e) for e in entries if not e.delete_marker],
                  "DeleteMarkers": [row(e) for e in entries if e.delete_marker]}
    if with_order:
        page[versions._ORDER_KEY] = [(e.delete_marker, e.key, e.version_id) for e in entries]
    return page


# One key's history: (is_delete, seconds since the previous event; 0 = the same second).
_histories = st.dictionaries(
    st.sampled_from([f"p/{name}" for name in ("a", "b", "c/d", "e f", "g")]),
    st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=8),
    min_size=1,
)


def _listing(histories: dict[str, list[tuple[bool, int]]]) -> tuple[list[Entry], dict]:
    """(entries as S3 lists them, the events in the order they happened per key)."""
    listing: list[Entry] = []
    events: dict[str, list[Entry]] = {}
    for n, (key, history) in enumerate(sorted(histories.items())):
        when = T0 + timedelta(seconds=n)
        happened = []
        for i, (is_delete, gap) in enumerate(history):
            when += timedelta(seconds=gap)
            happened.append(Entry(key, f"{key}#{i}", when, is_delete, 0 if is_delete else i + 1,
                                  "" if is_delete else f"e{i}"))
        events[key] = happened
        listing += reversed(happened)  # newest first within a key
    return listing, events


@settings(max_examples=300, deadline=None)
@given(_histories, st.integers(-1, 40))
def test_choose_replays_history(histories: dict, offset: int) -> None:
    """Property: the chosen state equals replaying every put and delete that happened up to
    `at`, in order: each key holds its last put unless a delete came after it."""
    listing, events = _listing(histories)
    at = T0 + timedelta(seconds=offset)
    expected = {}
    for key, happened in events.items():
        state = None
        for event in happened:
            if event.last_modified <= at:
                state = None if event.delete_marker else event.version_id
        if state is not None:
            expected[key] = state
    chosen = versions.choose(listing, at)
    assert {k: v.version_id for k, v in chosen.items()} == expected
    # Through boto3's page shape with the recorded document order: the same answer.
    assert versions.choose(versions.page_entries(_page(listing, True)), at) == chosen


@settings(max_examples=200, deadline=None)
@given(_histories, st.integers(-1, 40), st.randoms(use_true_random=False))
def test_page_without_document_order_merges_by_time(histories, offset, rnd) -> None:
    """Without the recorded order (boto3 split versions and markers into two lists), entries
    of distinct times still merge right, in whatever order the lists come."""
    distinct = {k: [(d, max(gap, 1)) for d, gap in h] for k, h in histories.items()}
    listing, _ = _listing(distinct)
    shuffled = listing[:]
    rnd.shuffle(shuffled)
    at = T0 + timedelta(seconds=offset)
    assert (versions.choose(versions.page_entries(_page(shuffled, False)), at)
            == versions.choose(listing, at))


# -- against SeaweedFS ----------------------------------------------------------------------------


@pytest.mark.docker
def test_state_at_pages_and_keeps_markers(bucket: str, s3server: S3Server, tmp_path: Path,
                                          write_config) -> None:
    """Pages of a few entries (a key's versions split across pages) read in order, delete
    markers respected, versions of one second told apart by the listing order: the same
    state as one big page, and as S3 serves each chosen version."""
    cfg = config.load(write_config(tmp_path, s3server, bucket))
    admin = s3server.client()
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(12):
        for body in (b"1", b"22", b"333"):
            admin.put_object(Bucket=bucket, Key=f"receipts/k{i:02d}", Body=body)
    for i in range(0, 12, 2):
        admin.delete_object(Bucket=bucket, Key=f"receipts/k{i:02d}")
    admin.put_object(Bucket=bucket, Key="receipts/k00", Body=b"back")
    admin.put_object(Bucket=bucket, Key="postgres/k01", Body=b"other prefix")
    paged = list(versions.list_entries(cfg.s3, "receipts", page_size=5))
    one_page = list(versions.list_entries(cfg.s3, "receipts"))
    assert paged == one_page and len(paged) == 12 * 3 + 6 + 1
    # All written within a second or two (SeaweedFS stamps whole seconds): only the XML's
    # document order says the delete came between the third put and the last one (measured:
    # without the after-call hook, one page merged by time puts the marker last).
    assert [e.delete_marker for e in one_page if e.key == "receipts/k00"] == [
        False, True, False, False, False]
    later = datetime.now(UTC) + timedelta(hours=1)
    state = versions.state_at(cfg.s3, "receipts", later)
    assert {k: versions.choose(paged, later)[f"receipts/{k}"] for k in state} == state
    assert sorted(state) == ["k00", *(f"k{i:02d}" for i in range(1, 12, 2))]
    assert state["k00"].size == 4 and state["k01"].size == 3
    assert state["k01"].key == "receipts/k01"
    for rel, version in state.items():
        body = admin.get_object(Bucket=bucket, Key=version.key,
                                VersionId=version.version_id)["Body"].read()
        assert len(body) == version.size and hashlib.md5(body).hexdigest() == version.etag, rel


