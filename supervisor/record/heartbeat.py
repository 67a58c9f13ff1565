"""healthchecks.io-style pings per job: URL/start, URL on success, URL/fail with a log tail.

A ping can never fail or hold up a backup: a short overall deadline (core.http), no retries,
failures only logged (scheme://host, never the token), and the start ping runs in a background
thread while the backup goes on.
"""

from __future__ import annotations

import threading

from loguru import logger

from supervisor.alerts.send import describe_url, scrub
from supervisor.config.load import JobConfig
from supervisor.core.http import TIMEOUT_S, ping
from supervisor.core.states import DEFERRED
from supervisor.record.report import Report


def _ping(job: str, url: str, body: str | None = None) -> None:
    """A failure logged with scheme://host only: the rest of a ping URL is its token, and the
    journal is readable by more people than the config (alerts.send.describe_url)."""
    if error := ping(url, body):
        logger.bind(job=job).warning(
            f"{job}: heartbeat ping to {describe_url(url)} failed: {scrub(error, url)}")


class Heartbeat:
    """The pings of one run. Without a configured URL every method does nothing."""

    def __init__(self, job: JobConfig | None):
        """`None`: a run without pings (the drill)."""
        self.job, self.url = (job.name, job.heartbeat_url) if job else ("", "")
        self._start: threading.Thread | None = None

    def start(self) -> None:
        if self.url:
            self._start = threading.Thread(
                target=_ping, args=(self.job, f"{self.url}/start"), daemon=True
            )
            self._start.start()

    def finish(self, report: Report) -> None:
        """Success, or /fail with the run summary. A deferred run is only logged (/log): nothing
        failed, and the next attempt will report the outcome."""
        if not self.url:
            return
        if self._start:
            self._start.join(TIMEOUT_S)  # keep the order start -> finish at the receiver
        if report.ok:
            _ping(self.job, self.url)
        else:
            suffix = "/log" if report.result == DEFERRED else "/fail"
            _ping(self.job, f"{self.url}{suffix}", report.summary())
