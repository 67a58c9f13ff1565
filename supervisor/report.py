"""The report of one run: built from what the container said, printed, logged, recorded."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from supervisor.rclone import LogSummary

SUCCESS, FAILED, REFUSED = "success", "failed", "refused"
# Not a failure: the source is being written right now; nothing ran, try again after it settles.
DEFERRED = "deferred"
EXIT_MAX_DURATION = 10  # rclone's exit code when --max-duration stopped it


@dataclass(frozen=True)
class RunReport:
    job: str
    run_id: str
    result: str  # SUCCESS | FAILED | REFUSED (a safety guard said no) | DEFERRED; see above
    exit_code: int | None
    started_at: datetime
    finished_at: datetime
    duration_s: float
    destination: str = ""
    source_files: int = 0
    files: int = 0
    bytes: int = 0
    deletes: int = 0
    errors: int = 0
    skipped_symlinks: int = 0
    # Files modified within guard.quiet_period, left out of this sync (both sides) for the next.
    skipped_young: int = 0
    last_error: str = ""
    sentinel_written: bool = False
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.result == SUCCESS

    def fields(self) -> dict[str, object]:
        """Journal-style fields of the run's final log line."""
        return {
            "result": self.result,
            "exit_code": "" if self.exit_code is None else self.exit_code,
            "duration_s": f"{self.duration_s:.1f}",
            "bytes": self.bytes,
            "files": self.files,
            "deletes": self.deletes,
            "errors": self.errors,
            "skipped_young": self.skipped_young,
        }

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        return data

    def summary(self) -> str:
        """The one-screen summary `run-once` prints."""
        code = "-" if self.exit_code is None else str(self.exit_code)
        lines = [
            f"{self.job}  run {self.run_id}  {self.result.upper()}",
            f"  destination       {self.destination}",
            f"  finished          {self.finished_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
            f"  ({self.duration_s:.1f} s, rclone exit code {code})",
            f"  source files      {self.source_files}",
            f"  transferred       {self.files} files, {_human(self.bytes)}",
            f"  deleted in S3     {self.deletes}",
            f"  errors            {self.errors}",
            f"  skipped symlinks  {self.skipped_symlinks}",
            f"  skipped young     {self.skipped_young}",
            f"  sentinel          {'written' if self.sentinel_written else 'not touched'}",
        ]
        if self.last_error:
            lines.append(f"  last error        {self.last_error}")
        if self.message:
            lines.append(f"  => {self.message}")
        return "\n".join(lines)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@dataclass(frozen=True)
class SyncVerdict:
    ok: bool
    reason: str


def judge_sync(exit_code: int, timed_out: bool, log: LogSummary) -> SyncVerdict:
    """A sync succeeded only if every signal agrees: exit 0, a final stats line with no
    errors, and no error-level line. Any one of them alone can be fooled."""
    if timed_out:
        return SyncVerdict(False, "the job timeout was reached; the container was killed")
    if exit_code == EXIT_MAX_DURATION:
        return SyncVerdict(False, "rclone stopped at --max-duration before finishing")
    if exit_code != 0:
        return SyncVerdict(False, f"rclone exited with code {exit_code}")
    if log.stats is None:
        return SyncVerdict(False, "rclone printed no final stats; the run cannot be verified")
    if log.stats.get("fatalError") or log.stat("errors"):
        return SyncVerdict(False, f"rclone reported {log.stat('errors')} error(s)")
    if log.error_count:
        return SyncVerdict(False, f"rclone logged {log.error_count} error line(s) despite exit 0")
    return SyncVerdict(True, "")


def now_utc() -> datetime:
    return datetime.now(UTC)
