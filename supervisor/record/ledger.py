"""The run ledger: one SQLite row per run under state_dir, for history, STATUS and catch-up.

A row is written when a run starts (result "running") and completed when it ends, so a run cut short
by a crash or SIGKILL stays visible; the next daemon start marks it "interrupted". WAL mode and a
busy timeout let the daemon and a concurrent `ardua-backup run-once` write at the same time.
Each call opens its own connection: the daemon writes from worker threads, and sqlite3 connections
must not be shared between threads.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from supervisor.core.states import INTERRUPTED, RUNNING
from supervisor.record.report import Report

FILENAME = "runs.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    job         TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    result      TEXT NOT NULL,
    exit_code   INTEGER,
    duration_s  REAL,
    bytes       INTEGER,
    files       INTEGER,
    deletes     INTEGER,
    errors      INTEGER,
    message     TEXT NOT NULL DEFAULT '',
    pid         INTEGER,
    compare     TEXT
);
CREATE INDEX IF NOT EXISTS runs_job_started ON runs (job, started_at);
CREATE TABLE IF NOT EXISTS run_destinations (
    run_id           TEXT NOT NULL REFERENCES runs (run_id),
    destination      TEXT NOT NULL,
    result           TEXT NOT NULL,
    exit_code        INTEGER,
    bytes            INTEGER,
    files            INTEGER,
    deletes          INTEGER,
    errors           INTEGER,
    message          TEXT NOT NULL DEFAULT '',
    sentinel_written INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, destination)
);
"""
_DEST_COLUMNS = ("run_id, destination, result, exit_code, bytes, files, deletes, errors, message, "
                 "sentinel_written")
_COLUMNS = (
    "run_id, job, started_at, finished_at, result, exit_code, duration_s, bytes, files, deletes, "
    "errors, message, compare"
)
# Rows written before the compare column existed: every upload then compared by checksum.
_DEEP = "COALESCE(compare, 'checksum') = 'checksum'"


@dataclass(frozen=True)
class RunDestination:
    """What one run did at one of its destinations (an upload run's child row)."""

    destination: str
    result: str
    exit_code: int | None
    bytes: int | None
    files: int | None
    deletes: int | None
    errors: int | None
    message: str
    sentinel_written: bool


@dataclass(frozen=True)
class Run:
    run_id: str
    job: str
    started_at: datetime
    finished_at: datetime | None
    result: str  # success | failed | refused | running | interrupted
    exit_code: int | None
    duration_s: float | None
    bytes: int | None
    files: int | None
    deletes: int | None
    errors: int | None
    message: str
    compare: str | None = None  # how an upload compared: checksum (deep) / size / mtime
    # Each destination's result, in the config's order; () for a drill, for a run still going
    # and for rows written before destinations were recorded.
    destinations: tuple[RunDestination, ...] = ()

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def sql_time(value: datetime) -> str:
    """How the ledger's database stores a time: fixed-width UTC text sorts chronologically in
    SQL (the runs and verify's proofs alike)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


L = TypeVar("L", bound="Ledger")


class Ledger:
    def __init__(self, state_dir: Path, *, read_only: bool = False) -> None:
        self.path = state_dir / FILENAME
        self.read_only = read_only
        if read_only:
            return
        state_dir.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if "compare" not in columns:  # a ledger from before the column
                try:
                    db.execute("ALTER TABLE runs ADD COLUMN compare TEXT")
                except sqlite3.OperationalError as exc:  # another process added it just now
                    if "duplicate column" not in str(exc):
                        raise

    @classmethod
    def reader(cls: type[L], state_dir: Path) -> L | None:
        """The ledger opened read-only, or None when there is none: reading what was recorded
        (status, history) writes nothing, creates nothing, and works where state_dir is
        read-only or another user's."""
        return cls(state_dir, read_only=True) if (state_dir / FILENAME).exists() else None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        target = f"{self.path.as_uri()}?mode=ro" if self.read_only else str(self.path)
        with closing(sqlite3.connect(target, uri=self.read_only, timeout=30)) as db, db:
            yield db

    def has_table(self, name: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                              (name,)).fetchone() is not None

    def first_started(self) -> datetime | None:
        """When the oldest recorded run started: when this installation began working."""
        with self._connect() as db:
            first = db.execute("SELECT MIN(started_at) FROM runs").fetchone()[0]
        return _parse_ts(first)

    def start(self, job: str, run_id: str, started_at: datetime) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, job, started_at, result, pid) VALUES (?, ?, ?, ?, ?)",
                (run_id, job, sql_time(started_at), RUNNING, os.getpid()),
            )

    def finish(self, report: Report) -> None:
        """Complete the row of a started run, or record a run that was never started here."""
        values = (
            report.run_id,
            report.job,
            sql_time(report.started_at),
            sql_time(report.finished_at),
            report.result,
            report.exit_code,
            report.duration_s,
            report.bytes,
            report.files,
            report.deletes,
            report.errors,
            report.message,
            report.compare or None,
        )
        children = [(report.run_id, d.name, d.result, d.exit_code, d.bytes, d.files,
                     d.deletes, d.errors, d.message, int(d.sentinel_written))
                    for d in report.per_destination()]
        with self._connect() as db:  # one transaction: the run and its destinations
            db.execute(
                f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * len(values))}) "
                "ON CONFLICT (run_id) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])
                + ", pid = NULL",
                values,
            )
            db.executemany(
                f"INSERT OR REPLACE INTO run_destinations ({_DEST_COLUMNS}) "
                f"VALUES ({', '.join('?' * 10)})", children)

    def close(self, run_id: str, result: str, message: str, finished_at: datetime) -> None:
        """End a started run without a report (crash of the run or of the process)."""
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET result = ?, message = ?, finished_at = ?, pid = NULL "
                "WHERE run_id = ?",
                (result, message, sql_time(finished_at), run_id),
            )

    def mark_interrupted(self) -> list[Run]:
        """Close "running" rows whose process is gone (crash, SIGKILL, reboot)."""
        with self._connect() as db:
            rows = db.execute("SELECT run_id, pid FROM runs WHERE result = 'running'").fetchall()
        now = datetime.now(UTC)
        dead = [run_id for run_id, pid in rows if not _pid_alive(pid)]
        for run_id in dead:
            self.close(run_id, INTERRUPTED, "process ended before the run finished", now)
        return [run for run_id in dead if (run := self.get(run_id))]

    def get(self, run_id: str) -> Run | None:
        runs = self._select("WHERE run_id = ?", (run_id,))
        return runs[0] if runs else None

    def history(self, job: str | None = None, n: int = 20) -> list[Run]:
        """The latest ``n`` runs, newest first."""
        where, args = ("WHERE job = ?", (job,)) if job else ("", ())
        return self._select(f"{where} ORDER BY started_at DESC LIMIT ?", (*args, n))

    def last_run(self, job: str) -> Run | None:
        return self._last(job, "TRUE")

    def last_completed(self, job: str) -> Run | None:
        """Latest run that came to an end by itself: what catch-up counts from."""
        return self._last(job, "result NOT IN ('running', 'interrupted')")

    def last_success(self, job: str) -> Run | None:
        return self._last(job, "result = 'success'")

    def last_deep_success(self, job: str) -> datetime | None:
        """When the job's last successful deep (checksum) pass started."""
        run = self._last(job, f"result = 'success' AND {_DEEP}")
        return run.started_at if run else None

    def _last(self, job: str, condition: str) -> Run | None:
        runs = self._select(
            f"WHERE job = ? AND {condition} ORDER BY started_at DESC LIMIT 1", (job,)
        )
        return runs[0] if runs else None

    def _select(self, tail: str, args: tuple[object, ...]) -> list[Run]:
        # Read-only, a ledger written before run_destinations existed cannot be given it.
        keeps_destinations = not self.read_only or self.has_table("run_destinations")
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM runs {tail}", args).fetchall()
            children = db.execute(
                f"SELECT {_DEST_COLUMNS} FROM run_destinations WHERE run_id IN "
                f"(SELECT run_id FROM runs {tail}) ORDER BY rowid", args
            ).fetchall() if keeps_destinations else []
        of: dict[str, list[RunDestination]] = {}
        for c in children:
            of.setdefault(c[0], []).append(RunDestination(*c[1:9], bool(c[9])))
        return [Run(r[0], r[1], _parse_ts(r[2]), _parse_ts(r[3]), *r[4:],
                    destinations=tuple(of.get(r[0], ()))) for r in rows]
