"""What a run to several destinations leaves behind, without Docker: the post-sync check on
listings, the job's result and reason from its destinations', the ledger's run_destinations rows
(and rows from before them), `history` (UTC, --local, an unreadable state_dir) and the
per-destination metrics."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.cli import cmd_history
from supervisor.config import load as config_mod
from supervisor.config.values import CHECKSUM, MTIME, SIZE
from supervisor.containers.rclone import ListedFile
from supervisor.core.states import FAILED, REFUSED, SUCCESS
from supervisor.record import metrics
from supervisor.record.ledger import FILENAME, Ledger
from supervisor.record.report import DestinationResult, RunReport, worst_result
from supervisor.storage.s3 import S3Object
from supervisor.upload.run import job_message, post_sync_difference

T0 = datetime(2026, 5, 4, 10, 15, tzinfo=UTC)
LISTED_AT = T0 + timedelta(minutes=1)


def listed(path: str, size: int) -> ListedFile:
    return ListedFile(path, size, T0.isoformat())


def obj(rel: str, size: int, at: datetime = T0) -> tuple[str, S3Object]:
    return rel, S3Object(f"postgres/{rel}", size, "etag", at)


SOURCE = [listed("last/a.dump", 10), listed("daily/a.dump", 10), listed("new.txt", 3)]


def test_post_sync_check_passes_an_exact_mirror_and_names_what_is_missing() -> None:
    exact = dict([obj("last/a.dump", 10), obj("daily/a.dump", 10), obj("new.txt", 3),
                  obj(".last_success", 24)])
    assert post_sync_difference(CHECKSUM, SOURCE, [], exact, LISTED_AT) is None
    # A server that acked a PUT it did not keep: the key is not there.
    lost = {k: v for k, v in exact.items() if k != "last/a.dump"}
    assert post_sync_difference(CHECKSUM, SOURCE, [], lost, LISTED_AT) == "last/a.dump is not in S3"
    short = {**exact, **dict([obj("daily/a.dump", 7)])}
    assert post_sync_difference(CHECKSUM, SOURCE, [], short, LISTED_AT) == \
        "daily/a.dump is 10 B, in S3 7 B"


def test_post_sync_check_tolerates_files_created_after_the_listing_only() -> None:
    exact = dict([obj("last/a.dump", 10), obj("daily/a.dump", 10), obj("new.txt", 3)])
    # rclone saw and uploaded a file created after the listing: S3 received it since.
    later = {**exact, **dict([obj("receipt-2.pdf", 5, LISTED_AT + timedelta(seconds=1))])}
    assert post_sync_difference(CHECKSUM, SOURCE, [], later, LISTED_AT) is None
    # An object older than the listing that the source does not hold: the sync left it.
    stale = {**exact, **dict([obj("old.dump", 5, LISTED_AT - timedelta(seconds=1))])}
    assert post_sync_difference(CHECKSUM, SOURCE, [], stale, LISTED_AT) == \
        "old.dump is in S3, not in the source"
    # A young file left out of the sync on both sides is not looked for.
    young = {k: v for k, v in exact.items() if k != "new.txt"}
    assert post_sync_difference(CHECKSUM, SOURCE, [SOURCE[2]], young, LISTED_AT) is None


def test_post_sync_check_of_an_mtime_pass_allows_what_update_skips() -> None:
    """`--update --use-server-modtime` leaves a key S3 received after the file's mtime, whatever
    its size (an older copy restored with `cp -p`): the mode's documented miss, not a fault."""
    older_copy = dict([obj("last/a.dump", 7, T0 + timedelta(seconds=5)),
                       obj("daily/a.dump", 10), obj("new.txt", 3)])
    assert post_sync_difference(MTIME, SOURCE, [], older_copy, LISTED_AT) is None
    assert post_sync_difference(SIZE, SOURCE, [], older_copy, LISTED_AT) == \
        "last/a.dump is 10 B, in S3 7 B"
    stale = {**older_copy, **dict([obj("last/a.dump", 7, T0 - timedelta(seconds=5))])}
    assert post_sync_difference(MTIME, SOURCE, [], stale, LISTED_AT) == \
        "last/a.dump is 10 B, in S3 7 B"


def end(name: str, result: str, message: str, **more: object) -> DestinationResult:
    return DestinationResult(name, f"s3://{name}-bucket/postgres/", result, message=message,
                             **more)  # type: ignore[arg-type]


def test_the_job_result_is_its_worst_destination_and_the_reason_names_it() -> None:
    assert worst_result([SUCCESS, REFUSED, FAILED]) == FAILED
    assert worst_result([SUCCESS, REFUSED]) == REFUSED
    assert worst_result([SUCCESS, SUCCESS]) == SUCCESS
    ok = end("primary", SUCCESS, "sentinel 2026-05-04T10:15:00Z OK")
    down = end("offsite", FAILED, "rclone exited with code 5",
               last_error="dial tcp 127.0.0.1:9: connect: connection refused")
    assert job_message([ok]) == ok.message  # one destination reads as before
    assert job_message([ok, down]) == (
        "offsite failed: rclone exited with code 5 (dial tcp 127.0.0.1:9: connect: connection "
        "refused); primary: sentinel 2026-05-04T10:15:00Z OK")
    deferred = [end("primary", "deferred", "a dump is being written"),
                end("offsite", "deferred", "a dump is being written")]
    assert job_message(deferred) == "a dump is being written"  # one reason for all


def report(run_id: str, ends: list[DestinationResult], started: datetime = T0) -> RunReport:
    result = worst_result([e.result for e in ends])
    return RunReport("db-upload", run_id, result, 0, started, started + timedelta(seconds=3),
                     3.0, bytes=sum(e.bytes for e in ends), message=job_message(ends),
                     destinations=ends)


def test_ledger_keeps_each_destination_and_history_shows_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = Ledger(tmp_path)
    ledger.start("db-upload", "r1", T0)
    ledger.finish(report("r1", [
        end("primary", SUCCESS, "sentinel 2026-05-04T10:15:03Z OK", bytes=100, files=1,
            exit_code=0, sentinel_written=True),
        end("offsite", FAILED, "rclone exited with code 5", exit_code=5, errors=2)]))
    run = Ledger(tmp_path).get("r1")
    assert run is not None and run.result == FAILED
    assert [(d.destination, d.result, d.exit_code, d.bytes, d.sentinel_written)
            for d in run.destinations] == [("primary", SUCCESS, 0, 100, True),
                                           ("offsite", FAILED, 5, 0, False)]

    assert cmd_history(tmp_path, ZoneInfo("America/Los_Angeles"), None, 5, False) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2026-05-04T10:15:00Z db-upload failed ")  # UTC, `Z`
    assert out[1].startswith("    primary success exit=0 files=1 bytes=100 ")
    assert "sentinel=written" in out[1]
    assert out[2] == ("    offsite failed exit=5 files=0 bytes=0 deletes=0 errors=2 "
                      "sentinel=- rclone exited with code 5")
    assert cmd_history(tmp_path, ZoneInfo("America/Los_Angeles"), None, 5, False,
                       local=True) == 0
    assert capsys.readouterr().out.startswith("2026-05-04T03:15:00-07:00 db-upload failed ")
    assert cmd_history(tmp_path, UTC, None, 5, True) == 0
    rows = json.loads(capsys.readouterr().out)[0]["destinations"]
    assert [(d["destination"], d["result"]) for d in rows] == [("primary", SUCCESS),
                                                                ("offsite", FAILED)]


def test_rows_from_before_destinations_show_none(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A ledger written by the version before: no run_destinations table at all."""
    with closing(sqlite3.connect(tmp_path / FILENAME)) as db, db:
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, job TEXT NOT NULL, started_at "
                   "TEXT NOT NULL, finished_at TEXT, result TEXT NOT NULL, exit_code INTEGER, "
                   "duration_s REAL, bytes INTEGER, files INTEGER, deletes INTEGER, errors "
                   "INTEGER, message TEXT NOT NULL DEFAULT '', pid INTEGER, compare TEXT)")
        db.execute("INSERT INTO runs (run_id, job, started_at, finished_at, result, exit_code, "
                   "message) VALUES ('old', 'db-upload', ?, ?, 'success', 0, 'sentinel')",
                   (T0.isoformat(), T0.isoformat()))
    assert cmd_history(tmp_path, UTC, None, 5, True) == 0
    assert json.loads(capsys.readouterr().out)[0]["destinations"] == []
    assert cmd_history(tmp_path, UTC, None, 5, False) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "    (no per-destination results: recorded before they were kept, or the run crashed)")


def test_history_of_a_ledger_sqlite_cannot_open_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / FILENAME).mkdir()  # sqlite3: "unable to open database file"
    assert cmd_history(tmp_path, UTC, None, 5, False) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"ardua-backup: history: cannot read the run ledger in "
                                   f"{tmp_path}: ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_history_of_a_state_dir_that_is_a_file_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "state").write_text("")
    assert cmd_history(tmp_path / "state", UTC, None, 5, False) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"ardua-backup: history: cannot read the run ledger in "
                            f"{tmp_path / 'state'}: {tmp_path / 'state'} is not a directory\n")
    assert captured.out == ""


def test_history_of_a_corrupt_ledger_is_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / FILENAME).write_bytes(b"not a database" * 100)
    assert cmd_history(tmp_path, UTC, None, 5, False) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ardua-backup: history: cannot read the run ledger in {tmp_path}: ")
    assert err.count("\n") == 1


CONFIG = """
state_dir = "{state}"
[metrics]
textfile = "{prom}"
[destinations.primary]
bucket = "ardua-a"
[destinations.offsite]
bucket = "ardua-b"
endpoint_url = "http://127.0.0.1:9"
[jobs.db-upload]
schedule = "15 * * * *"
source = "volume:pg_backups"
prefix = "postgres"
"""


def test_metrics_per_destination(tmp_path: Path) -> None:
    prom = tmp_path / "ardua.prom"
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", prom=prom))
    config = config_mod.load(path)
    metrics.write_run(config, report("r1", [end("primary", SUCCESS, "ok", bytes=100),
                                            end("offsite", SUCCESS, "ok", bytes=90)]))
    metrics.write_run(config, report("r2", [end("primary", SUCCESS, "ok", bytes=0),
                                            end("offsite", FAILED, "down", bytes=5)],
                                     started=T0 + timedelta(hours=1)))
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}

    def values(name: str) -> dict[tuple[str, ...], float]:
        return {tuple(s.labels[k] for k in ("job", "destination", "result") if k in s.labels):
                s.value for s in families[name].samples}

    first, second = (T0 + timedelta(seconds=3)).timestamp(), (T0 + timedelta(hours=1,
                                                                             seconds=3)).timestamp()
    assert values("ardua_backup_destination_last_success_timestamp_seconds") == {
        ("db-upload", "offsite"): first, ("db-upload", "primary"): second}
    assert values("ardua_backup_destination_last_run_timestamp_seconds") == {
        ("db-upload", "offsite"): second, ("db-upload", "primary"): second}
    assert values("ardua_backup_destination_last_run_bytes") == {
        ("db-upload", "offsite"): 5.0, ("db-upload", "primary"): 0.0}
    results = values("ardua_backup_destination_last_run_result")
    assert results[("db-upload", "offsite", FAILED)] == 1.0
    assert results[("db-upload", "primary", SUCCESS)] == 1.0
    # The job-level families keep their meaning: last_success = every destination succeeded.
    assert values("ardua_backup_last_success_timestamp_seconds") == {("db-upload",): first}
