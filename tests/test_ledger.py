"""Run ledger: round-trip, queries, crash recovery, concurrent writers, history output."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from supervisor.cli import cmd_history
from supervisor.record.ledger import FILENAME, Ledger
from supervisor.record.report import RunReport

T0 = datetime(2026, 5, 4, 10, 15, tzinfo=UTC)


def finished(
    job: str, run_id: str, result: str = "success", exit_code: int | None = 0, *,
    started_at: datetime = T0, message: str = "synced 3 files",
) -> RunReport:
    """A finished run, as the pipeline reports it to the ledger."""
    return RunReport(job, run_id, result, exit_code, started_at, T0 + timedelta(seconds=12.5),
                     12.5, bytes=2048, files=3, deletes=1, errors=0, message=message)


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.start("db-upload", "r1", T0)
    assert ledger.last_run("db-upload").result == "running"  # type: ignore[union-attr]
    ledger.finish(finished("db-upload", "r1"))
    run = Ledger(tmp_path).get("r1")
    assert run is not None
    assert (run.result, run.exit_code, run.bytes, run.files, run.deletes, run.errors) == (
        "success",
        0,
        2048,
        3,
        1,
        0,
    )
    assert run.started_at == T0 and run.finished_at == T0 + timedelta(seconds=12.5)
    assert run.message == "synced 3 files"


def test_last_run_last_success_history(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for i, result in enumerate(["success", "failed", "success", "failed"]):
        ledger.finish(finished("db-upload", f"d{i}", result, started_at=T0 + timedelta(hours=i)))
    ledger.finish(finished("receipts-upload", "r0", started_at=T0 + timedelta(hours=9)))
    assert ledger.last_run("db-upload").run_id == "d3"  # type: ignore[union-attr]
    assert ledger.last_success("db-upload").run_id == "d2"  # type: ignore[union-attr]
    assert ledger.last_run("nope") is None
    assert [r.run_id for r in ledger.history(n=3)] == ["r0", "d3", "d2"]
    assert [r.run_id for r in ledger.history("db-upload", 10)] == ["d3", "d2", "d1", "d0"]


def test_running_row_of_dead_process_becomes_interrupted(tmp_path: Path) -> None:
    # A child process starts a run and dies without finishing it (like SIGKILL).
    code = (
        "import sys; from datetime import datetime, UTC; from pathlib import Path;"
        "from supervisor.record.ledger import Ledger;"
        "Ledger(Path(sys.argv[1])).start('db-upload', 'dead', datetime.now(UTC))"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    ledger = Ledger(tmp_path)
    ledger.start("receipts-upload", "alive", T0)  # this process is alive: left alone
    assert [r.run_id for r in ledger.mark_interrupted()] == ["dead"]
    assert ledger.get("dead").result == "interrupted"  # type: ignore[union-attr]
    assert ledger.get("alive").result == "running"  # type: ignore[union-attr]
    assert ledger.last_run("db-upload").run_id == "dead"  # type: ignore[union-attr]
    assert ledger.last_completed("db-upload") is None  # catch-up counts from before it


def test_concurrent_writers(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            for i in range(50):
                ledger.start(prefix, f"{prefix}{i}", T0 + timedelta(seconds=i))
                ledger.finish(finished(prefix, f"{prefix}{i}", started_at=T0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ledger.history(n=1000)) == 200
    with closing(sqlite3.connect(tmp_path / FILENAME)) as db:  # WAL persists in the file
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_cmd_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    la = ZoneInfo("America/Los_Angeles")
    assert cmd_history(tmp_path / "missing", la, None, 5, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not (tmp_path / "missing").exists()
    ledger = Ledger(tmp_path)
    ledger.finish(finished("db-upload", "r1"))
    ledger.finish(
        finished(
            "db-upload",
            "r2",
            "failed",
            7,
            started_at=T0 + timedelta(hours=1),
            message="rclone exit 7",
        )
    )
    assert cmd_history(tmp_path, la, "db-upload", 1, as_json=False, local=True) == 0
    assert capsys.readouterr().out == (
        "2026-05-04T04:15:00-07:00 db-upload failed exit=7 12.5s files=3 bytes=2048 deletes=1 "
        "errors=0 run_id=r2 rclone exit 7\n"
        "    (no per-destination results: recorded before they were kept, or the run crashed)\n"
    )
    assert cmd_history(tmp_path, la, None, 5, as_json=True) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in runs] == ["r2", "r1"]
    assert runs[1]["started_at"] == "2026-05-04T10:15:00+00:00" and runs[1]["result"] == "success"


def test_the_read_only_ledger_reads_and_writes_nothing(tmp_path: Path) -> None:
    assert Ledger.reader(tmp_path / "none") is None and not (tmp_path / "none").exists()
    Ledger(tmp_path).finish(finished("db-upload", "r1", started_at=T0))
    Ledger(tmp_path).finish(finished("db-upload", "r2", started_at=T0 + timedelta(hours=1)))
    before = (tmp_path / FILENAME).read_bytes()
    reader = Ledger.reader(tmp_path)
    assert reader is not None and reader.first_started() == T0
    assert [r.run_id for r in reader.history("db-upload")] == ["r2", "r1"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # sqlite's mode=ro says no
        reader.start("db-upload", "r3", T0)
    assert (tmp_path / FILENAME).read_bytes() == before


def test_a_ledger_from_before_destinations_reads_without_them(tmp_path: Path) -> None:
    Ledger(tmp_path).finish(finished("db-upload", "r1"))
    with closing(sqlite3.connect(tmp_path / FILENAME)) as db:
        db.execute("DROP TABLE run_destinations")
        db.commit()
    reader = Ledger.reader(tmp_path)
    assert reader is not None
    assert [(r.run_id, r.destinations) for r in reader.history()] == [("r1", ())]


def test_history_says_no_destinations_only_of_uploads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = Ledger(tmp_path)
    for hours, (job, run_id) in enumerate((("db-upload", "u1"), ("restore-drill", "d1"),
                                           ("verify", "v1"))):
        ledger.finish(finished(job, run_id, message="", started_at=T0 + timedelta(hours=hours)))
    assert cmd_history(tmp_path, UTC, None, 5, False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if not line.startswith(" ")] == [
        "verify", "restore-drill", "db-upload"]
    assert sum("no per-destination results" in line for line in lines) == 1
    assert "no per-destination results" in lines[-1]  # under db-upload, the only upload
