"""Alerts that reach a person: the seams the daemon, the run recorder and the CLI call.

Made of: alertconfig (the ``[alerts]`` settings, the 0600 URLs file), alertstate (when to tell:
pure rules plus their JSON memory in ``state_dir/alerts.json``), alertsend (apprise, redaction,
the status ping). ``Alerter`` puts them together; it is thread-safe (one lock: a verdict check and
a run finishing on another thread take turns), and no method raises or waits longer than
``send_timeout_s`` (+ 3 s for the status ping).

Wiring (the lead's part; nothing here imports config, health, daemon, pipeline or cli):

config.py
    ``settings = alertconfig.parse(data.get("alerts"), path)`` (or the per-key parsers with
    ``_Table.take_parsed``), then ``urls = alertconfig.load_urls(settings.urls_file)`` when it is
    set: ValueError naming the file for a missing file, a mode with group/other bits, no URL, or
    a line apprise cannot use (by line number). check-config shows
    ``[alertsend.describe_url(u) for u in urls]`` only: scheme://host, never a token.

daemon start / SIGHUP reload
    ``alerter = Alerter(settings, urls, config.state_dir)``; on reload
    ``alerter.reconfigure(settings, urls)`` (the memory is kept).

every verdict (each ``settings.check_every_s`` and after each run)::

    alerter.on_verdict(
        verdict.state,
        [(p.state, p.text) for p in verdict.problems],
        [(c.name, c.state, c.detail) for c in verdict.checks],
        verdict.checked_at,
        status_body=verdict.render(),
    )

each finished run (the run recorder, with report.py's result words; the drill's report the same,
job ``restore-drill``)::

    alerter.on_run(report.job, report.result, report.summary())

``ardua-backup alerts test``
    ``for shown, ok, error in alertsend.test_all(urls): ...`` (exit 0 only if every ok).

Each notification sent is one log line with journald fields ALERT_STATE, ALERT_PREVIOUS,
ALERT_SENT=n/m (and JOB for a run event); a URL is never in it. When every URL fails, the memory
is not advanced, so the next verdict (or run) tries the same notification again. With no URLs at
all (only a status ping) the decisions are still made, logged with ALERT_SENT=0/0 and remembered:
create an Alerter only when ``settings.enabled`` if that is not wanted.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger

from supervisor.alerts import rules as alertstate
from supervisor.alerts import send as alertsend
from supervisor.alerts.rules import OK, Memory, Notification
from supervisor.alerts.send import SendResult
from supervisor.config.load import AlertsConfig


class Alerter:
    def __init__(
        self,
        settings: AlertsConfig,
        urls: Sequence[str],
        state_dir: Path,
        *,
        host: str | None = None,
        send_timeout_s: float = alertsend.SEND_TIMEOUT_S,
    ) -> None:
        self.settings, self.urls = settings, list(urls)
        self.state_dir = Path(state_dir)
        self.host = host or socket.gethostname()
        self.send_timeout_s = send_timeout_s
        self._lock = threading.Lock()
        self.memory = alertstate.load_memory(self.state_dir)

    def reconfigure(self, settings: AlertsConfig, urls: Sequence[str]) -> None:
        with self._lock:
            self.settings, self.urls = settings, list(urls)

    def on_verdict(
        self,
        state: str,
        problems: Sequence[tuple[str, str]],
        checks: Sequence[tuple[str, str, str]] = (),
        now: datetime | None = None,
        *,
        status_body: str = "",
    ) -> Notification | None:
        """Decide, send, remember; then the status ping (success below ``min_state``, else
        ``/fail`` with ``status_body``). Returns the notification sent (or tried), else None."""
        now = now or datetime.now(UTC)
        try:
            with self._lock:
                note, memory = alertstate.decide(self.memory, state, problems, now,
                                                 self.settings, checks=checks, host=self.host)
                self._deliver(note, memory)
                ping = self.settings.status_ping_url
                healthy = alertstate.rank(state) < alertstate.rank(self.settings.min_state)
        except Exception as exc:  # never let alerting break a check
            logger.opt(exception=exc).error(f"alerts: verdict {state} not handled: {exc}")
            return None
        if ping:
            alertsend.status_ping(ping, healthy, status_body)
        return note

    def on_run(
        self, job: str, result: str, message: str = "", now: datetime | None = None
    ) -> Notification | None:
        """A finished run or drill: a failure/refusal once per change, one note on recovery."""
        now = now or datetime.now(UTC)
        try:
            with self._lock:
                note, memory = alertstate.run_event(self.memory, job, result, message, now,
                                                    host=self.host)
                self._deliver(note, memory)
        except Exception as exc:
            logger.opt(exception=exc).bind(job=job).error(f"alerts: run {result} not handled")
            return None
        return note

    def _deliver(self, note: Notification | None, memory: Memory) -> None:
        """Send ``note`` (if any), log it, and keep ``memory`` unless every URL failed."""
        if note is not None:
            result = alertsend.send(note, self.urls, self.send_timeout_s) if self.urls \
                else SendResult(0, 0)
            journal(note, result)
            if result.total and not result.sent:
                return  # nobody was told: the next verdict or run tries again
        if memory != self.memory:
            try:
                alertstate.save_memory(self.state_dir, memory)
            except OSError as exc:  # keep going in memory; a restart may repeat one message
                logger.warning(f"alerts: cannot save {alertstate.memory_path(self.state_dir)}: "
                               f"{exc}")
            self.memory = memory


def journal(note: Notification, result: SendResult) -> None:
    """One line per notification: ALERT_STATE, ALERT_PREVIOUS, ALERT_SENT=n/m (JOB for runs).
    The title only (send() logged each failure with its redacted URL): never a URL."""
    text = f"alert {note.kind}: {note.title} (sent to {result.label})"
    bad = note.state not in (OK, alertstate.SUCCESS.upper(), "TEST")
    level = "ERROR" if result.total and not result.sent else (
        "WARNING" if bad or result.failures else "INFO")
    logger.bind(alert_state=note.state, alert_previous=note.previous,
                alert_sent=result.label, job=note.job or None).log(level, text)
