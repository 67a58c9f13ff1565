"""Undoing a bad sync: a prefix as a versioned bucket held it at a past time, and restores as
of that time.

The choice of a version is tested on its own (examples and a hypothesis property); the rest
runs against the real thing: SeaweedFS with versioning, the real upload pipeline in rclone
containers, pg_dump/pg_restore on a real PostgreSQL.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from supervisor import cli
from supervisor.config import load as config
from supervisor.containers import rclone
from supervisor.core.states import REFUSED
from supervisor.restore import db as restore
from supervisor.restore.receipts import restore_receipts
from supervisor.storage import versions
from supervisor.storage.destination import Destination
from supervisor.storage.versions import Entry
from supervisor.upload import run as pipeline
from tests.harness.files import settle
from tests.harness.pgtree import volume_mountpoint
from tests.harness.poll import poll
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server, server_now
from tests.harness.sourcedb import CUSTOMERS, NEW_ORDERS, OLD_ORDERS, dumps_and_receipts
from tests.harness.sourcedb import counts as _counts

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NEWEST = "postgres/last/ardua-20260302-010000.dump"


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


# -- the rclone command ---------------------------------------------------------------------------


def test_restore_command_as_of_a_time() -> None:
    at = datetime(2026, 3, 2, 10, 30, tzinfo=UTC) + timedelta(hours=1)
    cmd = rclone.restore_command(Destination("b"), "receipts", 3600, at)
    assert cmd[:3] == ["sync", ":s3:b/receipts/", "/dest/"]
    assert cmd[cmd.index("--s3-version-at") + 1] == "2026-03-02T11:30:00Z"
    assert "--s3-version-deleted" not in cmd and "--s3-versions" not in cmd
    assert "--s3-version-at" not in rclone.restore_command(Destination("b"), "receipts", 3600)
    with pytest.raises(ValueError):
        rclone.restore_command(Destination("b"), "receipts", 3600, datetime(2026, 3, 2))


# -- against SeaweedFS, rclone and PostgreSQL -----------------------------------------------------


def _newest_write(client, bucket: str) -> datetime:
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket)
    return max(e["LastModified"] for page in pages
               for e in [*page.get("Versions", []), *page.get("DeleteMarkers", [])])


def _sha256s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class BadSync:
    cfg: config.Config
    at: datetime  # a time when S3 held the good state
    receipts: dict[str, str]  # rel path -> sha256, as uploaded before the bad sync
    dumps: list[tuple[str, int]]  # (key, size) as restore list showed them before


@pytest.fixture
def bad_sync(
    tmp_path: Path, pg: PgServer, pg_volume: str, bucket: str, s3server: S3Server,
    write_config, docker_client: docker.DockerClient,
) -> BadSync:
    """Versioning on, dumps and receipts uploaded by the real pipeline, T recorded, then a bad
    local state forced through: most receipts deleted, one overwritten, every dump truncated."""
    admin = s3server.client()
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    dumps, receipts = dumps_and_receipts(pg, tmp_path, docker_client, pg_volume)
    cfg = config.load(write_config(tmp_path, s3server, bucket, db_volume=pg_volume,
                                   receipts_dir=settle(receipts)))
    for job in ("db-upload", "receipts-upload"):
        report = pipeline.run_job(cfg, job, client=docker_client)
        assert report.ok, report.summary()
    good = BadSync(cfg, _newest_write(admin, bucket), _sha256s(receipts),
                   [(d.key, d.size) for d in restore.list_dumps(cfg)])
    assert (NEWEST, len(dumps[1][1])) in good.dumps and len(good.receipts) == 12

    # Everything from here on must carry a later LastModified than T (S3 stamps whole
    # seconds): wait for the server's clock to pass T, a condition, not a fixed sleep.
    poll(lambda: server_now(admin, bucket) > good.at, "the S3 clock to pass T", 5)

    for i in range(2, 12):  # a wrong mount, a wiped folder: 10 of 12 receipts gone
        (receipts / f"2026/03/{i:02d}/r{i}.pdf").unlink()
    (receipts / "2026/03/00/r0.pdf").write_bytes(b"overwritten by a broken scanner")
    root = volume_mountpoint(docker_client, pg_volume)
    for dump in (root / "last").iterdir():  # the hard links in daily/ etc. share the inode
        if dump.is_file() and not dump.is_symlink():
            with open(dump, "r+b") as f:
                f.truncate(64)
    settle(receipts), settle(root)
    for job in ("db-upload", "receipts-upload"):  # the guard stops it...
        assert pipeline.run_job(cfg, job, client=docker_client).result == REFUSED
    for job in ("db-upload", "receipts-upload"):  # ...until it is overridden
        report = pipeline.run_job(cfg, job, client=docker_client, force_deletes=True)
        assert report.ok, report.summary()
    now = s3server.list_sizes(bucket, "receipts/")
    assert sorted(now) == ["receipts/.last_success", "receipts/2026/03/00/r0.pdf",
                           "receipts/2026/03/01/r1.pdf"]
    assert {d.size for d in restore.list_dumps(cfg)} == {64}  # the bad state reached S3
    return good


@pytest.mark.docker
def test_restore_list_and_db_as_of_before_a_bad_sync(
    bad_sync: BadSync, pg: PgServer, tmp_path: Path, capsys
) -> None:
    cfg = bad_sync.cfg
    then = restore.list_dumps(cfg, at=bad_sync.at)
    assert [(d.key, d.size) for d in then] == bad_sync.dumps
    assert all(d.at == bad_sync.at for d in then)
    assert all(o.version_id for d in then for o in d.objects)

    # Today's dump is the truncated one: restoring it fails, restoring as of T works.
    work = tmp_path / "work"
    work.mkdir()
    target = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(target)
    with pytest.raises(restore.RestoreError):
        restore.restore_db(cfg, NEWEST, pg.dsn(target), workdir=work)
    done = restore.restore_db(cfg, NEWEST, pg.dsn(target), workdir=work, at=bad_sync.at)
    assert _counts(pg, target) == (NEW_ORDERS, CUSTOMERS)
    assert done.fetched.size == dict(bad_sync.dumps)[NEWEST]
    assert "MD5 = S3 ETag" in done.fetched.verified and "version " in done.fetched.verified

    older = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(older)
    restore.restore_db(cfg, "last/ardua-20260301-010000.dump", pg.dsn(older),
                       workdir=work, at=bad_sync.at)
    assert _counts(pg, older) == (OLD_ORDERS, CUSTOMERS)

    # The same through the CLI, as the runbook types it.
    iso = versions.format_at(bad_sync.at)
    capsys.readouterr()
    assert cli.main(["--config", str(cfg.path), "restore", "list", "--at", iso]) == 0
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == [d.key for d in then]
    by_cli = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(by_cli)
    assert cli.main(["--config", str(cfg.path), "restore", "db", NEWEST, "--at", iso,
                     "--target", pg.dsn(by_cli)]) == 0
    logger.remove()
    assert _counts(pg, by_cli) == (NEW_ORDERS, CUSTOMERS)

    # Before the first upload nothing existed; the message says when and how to look.
    before = bad_sync.at - timedelta(days=1)
    assert restore.list_dumps(cfg, at=before) == []
    with pytest.raises(restore.RestoreError, match=r"did not exist at .*restore list --at"):
        restore.find_dump(cfg, NEWEST, at=before)


@pytest.mark.docker
def test_restore_receipts_as_of_before_a_bad_sync(
    bad_sync: BadSync, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    dest = tmp_path / "restored"
    lines: list[str] = []
    said = restore_receipts(bad_sync.cfg, dest, at=bad_sync.at, client=docker_client,
                                    on_line=lines.append, as_root=True)
    assert _sha256s(dest) == bad_sync.receipts  # byte-identical, the overwritten one too
    assert not [p for p in dest.rglob(".*")]  # no sentinel, no drill marker, no delete marker
    assert said.startswith("restored 12 file(s)") and versions.format_at(bad_sync.at) in said
    assert "as of" in lines[0]

    # Into a non-empty directory: refused, --force or not (an old state merged into today's
    # files would be a directory that never existed).
    for force in (False, True):
        with pytest.raises(restore.RestoreError, match="not empty; a restore as of a time"):
            restore_receipts(bad_sync.cfg, dest, at=bad_sync.at, force=force,
                                     client=docker_client, as_root=True)

    # Without --at: today's state, the damage included.
    today = tmp_path / "today"
    restore_receipts(bad_sync.cfg, today, client=docker_client, on_line=lambda _: None,
                     as_root=True)
    assert sorted(_sha256s(today)) == ["2026/03/00/r0.pdf", "2026/03/01/r1.pdf"]


@pytest.mark.docker
def test_at_without_versioning_is_one_line(
    tmp_path: Path, bucket: str, s3server: S3Server, write_config,
    docker_client: docker.DockerClient,
) -> None:
    cfg = config.load(write_config(tmp_path, s3server, bucket))
    s3server.put(bucket, NEWEST, b"PGDMP not really")
    at = datetime.now(UTC)
    expected = (f"bucket versioning is off on s3://{bucket}, so S3 kept no earlier versions "
                f"to restore from; turn it on (it protects changes from then on): aws s3api "
                f"put-bucket-versioning --bucket {bucket} --versioning-configuration "
                f"Status=Enabled")
    calls = [
        lambda: restore.list_dumps(cfg, at=at),
        lambda: restore.restore_db(cfg, NEWEST, "postgresql://x/y", workdir=tmp_path, at=at),
        lambda: restore_receipts(cfg, tmp_path / "dest", at=at, client=docker_client,
                                 as_root=True),
        lambda: versions.state_at(cfg.destination(), "receipts", at),
    ]
    for call in calls:
        with pytest.raises(versions.VersioningOff) as err:
            call()
        assert str(err.value) == expected
    assert not (tmp_path / "dest").exists()  # refused before anything was made
    assert [d.key for d in restore.list_dumps(cfg)] == [NEWEST]  # without --at: as before


@pytest.mark.docker
def test_state_at_pages_and_keeps_markers(bucket: str, s3server: S3Server, tmp_path: Path,
                                          write_config) -> None:
    """Pages of a few entries (a key's versions split across pages) read in order, delete
    markers respected, versions of one second told apart by the listing order: the same
    state as one big page, and as S3 serves each chosen version."""
    cfg = config.load(write_config(tmp_path, s3server, bucket))
    admin = s3server.client()
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    newest = {}  # the version S3 gave each key's last put: what state_at must pick
    for i in range(12):
        for body in (b"1", b"22", b"333"):
            newest[f"k{i:02d}"] = admin.put_object(
                Bucket=bucket, Key=f"receipts/k{i:02d}", Body=body)["VersionId"]
    for i in range(0, 12, 2):
        admin.delete_object(Bucket=bucket, Key=f"receipts/k{i:02d}")
        del newest[f"k{i:02d}"]
    newest["k00"] = admin.put_object(Bucket=bucket, Key="receipts/k00", Body=b"back")["VersionId"]
    admin.put_object(Bucket=bucket, Key="postgres/k01", Body=b"other prefix")
    paged = list(versions.list_entries(cfg.destination(), "receipts", page_size=5))
    one_page = list(versions.list_entries(cfg.destination(), "receipts"))
    assert paged == one_page and len(paged) == 12 * 3 + 6 + 1
    # All written within a second or two (SeaweedFS stamps whole seconds): only the XML's
    # document order says the delete came between the third put and the last one (measured:
    # without the after-call hook, one page merged by time puts the marker last).
    assert [e.delete_marker for e in one_page if e.key == "receipts/k00"] == [
        False, True, False, False, False]
    later = datetime.now(UTC) + timedelta(hours=1)
    state = versions.state_at(cfg.destination(), "receipts", later)
    assert sorted(state) == ["k00", *(f"k{i:02d}" for i in range(1, 12, 2))]
    assert {rel: version.version_id for rel, version in state.items()} == newest
    assert state["k00"].size == 4 and state["k01"].size == 3
    assert state["k01"].key == "receipts/k01"
    for rel, version in state.items():
        body = admin.get_object(Bucket=bucket, Key=version.key,
                                VersionId=version.version_id)["Body"].read()
        assert len(body) == version.size and hashlib.md5(body).hexdigest() == version.etag, rel


