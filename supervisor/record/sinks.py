"""One way for every run and every verdict to report, as borgmatic wraps each action in its
monitoring hooks: a list of sinks built once from the config, the same for the daemon,
`run-once`, `drill` and `status`.

    a run:      start (ledger row "running", heartbeat /start) -> the run -> its report to every
                sink in order: ledger, metrics, heartbeat, journal (the final line), alerts
    a verdict:  metrics, alerts (the status ping rides with the alerts)

`upload.run.run_job` and `restore.drill.run_drill` only build and return their report; whatever a
run leaves behind is written here. Nothing after the run can fail it: a sink that raises is logged
and the next one goes on. The alerts share one memory with every other process of this state_dir
(alerts.alerter), so a failure `run-once` reported is not reported again by the daemon.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from loguru import logger

from supervisor.alerts.alerter import Alerter
from supervisor.config.load import Config
from supervisor.core.clock import now_utc
from supervisor.core.redact import redact
from supervisor.core.states import FAILED, INTERRUPTED
from supervisor.record import heartbeat, metrics
from supervisor.record.ledger import Ledger
from supervisor.record.report import Report, new_run_id

R = TypeVar("R", bound=Report)


class Verdict(Protocol):
    """What a sink reads of a health verdict (health.verdict.Verdict)."""

    state: str
    checked_at: datetime

    def values(self) -> metrics.StatusValues: ...

    def render(self) -> str: ...

    def alert_rows(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]: ...


class Sink:
    """One place a run or a verdict is written. Each hook does nothing unless overridden."""

    def started(self, job: str, run_id: str, at: datetime) -> None:
        """A run began."""

    def finished(self, report: Report) -> None:
        """A run ended with a report."""

    def aborted(self, run_id: str, result: str, message: str) -> None:
        """A run ended without a report (a crash, Ctrl-C)."""

    def verdict(self, verdict: Verdict) -> None:
        """A health verdict was computed."""


@dataclass
class LedgerSink(Sink):
    ledger: Ledger

    def started(self, job: str, run_id: str, at: datetime) -> None:
        self.ledger.start(job, run_id, at)

    def finished(self, report: Report) -> None:
        self.ledger.finish(report)

    def aborted(self, run_id: str, result: str, message: str) -> None:
        self.ledger.close(run_id, result, message, now_utc())


@dataclass
class MetricsSink(Sink):
    config: Config

    def finished(self, report: Report) -> None:
        metrics.write_run(self.config, report)

    def verdict(self, verdict: Verdict) -> None:
        metrics.write_status(self.config, verdict.values())


@dataclass
class HeartbeatSink(Sink):
    """healthchecks-style pings per job (record.heartbeat): /start in the background, then the
    result after it."""

    config: Config
    _beats: dict[str, heartbeat.Heartbeat] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, job: str, run_id: str, at: datetime) -> None:
        beat = heartbeat.Heartbeat(self.config.jobs.get(job))
        with self._lock:
            self._beats[run_id] = beat
        beat.start()

    def finished(self, report: Report) -> None:
        with self._lock:
            beat = self._beats.pop(report.run_id, None)
        (beat or heartbeat.Heartbeat(self.config.jobs.get(report.job))).finish(report)

    def aborted(self, run_id: str, result: str, message: str) -> None:
        with self._lock:
            self._beats.pop(run_id, None)


class JournalSink(Sink):
    """The run's final log line, with its fields (JOB, RUN_ID, RESULT, ...) for journald."""

    def finished(self, report: Report) -> None:
        logger.bind(job=report.job, run_id=report.run_id, **report.fields()).log(
            report.level, report.final_line())


@dataclass
class AlertSink(Sink):
    alerter: Alerter

    def finished(self, report: Report) -> None:
        self.alerter.on_run(report.job, report.result, report.summary())

    def verdict(self, verdict: Verdict) -> None:
        problems, checks = verdict.alert_rows()
        self.alerter.on_verdict(verdict.state, problems, checks, verdict.checked_at,
                                status_body=verdict.render())


@dataclass
class Sinks:
    """The sinks of one process, in order; each call goes to all of them."""

    sinks: Sequence[Sink]

    def _each(self, what: str, call: Callable[[Sink], None], job: str | None = None) -> None:
        for sink in self.sinks:
            try:
                call(sink)
            except Exception as exc:  # one sink must never take a run's result with it
                logger.bind(job=job).error(f"{job or 'health'}: {type(sink).__name__} could "
                                           f"not record {what}: {exc}")

    def start(self, job: str, run_id: str | None = None, at: datetime | None = None) -> Recording:
        recording = Recording(self, job, run_id or new_run_id())
        self._each("the start", lambda s: s.started(job, recording.run_id, at or now_utc()), job)
        return recording

    def record(self, job: str, run: Callable[[str], R], run_id: str | None = None) -> R:
        """Runs `run(run_id)` between start and finish; a crash or Ctrl-C closes its row."""
        recording = self.start(job, run_id)
        try:
            report = run(recording.run_id)
        except KeyboardInterrupt:
            recording.close(INTERRUPTED, "interrupted by Ctrl-C")
            raise
        except Exception as exc:
            recording.close(FAILED, f"run crashed: {redact(str(exc))}")
            raise
        return recording.finish(report)

    def verdict(self, verdict: Verdict) -> None:
        self._each("the verdict", lambda s: s.verdict(verdict))


@dataclass
class Recording:
    """One run between its start and its report."""

    sinks: Sinks
    job: str
    run_id: str

    def finish(self, report: R) -> R:
        self.sinks._each("the run", lambda s: s.finished(report), report.job)
        return report

    def close(self, result: str, message: str) -> None:
        self.sinks._each("the run's end", lambda s: s.aborted(self.run_id, result, message),
                         self.job)


def open_ledger(config: Config) -> Ledger | None:
    """The run ledger, or None (with a warning) when state_dir cannot be written: a manual run
    by a user without access to it still runs, it is just not recorded."""
    try:
        return Ledger(config.state_dir)
    except (OSError, sqlite3.Error) as exc:
        logger.warning(f"run not recorded in the ledger under {config.state_dir}: {exc}")
        return None


def alerter_for(config: Config) -> Alerter | None:
    """The config's alerts, or None: none configured, or this process may not take the alert
    memory's lock (another user's state_dir). Then the daemon tells, and nobody twice."""
    if not config.alerts.enabled:
        return None
    alerter = Alerter(config.alerts, config.alert_urls, config.state_dir)
    if not alerter.can_share():
        logger.warning(f"alerts: not sent from this process: {config.state_dir} is not "
                       f"writable here (the daemon sends them)")
        return None
    return alerter


def build(config: Config, ledger: Ledger | None, alerter: Alerter | None) -> Sinks:
    """The sinks, in the order every report reaches them."""
    sinks: list[Sink] = [LedgerSink(ledger)] if ledger else []
    sinks += [MetricsSink(config), HeartbeatSink(config), JournalSink()]
    if alerter:
        sinks.append(AlertSink(alerter))
    return Sinks(sinks)


def for_runs(config: Config) -> Sinks:
    """What `run-once` and `drill` report to: what the daemon reports to."""
    return build(config, open_ledger(config), alerter_for(config))


def for_verdicts(config: Config) -> Sinks:
    """What `status` reports to (no ledger: reading the health records no run)."""
    return build(config, None, alerter_for(config))
