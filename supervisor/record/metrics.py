"""Prometheus metrics: a node_exporter textfile-collector file and an optional loopback /metrics.

Runs and status checks happen in different processes (CLI, daemon), so the latest values live in
a small JSON file in state_dir; both outputs render from it, and one run never erases another
job's values. Writing metrics never fails a run: errors are logged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from loguru import logger
from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supervisor.config.load import DRILL_JOB, VERIFY_JOB, Config
from supervisor.core.files import replace_text
from supervisor.core.states import DEFERRED, REFUSED, RESULTS
from supervisor.record.report import Report

STATE_FILE = "metrics.json"
P = "ardua_backup_"


def _enabled(config: Config) -> bool:
    return config.metrics.textfile is not None or bool(config.metrics.port)


@contextlib.contextmanager
def _state(config: Config) -> Iterator[dict[str, Any]]:
    """The stored values, locked for a read-modify-write; saved atomically on exit."""
    path = config.state_dir / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _load(path)
        yield state
        replace_text(path, json.dumps(state, indent=1, sort_keys=True))


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _update(config: Config, change: Callable[[dict[str, Any]], None]) -> None:
    if not _enabled(config):
        return
    try:
        with _state(config) as state:
            change(state)
            _forget_removed_jobs(config, state)
        if config.metrics.textfile:
            write_to_textfile(str(config.metrics.textfile), _registry(config))  # tmp + rename
    except OSError as exc:
        logger.warning(f"metrics not written: {exc}")


def _forget_removed_jobs(config: Config, state: dict[str, Any]) -> None:
    """Drops the values of a job the config no longer has (removed or renamed): its frozen
    last_success would keep an "upload failing" alert firing for a job that no longer runs.
    The ledger keeps its history; a job added back starts afresh at its next run."""
    known = {*config.jobs, DRILL_JOB, VERIFY_JOB}
    jobs = state.get("jobs") or {}
    for gone in [name for name in jobs if name not in known]:
        del jobs[gone]
        logger.info(f"metrics: dropped the values of job {gone!r}, which is not in the config")


@dataclass(frozen=True)
class StatusValues:
    """What a status check exports (health.Verdict.values() builds it)."""

    code: int
    at: float  # epoch seconds of the check
    dump_age_s: float | None = None  # of the database whose newest dump is oldest
    dump_in_s3: bool | None = None  # ... held in every destination of the dump job
    database_dump_age_s: dict[str, float | None] = field(default_factory=dict)
    sentinel_age_s: dict[str, float | None] = field(default_factory=dict)  # oldest of its copies
    # destination -> job -> sentinel age; destination -> holds that newest dump
    destination_sentinel_age_s: dict[str, dict[str, float | None]] = field(default_factory=dict)
    destination_has_dump: dict[str, bool | None] = field(default_factory=dict)
    drill_age_s: float | None = None
    drill_ok: bool | None = None
    dump_to_s3_s: float | None = None  # the newest dump's end -> its first verified upload


def write_run(config: Config, report: Report) -> None:
    def change(state: dict[str, Any]) -> None:
        job = state.setdefault("jobs", {}).setdefault(report.job, {})
        assert report.finished_at is not None
        job.update(
            last_run=report.finished_at.timestamp(), result=report.result,
            duration_s=report.duration_s, bytes=report.bytes, files=report.files,
            deletes=report.deletes,
        )
        job.update(report.gauges())  # e.g. the drill's rto_s
        if report.ok:
            job["last_success"] = report.finished_at.timestamp()
        if report.result in (REFUSED, DEFERRED):
            key = f"{report.result}_total"
            job[key] = job.get(key, 0) + 1
        job["s3_retries_total"] = job.get("s3_retries_total", 0) + report.retries
        _destinations(config, report, job)

    _update(config, change)


def _destinations(config: Config, report: Report, job: dict[str, Any]) -> None:
    """Each destination's last run under its job's values; a destination the job no longer
    copies to is dropped, as a removed job is (_forget_removed_jobs)."""
    assert report.finished_at is not None
    at = report.finished_at.timestamp()
    ends = report.per_destination()
    if not ends:
        return
    known = config.jobs.get(report.job)
    names = {d.name for d in config.destinations_of(known)} if known else set()
    values = {name: v for name, v in (job.get("destinations") or {}).items() if name in names}
    for end in ends:
        mine = values.setdefault(end.name, {})
        mine.update(last_run=at, result=end.result, bytes=end.bytes)
        if end.ok:
            mine["last_success"] = at
    job["destinations"] = values


def write_status(config: Config, values: StatusValues) -> None:
    _update(config, lambda state: state.__setitem__("status", asdict(values)))


class StateCollector(Collector):
    """Renders the stored values at every collection (textfile write or HTTP scrape)."""

    def __init__(self, path: Path):
        self.path = path

    def collect(self) -> Iterator[Metric]:
        state = _load(self.path)
        yield from _job_metrics(state.get("jobs") or {})
        yield from _verify_metrics((state.get("jobs") or {}).get(VERIFY_JOB) or {})
        yield from _status_metrics(state.get("status") or {})


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, labels=list(labels))


Rows = list[tuple[tuple[str, ...], dict[str, Any]]]  # (label values, stored values) each


def _gauges(table: dict[str, tuple[str, str]], labels: tuple[str, ...],
            rows: Rows) -> Iterator[Metric]:
    """A gauge per `table` entry (name: (stored key, doc)), a sample per row holding the key."""
    for name, (key, doc) in table.items():
        family = _gauge(name, doc, labels)
        for label_values, values in rows:
            if values.get(key) is not None:
                family.add_metric(list(label_values), float(values[key]))
        yield family


def _results(name: str, doc: str, labels: tuple[str, ...], rows: Rows) -> Metric:
    """1 for each row's last result, 0 for every other result (a `result` label each)."""
    family = _gauge(name, doc, (*labels, "result"))
    for label_values, values in rows:
        for res in RESULTS:
            family.add_metric([*label_values, res], 1.0 if values.get("result") == res else 0.0)
    return family


def _job_metrics(jobs: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    per_job = {
        "last_run_timestamp_seconds": ("last_run", "When the job's last run finished."),
        "last_success_timestamp_seconds": ("last_success", "When the job last succeeded."),
        "last_run_duration_seconds": ("duration_s", "Duration of the job's last run."),
        "last_run_bytes": ("bytes", "Bytes uploaded by the job's last run."),
        "last_run_files": ("files", "Files uploaded by the job's last run."),
        "last_run_deletes": ("deletes", "Objects deleted in S3 by the job's last run."),
        "last_run_skipped_young": ("skipped_young", "Files changed within guard.quiet_period "
                                   "that the job's last run left for the next run."),
        "restore_drill_rto_seconds": ("rto_s", "Download + pg_restore time of the last restore "
                                      "drill: the measured RTO."),
    }
    rows: Rows = [((job,), values) for job, values in sorted(jobs.items())]
    yield from _gauges(per_job, ("job",), rows)
    yield _results("last_run_result", "1 for the result of the job's last run.", ("job",), rows)
    refusals = CounterMetricFamily(
        P + "guard_refusals", "Runs a guard stopped before the sync: refused (deletion "
        "guard) or deferred (source still being written).", labels=["job", "kind"])
    retries = CounterMetricFamily(
        P + "s3_retries", "Sync attempts rclone retried after S3 errors, healed or not "
        "(docs/design.md#retries).", labels=["job"])
    for job, values in sorted(jobs.items()):
        for kind in (REFUSED, DEFERRED):
            refusals.add_metric([job, kind], float(values.get(f"{kind}_total", 0)))
        retries.add_metric([job], float(values.get("s3_retries_total", 0)))
    yield refusals
    yield retries
    yield from _per_destination_run_metrics(jobs)


def _per_destination_run_metrics(jobs: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """The upload jobs' values per destination (labels job, destination)."""
    per_destination = {
        "destination_last_run_timestamp_seconds": (
            "last_run", "When the job's last run finished at the destination."),
        "destination_last_success_timestamp_seconds": (
            "last_success", "When the job last succeeded at the destination (its sentinel)."),
        "destination_last_run_bytes": (
            "bytes", "Bytes uploaded to the destination by the job's last run."),
    }
    labels = ("job", "destination")
    rows: Rows = [((job, name), v) for job, values in sorted(jobs.items())
                  for name, v in sorted((values.get("destinations") or {}).items())]
    yield from _gauges(per_destination, labels, rows)
    yield _results("destination_last_run_result",
                   "1 for the result of the job's last run at the destination.", labels, rows)


def _verify_metrics(run: dict[str, Any]) -> Iterator[Metric]:
    """The last `verify` run's values (supervisor.verify.run.VerifyReport.gauges)."""
    families = {
        "verify_coverage_ratio": ("verify_coverage", "Share of the retained objects with a "
                                  "passing proof younger than verify.max_age, at the last run."),
        "verify_failed_objects": ("verify_failed", "Retained objects whose latest proof "
                                  "failed, at the last verify run."),
        "verify_bytes_read": ("verify_bytes_read", "Bytes the last verify run read back."),
        "verify_last_run_timestamp_seconds": ("last_run", "When the last verify run finished."),
    }
    for name, (key, doc) in families.items():
        if run.get(key) is not None:
            yield GaugeMetricFamily(P + name, doc, value=float(run[key]))


def _status_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    if not status:
        return
    singles = {
        "status": ("code", "Verdict of the last status check: 0 OK, 1 WARNING, 2 CRITICAL, "
                           "3 UNKNOWN."),
        "status_timestamp_seconds": ("at", "When the last status check ran."),
        "dump_age_seconds": ("dump_age_s", "Age of the newest local dump at the last check."),
        "s3_has_latest_dump": ("dump_in_s3", "1 when every destination of the dump job holds "
                               "the newest dump (key and size)."),
        "restore_drill_age_seconds": ("drill_age_s", "Age of the last restore drill."),
        "restore_drill_ok": ("drill_ok", "1 when the last restore drill passed."),
        "dump_to_s3_seconds": ("dump_to_s3_s", "Seconds from the newest dump's end to the "
                               "sentinel of the dump job's first verified upload after it."),
    }
    for name, (key, doc) in singles.items():
        if status.get(key) is not None:
            yield GaugeMetricFamily(P + name, doc, value=float(status[key]))
    labelled = {
        "sentinel_age_seconds": ("sentinel_age_s", "job",
                                 "Age of the job's .last_success at the last check (the oldest "
                                 "of its destinations)."),
        "database_dump_age_seconds": ("database_dump_age_s", "database",
                                      "Age of the database's newest local dump at the last "
                                      "check."),
    }
    for name, (key, label, doc) in labelled.items():
        family = _gauge(name, doc, (label,))
        for value_of, age in sorted((status.get(key) or {}).items()):
            if age is not None:
                family.add_metric([value_of], float(age))
        yield family
    yield from _destination_metrics(status)


def _destination_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    ages = _gauge("destination_sentinel_age_seconds", "Age of the job's .last_success in the "
                  "destination at the last check.", ("job", "destination"))
    for dest, jobs in sorted((status.get("destination_sentinel_age_s") or {}).items()):
        for job, age in sorted(jobs.items()):
            if age is not None:
                ages.add_metric([job, dest], float(age))
    yield ages
    held = _gauge("destination_has_latest_dump", "1 when the destination holds the newest "
                  "dump (key and size).", ("destination",))
    for dest, has in sorted((status.get("destination_has_dump") or {}).items()):
        if has is not None:
            held.add_metric([dest], float(has))
    yield held


SERVE_FILE = "metrics-serve.json"


@dataclass(frozen=True)
class Serving:
    """What the daemon made of metrics.port, as it records it for `status` (another process,
    maybe another user): the port is a convenience, so a port taken by another process is a
    warning in `status`, never a reason to stop scheduling backups."""

    port: int
    served: bool
    error: str = ""  # why not served: "taken" (EADDRINUSE) or the OS's reason
    pid: int = 0  # the daemon that tried, and its start (field 22 of /proc/PID/stat):
    start: str = ""  # a record of a daemon that has ended is not shown

    @property
    def problem(self) -> str:
        if self.served:
            return ""
        if self.error == TAKEN:
            return f"port {self.port} is taken by another process"
        return f"cannot listen on 127.0.0.1:{self.port}: {self.error}"


TAKEN = "taken"


def serve(config: Config) -> Serving | None:
    """Starts /metrics on 127.0.0.1:metrics.port in a background thread (for the daemon) and
    records the outcome in state_dir for `status`. None when no port is configured. Never
    raises: a port another process holds (a local user can take any free port) is logged in
    one line, and the daemon tries again at its next reload."""
    port = config.metrics.port
    if not port:
        forget_serving(config)
        return None
    try:
        start_http_server(port, addr="127.0.0.1", registry=_registry(config))
        serving = Serving(port, True)
    except OSError as exc:
        reason = TAKEN if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        serving = Serving(port, False, reason)
    serving = replace(serving, pid=os.getpid(), start=_process_start(os.getpid()))
    if serving.served:
        logger.info(f"serving /metrics on 127.0.0.1:{port}")
    else:
        logger.warning(f"metrics: not serving /metrics: {serving.problem}; backups and alerts "
                       f"go on, the port is tried again at the next reload (SIGHUP)")
    _record_serving(config, serving)
    return serving


def _record_serving(config: Config, serving: Serving) -> None:
    path = config.state_dir / SERVE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(path, json.dumps(asdict(serving)))
    except OSError as exc:
        logger.warning(f"metrics: serving state not recorded for status: {exc}")


def forget_serving(config: Config) -> None:
    """The daemon stops (or serves no port): nothing for `status` to report."""
    with contextlib.suppress(OSError):
        path = config.state_dir / SERVE_FILE
        if _load(path).get("pid") == os.getpid():
            path.unlink()


def serving(config: Config) -> Serving | None:
    """What the running daemon of this state_dir made of metrics.port, as it recorded it; None
    without a port, a record, or a daemon still running (the record's pid and start time).
    Read from state_dir, which only the daemon's user writes: a process on the port cannot
    pose as the daemon, as it could to a probe of the port; and it works for a `status` run
    by any user who can read state_dir."""
    if not config.metrics.port:
        return None
    data = _load(config.state_dir / SERVE_FILE)
    try:
        found = Serving(int(data["port"]), bool(data["served"]), str(data.get("error", "")),
                        int(data["pid"]), str(data["start"]))
    except (KeyError, TypeError, ValueError):
        return None
    return found if _alive(found.pid, found.start) else None


def _process_start(pid: int) -> str:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the pid it names a process; ""
    when /proc does not show it (another user's process under hidepid, or no such pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    if pid <= 0:
        return False
    seen = _process_start(pid)
    if seen:
        return seen == start
    try:  # hidden from us (hidepid), or gone: the kernel still tells which
        os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _registry(config: Config) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StateCollector(config.state_dir / STATE_FILE))
    return registry
