"""Recording a run: one way for every run (an upload or the drill, from the daemon or the CLI),
as borgmatic wraps each action in its monitoring hooks:

    ledger start -> heartbeat start -> the run -> ledger finish (or close on a crash)
    -> metrics -> heartbeat result -> the run's final journal line -> sinks (notifications)

`pipeline.run_job` and `drill.run_drill` only build and return their report; everything a run
leaves behind is written here, in this order. Nothing after the run can fail it: a metrics
file, a ping or a notification that fails is logged and the next step goes on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from loguru import logger

from supervisor.config.load import Config
from supervisor.core.clock import now_utc
from supervisor.core.states import FAILED, INTERRUPTED
from supervisor.record import heartbeat, metrics
from supervisor.record.ledger import Ledger
from supervisor.record.report import Report, new_run_id

R = TypeVar("R", bound=Report)
Sink = Callable[[Report], None]  # e.g. alerts.Alerter.on_report


def open_ledger(config: Config) -> Ledger | None:
    """The run ledger, or None (with a warning) when state_dir cannot be written: a manual run
    by a user without access to it still runs, it is just not recorded."""
    try:
        return Ledger(config.state_dir)
    except (OSError, sqlite3.Error) as exc:
        logger.warning(f"run not recorded in the ledger under {config.state_dir}: {exc}")
        return None


@dataclass
class Recorder:
    config: Config
    ledger: Ledger | None
    sinks: Sequence[Sink] = ()

    def start(self, job: str, run_id: str | None = None, at: datetime | None = None) -> Recording:
        """The ledger row ("running") and the heartbeat's start ping (in the background)."""
        recording = Recording(self, job, run_id or new_run_id())
        if self.ledger:
            self.ledger.start(job, recording.run_id, at or now_utc())
        recording.beat.start()
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
            recording.close(FAILED, f"run crashed: {exc}")
            raise
        return recording.finish(report)


class Recording:
    """One run between its start and its report."""

    def __init__(self, recorder: Recorder, job: str, run_id: str) -> None:
        self.recorder, self.job, self.run_id = recorder, job, run_id
        self.beat = heartbeat.Heartbeat(recorder.config.jobs.get(job))

    def finish(self, report: R) -> R:
        rec = self.recorder
        if rec.ledger:
            rec.ledger.finish(report)
        metrics.write_run(rec.config, report)
        self.beat.finish(report)
        logger.bind(job=report.job, run_id=report.run_id, **report.fields()).log(
            report.level, report.final_line())
        for sink in rec.sinks:
            try:
                sink(report)
            except Exception as exc:  # a notifier must never take a run's result with it
                logger.bind(job=report.job).error(f"{report.job}: reporting the run failed: {exc}")
        return report

    def close(self, result: str, message: str) -> None:
        """A run that ended without a report (a crash, Ctrl-C)."""
        if self.recorder.ledger:
            self.recorder.ledger.close(self.run_id, result, message, now_utc())
