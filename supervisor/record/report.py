"""What a run reports: one base (Report) for every kind of run, the result words, the run id.

An upload run builds a RunReport from what its containers said; the drill a DrillReport
(restore.drill). record.sinks writes either to the ledger, the metrics, the heartbeat, the
notifications and the journal, reading only what Report declares.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from supervisor.core.clock import now_utc
from supervisor.core.states import DEFERRED, FAILED, REFUSED, SUCCESS
from supervisor.storage import markers


def new_run_id() -> str:
    """`20251218T011504Z-a1b2c3`: sortable, and unique enough for one host's runs."""
    return f"{now_utc():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class Report:
    """What every run leaves behind, whatever ran: the ledger row, the metrics, the heartbeat,
    the notifications and the final journal line read these fields and methods only."""

    job: str
    run_id: str
    result: str  # one of RESULTS
    exit_code: int | None
    started_at: datetime
    finished_at: datetime
    duration_s: float
    bytes: int = 0
    files: int = 0
    deletes: int = 0
    errors: int = 0
    retries: int = 0  # sync attempts rclone retried, healed or not (docs/design.md#retries)
    message: str = ""
    compare: str = ""  # an upload's compare mode (supervisor.upload.compare); "" for other runs

    @property
    def ok(self) -> bool:
        return self.result == SUCCESS

    @property
    def level(self) -> str:
        """The final journal line's priority: a deferral is no failure, but worth a look."""
        return "INFO" if self.ok else "WARNING" if self.result == DEFERRED else "ERROR"

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
        }

    def gauges(self) -> dict[str, float]:
        """Per-job values a kind of run measures beyond the common ones (metrics)."""
        return {}

    def per_destination(self) -> Sequence[DestinationResult]:
        """What the run did at each destination it copies to (an upload); () for other runs."""
        return ()

    def final_line(self) -> str:
        return f"{self.job}: run {self.run_id} {self.result}: {self.message}"

    def summary(self) -> str:
        raise NotImplementedError


# Worst first: the job's result is the worst of its destinations'.
_SEVERITY = (FAILED, REFUSED, DEFERRED, SUCCESS)


def worst_result(results: Sequence[str]) -> str:
    """The worst of `results` (FAILED over REFUSED over DEFERRED over SUCCESS)."""
    return min(results, key=_SEVERITY.index, default=SUCCESS)


@dataclass
class DestinationResult:
    """What one run did at one destination: its own sync, guard, copies and sentinel."""

    name: str
    url: str  # s3://bucket/prefix/
    result: str
    exit_code: int | None = None  # the sync container's; None when none ran
    files: int = 0
    bytes: int = 0
    copied_server_side: int = 0
    bytes_saved: int = 0
    deletes: int = 0
    errors: int = 0
    retries: int = 0  # rclone attempts it retried (containers.rclone.LogSummary.retries)
    skipped_symlinks: int = 0
    last_error: str = ""
    message: str = ""
    sentinel_written: bool = False

    @property
    def ok(self) -> bool:
        return self.result == SUCCESS


@dataclass
class RunReport(Report):
    """An upload run (supervisor.upload.run): the job's result over every destination, and
    each destination's own (`destinations`, in the config's order)."""

    destination: str = ""  # the URL(s) of the job's mirror(s)
    source_files: int = 0
    skipped_symlinks: int = 0
    # Files modified within guard.quiet_period, left out of this sync (both sides) for the next.
    skipped_young: int = 0
    last_error: str = ""
    sentinel_written: bool = False
    # Keys made with a server-side copy of content already in S3 (hard links), verified, and
    # the bytes they did not upload (supervisor.upload.hardlinks).
    copied_server_side: int = 0
    bytes_saved: int = 0
    destinations: list[DestinationResult] = field(default_factory=list)

    def per_destination(self) -> Sequence[DestinationResult]:
        return self.destinations

    def fields(self) -> dict[str, object]:
        return super().fields() | {"copied_server_side": self.copied_server_side,
                                   "bytes_saved": self.bytes_saved, "compare": self.compare,
                                   "skipped_young": self.skipped_young,
                                   "retries": self.retries,
                                   "destinations": " ".join(f"{d.name}={d.result}"
                                                            for d in self.destinations)}

    def gauges(self) -> dict[str, float]:
        # Only an upload leaves young files for the next run; a drill has no such count.
        return {"skipped_young": float(self.skipped_young)}

    def final_line(self) -> str:
        return f"{self.job}: run {self.run_id} {self.result}: {self.message or 'sentinel written'}"

    def summary(self) -> str:
        """The one-screen summary `run-once` prints (the heartbeat's /fail body and the alert's
        too): with several destinations, a block each, and the reason naming the failed ones."""
        several = len(self.destinations) > 1
        code = "-" if self.exit_code is None else str(self.exit_code)
        lines = [
            f"{self.job}  run {self.run_id}  {self.result.upper()}",
            "  destinations      " + ", ".join(f"{d.name} {d.result}" for d in self.destinations)
            if several else f"  destination       {self.destination}",
            f"  finished          {markers.timestamp(self.finished_at)}"
            f"  ({self.duration_s:.1f} s{'' if several else f', rclone exit code {code}'})",
            f"  source files      {self.source_files}",
            f"  compared by       {self.compare or '-'}",
            *([] if several else _counts("  ", self)),
            f"  skipped symlinks  {self.skipped_symlinks}",
            f"  skipped young     {self.skipped_young}",
        ]
        if several:
            lines += [line for d in self.destinations for line in _block(d)]
        else:
            lines.append(f"  sentinel          "
                         f"{'written' if self.sentinel_written else 'not touched'}")
            if self.last_error:
                lines.append(f"  last error        {self.last_error}")
        if self.message:
            lines.append(f"  => {self.message}")
        return "\n".join(lines)


def _block(d: DestinationResult) -> list[str]:
    """One destination's part of the summary of a run to several."""
    code = "-" if d.exit_code is None else str(d.exit_code)
    lines = [f"  {d.name}  {d.result.upper()}  {d.url}  (rclone exit code {code})",
             *_counts("    ", d),
             f"    sentinel        {'written' if d.sentinel_written else 'not touched'}"]
    if d.last_error:
        lines.append(f"    last error      {d.last_error}")
    if d.message:
        lines.append(f"    => {d.message}")
    return lines


def _counts(pad: str, r: RunReport | DestinationResult) -> list[str]:
    """What a sync did, as the summary shows it (values aligned at column 20)."""
    rows = [("transferred", f"{r.files} files, {human_size(r.bytes)}"),
            ("copied in S3", f"{r.copied_server_side} files, {human_size(r.bytes_saved)} not "
                             f"uploaded (hard links)"),
            ("deleted in S3", str(r.deletes)), ("errors", str(r.errors))]
    return [f"{pad}{label:<{20 - len(pad)}}{value}" for label, value in rows]


def human_size(n: int) -> str:
    """A byte count for people: `512 B`, `1.5 KiB`, … up to GiB (run and dry-run summaries)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
