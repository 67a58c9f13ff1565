"""Pure rules for several databases, empty or shrunken dumps and each problem's own severity.

File names are postgres-backup-local's (backup.sh): `last/DB-%Y%m%d-%H%M%S<SUFFIX>`, hard links
`daily/DB-%Y%m%d<SUFFIX>`, `weekly/DB-%G%V<SUFFIX>`, `monthly/DB-%Y%m<SUFFIX>`, and
`DB-latest<SUFFIX>` (a symlink rclone skips, or with BACKUP_LATEST_TYPE=hardlink a file).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from supervisor.config.load import HealthConfig
from supervisor.health import verdict as health
from supervisor.health.verdict import Sentinel, Signals
from supervisor.postgres import dumps
from supervisor.postgres.dumps import DatabaseDumps, Dump
from supervisor.postgres.gocron import ContainerState, CronState
from tests.harness.signals import one_destination

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LIMITS = HealthConfig(dump_job="db-upload", db_container="")
FRESH_OK = NOW - timedelta(minutes=30)


def at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def f(path: str, size: int, hours_ago: float) -> tuple[str, int, datetime]:
    return path, size, at(hours_ago)


@pytest.mark.parametrize(("name", "in_dump_dir", "db"), [
    ("ardua-20261124-011500.dump", True, "ardua"),
    ("shop-2-20261124-011500.sql.gz", True, "shop-2"),
    ("my-db-2026-20261124-011500", True, "my-db-2026"),
    ("ardua-latest.dump", True, None),
    ("ardua-20261124.dump", True, None),
    ("ardua-20261124.dump", False, "ardua"),  # daily
    ("ardua-202648.dump", False, "ardua"),  # weekly %G%V, monthly %Y%m
    ("ardua-latest.dump", False, None),
    ("notes.txt", True, None),
])
def test_database_of_pbl_names(name: str, in_dump_dir: bool, db: str | None) -> None:
    assert dumps.database_of(name, in_dump_dir) == db


def test_each_database_gets_its_newest_and_the_dump_before_it() -> None:
    listed = [
        f("last/ardua-20261124-011500.dump", 900, 10.75),
        f("last/ardua-20261123-011500.dump", 1000, 34.75),
        f("daily/ardua-20261124.dump", 900, 10.75),  # hard link of the newest: same mtime
        f("daily/ardua-20261122.dump", 1100, 58.75),
        f("last/ardua-latest.dump", 900, 10.75),  # BACKUP_LATEST_TYPE=hardlink
        f("last/shop-20261120-011500.dump", 50, 106.75),
        f("monthly/shop-202610.dump", 40, 800),  # pruned from last/, kept as a period link
        f("last/README", 1, 1),
    ]
    got = dumps.by_database(listed, "last")
    assert [d.database for d in got] == ["ardua", "shop"]
    ardua, shop = got
    assert (ardua.newest.key, ardua.previous.key) == (  # type: ignore[union-attr]
        "last/ardua-20261124-011500.dump", "last/ardua-20261123-011500.dump")
    assert (shop.newest.key, shop.previous.key) == (  # type: ignore[union-attr]
        "last/shop-20261120-011500.dump", "monthly/shop-202610.dump")
    pinned = dumps.by_database(listed, "last", ["ardua", "gone"])
    assert [(d.database, d.newest is None) for d in pinned] == [("ardua", False), ("gone", True)]


def signals(*dbs: DatabaseDumps, ok_at: datetime | None = FRESH_OK, **more: object) -> Signals:
    base: dict = dict(dump_job="db-upload", databases=dbs, in_s3=True,
                      sentinels=(Sentinel("db-upload", "postgres", ok_at),))
    return one_destination(NOW, **{**base, **more})


def db(name: str, hours_ago: float, size: int = 1000, prev: int | None = 1000) -> DatabaseDumps:
    newest = Dump(f"last/{name}-x.dump", size, at(hours_ago))
    previous = Dump(f"last/{name}-w.dump", prev, at(hours_ago + 24)) if prev is not None else None
    return DatabaseDumps(name, newest, previous)


def test_a_fresh_database_does_not_hide_a_stale_one() -> None:
    verdict = health.evaluate(signals(db("ardua", 0.25), db("shop", 96)), LIMITS, NOW)
    assert verdict.state == "CRITICAL"
    assert verdict.diagnoses == (
        "DB backup not producing new data: shop's newest dump 4d 0h old (pipeline healthy)",)
    rows = {c.name: c.state for c in verdict.checks}
    assert rows["dump ardua (last/)"] == "OK" and rows["dump shop (last/)"] == "CRITICAL"
    data = verdict.to_json()
    assert [(d["database"], d["age_s"]) for d in data["databases"]] == [
        ("ardua", 900.0), ("shop", 345600.0)]
    assert data["dump"]["key"] == "last/shop-x.dump"  # the old single-dump key: the stalest


def test_a_database_named_in_health_databases_without_a_dump_is_critical() -> None:
    verdict = health.evaluate(
        signals(db("ardua", 1), DatabaseDumps("shop", None)), LIMITS, NOW)
    assert verdict.state == "CRITICAL"
    assert verdict.diagnoses == (
        "No dump at all of database shop in last/ (health.databases names it)",)


@pytest.mark.parametrize(("size", "prev", "problem"), [
    (0, 1000, "DB backup producing empty/shrunken dumps: ardua's newest dump last/ardua-x.dump "
              "is 0 B (the previous last/ardua-w.dump is 1000 B)"),
    (0, None, "DB backup producing empty/shrunken dumps: ardua's newest dump last/ardua-x.dump "
              "is 0 B (no previous dump)"),
    (400, 1000, "DB backup producing empty/shrunken dumps: ardua's newest dump last/ardua-x.dump "
                "is 400 B, 40% of the previous last/ardua-w.dump (1000 B; "
                "health.min_size_share 50%)"),
    (600, 1000, None),
    (5000, 1000, None),
])
def test_empty_or_shrunken_dump_is_critical(size: int, prev: int | None,
                                            problem: str | None) -> None:
    verdict = health.evaluate(signals(db("ardua", 1, size, prev)), LIMITS, NOW)
    if problem is None:
        assert verdict.state == "OK", verdict.diagnoses
    else:
        assert (verdict.state, verdict.diagnoses) == ("CRITICAL", (problem,))


def test_a_dump_being_written_is_not_judged_on_its_size_yet() -> None:
    writing = db("ardua", 0.01, size=0)  # 36 s old
    assert health.evaluate(signals(writing), LIMITS, NOW, settle_s=120).state == "OK"
    running = CronState(running=True, last_exit_status=None, last_exit_time=None)
    assert health.evaluate(signals(db("ardua", 1, size=0), cron=running), LIMITS, NOW).state == "OK"
    assert health.evaluate(signals(writing), LIMITS, NOW, settle_s=10).state == "CRITICAL"


def test_failed_dump_run_names_the_error_from_go_cron() -> None:
    failed = CronState(False, 1, at(10.7), 'pg_dump: error: connection to server failed: '
                                           'FATAL:  database "shop" does not exist')
    verdict = health.evaluate(signals(db("ardua", 10.7), cron=failed), LIMITS, NOW)
    assert verdict.state == "CRITICAL"
    assert verdict.diagnoses == (
        'DB backup failing: last dump run exited 1 at 2026-11-24T01:18:00Z: pg_dump: error: '
        'connection to server failed: FATAL:  database "shop" does not exist',)


def test_each_problem_is_printed_with_its_own_severity() -> None:
    """A missing dump container is CRITICAL; the endpoint and versioning rows stay WARNING."""
    sig = signals(db("ardua", 1), container=ContainerState("missing", ""),
                  cron_error="go-cron endpoint http://127.0.0.1:9/ did not answer: refused",
                  versioning="")
    verdict = health.evaluate(sig, HealthConfig(dump_job="db-upload"), NOW)
    assert verdict.state == "CRITICAL"
    tail = verdict.render().splitlines()[-3:]
    assert tail == [
        "CRITICAL: DB backup container is missing: no new dumps will be made",
        "WARNING: Dump container's health endpoint unreachable: go-cron endpoint "
        "http://127.0.0.1:9/ did not answer: refused",
        "WARNING: Bucket versioning is off: a wrong sync cannot be undone",
    ]
    assert [p["state"] for p in verdict.to_json()["problems"]] == [
        "CRITICAL", "WARNING", "WARNING"]
