"""Prometheus metrics: a node_exporter textfile-collector file and an optional loopback /metrics.

Runs and status checks happen in different processes (CLI, daemon), so the latest values live in
a small JSON file in state_dir; both outputs render from it, and one run never erases another
job's values. Writing metrics never fails a run: errors are logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supervisor.config.load import DRILL_JOB, Config
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
        tmp = path.with_suffix(f".tmp.{os.getpid()}")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, path)


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
    known = {*config.jobs, DRILL_JOB}
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
    dump_in_s3: bool | None = None
    database_dump_age_s: dict[str, float | None] = field(default_factory=dict)
    sentinel_age_s: dict[str, float | None] = field(default_factory=dict)
    drill_age_s: float | None = None
    drill_ok: bool | None = None


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

    _update(config, change)


def write_status(config: Config, values: StatusValues) -> None:
    _update(config, lambda state: state.__setitem__("status", asdict(values)))


class StateCollector(Collector):
    """Renders the stored values at every collection (textfile write or HTTP scrape)."""

    def __init__(self, path: Path):
        self.path = path

    def collect(self) -> Iterator[Metric]:
        state = _load(self.path)
        yield from _job_metrics(state.get("jobs") or {})
        yield from _status_metrics(state.get("status") or {})


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, labels=list(labels))


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
    for name, (key, doc) in per_job.items():
        family = _gauge(name, doc, ("job",))
        for job, values in sorted(jobs.items()):
            if values.get(key) is not None:
                family.add_metric([job], float(values[key]))
        yield family
    result = _gauge("last_run_result", "1 for the result of the job's last run.",
                    ("job", "result"))
    refusals = CounterMetricFamily(
        P + "guard_refusals", "Runs a guard stopped before the sync: refused (deletion "
        "guard) or deferred (source still being written).", labels=["job", "kind"])
    for job, values in sorted(jobs.items()):
        for res in RESULTS:
            result.add_metric([job, res], 1.0 if values.get("result") == res else 0.0)
        for kind in (REFUSED, DEFERRED):
            refusals.add_metric([job, kind], float(values.get(f"{kind}_total", 0)))
    yield result
    yield refusals


def _status_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    if not status:
        return
    singles = {
        "status": ("code", "Verdict of the last status check: 0 OK, 1 WARNING, 2 CRITICAL, "
                           "3 UNKNOWN."),
        "status_timestamp_seconds": ("at", "When the last status check ran."),
        "dump_age_seconds": ("dump_age_s", "Age of the newest local dump at the last check."),
        "s3_has_latest_dump": ("dump_in_s3", "1 when S3 holds the newest dump (key and size)."),
        "restore_drill_age_seconds": ("drill_age_s", "Age of the last restore drill."),
        "restore_drill_ok": ("drill_ok", "1 when the last restore drill passed."),
    }
    for name, (key, doc) in singles.items():
        if status.get(key) is not None:
            yield GaugeMetricFamily(P + name, doc, value=float(status[key]))
    labelled = {
        "sentinel_age_seconds": ("sentinel_age_s", "job",
                                 "Age of the job's .last_success at the last check."),
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


def serve(config: Config) -> bool:
    """Starts /metrics on 127.0.0.1:metrics.port in a background thread (for the daemon).
    Returns False when no port is configured."""
    if not config.metrics.port:
        return False
    start_http_server(config.metrics.port, addr="127.0.0.1", registry=_registry(config))
    return True


def _registry(config: Config) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StateCollector(config.state_dir / STATE_FILE))
    return registry
