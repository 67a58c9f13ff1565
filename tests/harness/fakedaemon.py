"""The daemon's loop in-process under an injected clock, with a stand-in run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from loguru import logger

from supervisor.config.load import Config
from supervisor.daemon.loop import Daemon
from supervisor.record.report import RunReport


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t

    def wait(self, wake: threading.Event, until: datetime, max_s: float) -> None:
        raise AssertionError("in-process tests drive the daemon with tick()")


@dataclass
class Runner:
    """Stand-in for pipeline.run_job: records calls; blocks while `gate` is clear."""

    clock: FakeClock
    gate: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[str, datetime]] = field(default_factory=list)
    results: list[str] = field(default_factory=list)  # results to return first, then success

    def __post_init__(self) -> None:
        self.gate.set()

    def __call__(self, config: Config, job: str, *, run_id: str) -> RunReport:
        now = self.clock.now()
        self.calls.append((job, now))
        self.gate.wait(10)
        result = self.results.pop(0) if self.results else "success"
        return RunReport(job, run_id, result, 0, now, now + timedelta(seconds=1), 1.0)


@pytest.fixture(name="log_lines")
def log_lines_fixture() -> Iterator[list[str]]:
    """The messages logged (DEBUG and up) during the test."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="DEBUG")
    yield lines
    logger.remove(sink)


def tick_at(daemon: Daemon, clock: FakeClock, when: datetime) -> None:
    clock.t = when
    daemon.tick()
    for state in daemon._jobs.values():
        if state.worker:
            state.worker.join(5)
