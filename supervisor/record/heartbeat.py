"""healthchecks.io-style pings per job: URL/start, URL on success, URL/fail with a log tail.

A ping can never fail or hold up a backup: short timeout, no retries, failures only logged, and
the start ping runs in a background thread while the backup goes on.
"""

from __future__ import annotations

import threading
import urllib.request

from loguru import logger

from supervisor.config.load import JobConfig
from supervisor.record.report import DEFERRED, Report

TIMEOUT_S = 3.0
BODY_LIMIT = 10_000  # healthchecks.io keeps the first 100 kB; a short tail is what people read


def ping(url: str, body: str | None = None) -> str:
    """GET ``url``, or POST the tail of ``body``; "" when answered with 2xx/3xx, else why not.
    Never raises (also used by alertsend.status_ping, which logs a redacted URL instead)."""
    data = body.encode("utf-8")[-BODY_LIMIT:] if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            resp.read(1024)
    except Exception as exc:  # whatever breaks, the backup goes on
        return str(exc) or type(exc).__name__
    return ""


def _ping(job: str, url: str, body: str | None = None) -> None:
    if error := ping(url, body):
        logger.bind(job=job).warning(f"{job}: heartbeat ping {url} failed: {error}")


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
