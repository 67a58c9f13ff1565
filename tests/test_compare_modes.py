"""Compare modes: cheap passes that read no file, and the deep (--checksum) pass that catches what
they miss. Real receipts folder, real rclone container, real SeaweedFS, through the CLI."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.config import values
from supervisor.containers import rclone
from supervisor.record.ledger import Ledger
from supervisor.record.report import RunReport
from supervisor.storage.destination import Destination
from supervisor.upload import compare
from tests.harness.cli import run_cli
from tests.harness.files import settle

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DAY = 86400.0


DEEP = ("--checksum",)  # rclone's flags for each mode, written out (docs/design.md)
SIZE = ("--size-only",)
MTIME = ("--update", "--use-server-modtime")


@pytest.mark.parametrize(("mode", "last", "force", "expected", "flags"), [
    ("checksum", None, False, "checksum", DEEP),
    ("size", None, False, "checksum", DEEP),  # never deep yet: deep
    ("size", NOW - timedelta(hours=23), False, "size", SIZE),
    ("size", NOW - timedelta(hours=24), False, "checksum", DEEP),
    ("mtime", NOW - timedelta(hours=1), False, "mtime", MTIME),
    ("mtime", NOW - timedelta(hours=1), True, "checksum", DEEP),
])
def test_choose(mode, last, force, expected, flags) -> None:
    choice = compare.choose(mode, DAY, last, NOW, force)
    assert (choice.mode, choice.flags) == (expected, flags)


def test_flags_reach_the_sync_command() -> None:
    assert "--checksum" in rclone.sync_command(Destination("b"), "p", 60)
    command = rclone.sync_command(Destination("b"), "p", 60, MTIME)
    assert "--checksum" not in command
    assert command[3:6] == ["--update", "--use-server-modtime", "--fast-list"]


def test_parse_mode_names_the_choices() -> None:
    with pytest.raises(ValueError, match="'checksum', 'size', 'mtime'"):
        values.compare_mode("sha1")


def _report(job: str, result: str, mode: str, started: datetime) -> RunReport:
    return RunReport(job=job, run_id=f"{job}-{started:%H%M}-{mode}", result=result, exit_code=0,
                     started_at=started, finished_at=started, duration_s=1, compare=mode)


def test_ledger_knows_the_last_deep_success(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    assert ledger.last_deep_success("r") is None
    ledger.finish(_report("r", "success", "checksum", NOW - timedelta(hours=5)))
    ledger.finish(_report("r", "failed", "checksum", NOW - timedelta(hours=2)))
    ledger.finish(_report("r", "success", "size", NOW - timedelta(hours=1)))
    ledger.finish(_report("other", "success", "checksum", NOW))
    assert ledger.last_deep_success("r") == NOW - timedelta(hours=5)
    assert ledger.history("r", 1)[0].compare == "size"


def test_a_ledger_from_before_the_column_is_migrated(tmp_path: Path) -> None:
    """Old rows have no compare: every upload then used --checksum, so they count as deep."""
    with sqlite3.connect(tmp_path / "runs.sqlite3") as db:
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, job TEXT NOT NULL, started_at "
                   "TEXT NOT NULL, finished_at TEXT, result TEXT NOT NULL, exit_code INTEGER, "
                   "duration_s REAL, bytes INTEGER, files INTEGER, deletes INTEGER, errors "
                   "INTEGER, message TEXT NOT NULL DEFAULT '', pid INTEGER)")
        db.execute("INSERT INTO runs (run_id, job, started_at, result) VALUES "
                   "('old', 'r', ?, 'success')", ((NOW - timedelta(hours=3)).isoformat(),))
    db.close()
    ledger = Ledger(tmp_path)
    assert ledger.last_deep_success("r") == NOW - timedelta(hours=3)
    # A second open finds the column in place: no second ALTER, the old row kept, still usable.
    again = Ledger(tmp_path)
    again.finish(_report("r", "success", "size", NOW - timedelta(hours=1)))
    assert again.last_deep_success("r") == NOW - timedelta(hours=3)
    with sqlite3.connect(tmp_path / "runs.sqlite3") as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
        rows = db.execute("SELECT run_id FROM runs ORDER BY started_at").fetchall()
    db.close()
    assert columns.count("compare") == 1
    assert rows == [("old",), ("r-1100-size",)]


# -- real runs -------------------------------------------------------------------------------


def _config(write_config, tmp_path, s3server, bucket, receipts: Path, mode: str, every: str):
    return write_config(tmp_path, s3server, bucket, receipts_dir=receipts, jobs={
        "receipts-upload": {"compare": mode, "deep_every": every}})


def _run(cfg: Path) -> tuple[str, int]:
    result = run_cli("run-once", "receipts-upload", config=cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    mode = re.search(r"compared by\s+(\w+)", result.stdout).group(1)
    files = int(re.search(r"transferred\s+(\d+) files", result.stdout).group(1))
    return mode, files


@pytest.fixture
def receipts(tmp_path: Path) -> Path:
    folder = tmp_path / "receipts"
    folder.mkdir()
    for i in range(5):
        (folder / f"r{i}.pdf").write_bytes(f"receipt {i} total 1{i}.00 EUR".encode())
    return settle(folder)


def test_size_pass_misses_a_same_size_rewrite_and_the_deep_pass_catches_it(
        s3server, bucket, write_config, tmp_path, receipts) -> None:
    cfg = _config(write_config, tmp_path, s3server, bucket, receipts, "size", "1h")
    assert _run(cfg) == ("checksum", 5)  # no deep pass yet: the first run is one
    (receipts / "r1.pdf").write_bytes(b"receipt 1 total 99.00 EUR")  # same size, in place
    settle(receipts)
    assert _run(cfg) == ("size", 0)  # missed
    assert s3server.get(bucket, "receipts/r1.pdf") == b"receipt 1 total 11.00 EUR"

    cfg = _config(write_config, tmp_path, s3server, bucket, receipts, "size", "1s")
    assert _run(cfg) == ("checksum", 1)  # deep_every passed: caught
    assert s3server.get(bucket, "receipts/r1.pdf") == b"receipt 1 total 99.00 EUR"
    history = json.loads(run_cli("history", "receipts-upload", "--json", config=cfg).stdout)
    assert [run["compare"] for run in history] == ["checksum", "size", "checksum"]


def test_mtime_pass_misses_an_old_mtime_restore_and_the_deep_pass_catches_it(
        s3server, bucket, write_config, tmp_path, receipts) -> None:
    cfg = _config(write_config, tmp_path, s3server, bucket, receipts, "mtime", "1h")
    assert _run(cfg) == ("checksum", 5)
    # An older version restored with its old mtime (cp -p from a copy): other content, other
    # size, and an mtime before the upload.
    (receipts / "r2.pdf").write_bytes(b"receipt 2 (draft)")
    old = (datetime.now(UTC) - timedelta(days=30)).timestamp()
    os.utime(receipts / "r2.pdf", (old, old))
    (receipts / "r9.pdf").write_bytes(b"a new receipt")  # new keys: every mode uploads them
    os.utime(receipts / "r9.pdf", (old, old))
    assert _run(cfg) == ("mtime", 1)  # r9 uploaded, r2 missed
    assert s3server.get(bucket, "receipts/r2.pdf") == b"receipt 2 total 12.00 EUR"

    result = run_cli("run-once", "receipts-upload", "--deep", config=cfg)
    assert re.search(r"compared by\s+checksum", result.stdout), result.stdout
    assert re.search(r"transferred\s+1 files", result.stdout)  # caught
    assert s3server.get(bucket, "receipts/r2.pdf") == b"receipt 2 (draft)"
