"""Alerts that reach a person: ``Alerter`` puts the rules (alerts.rules: when to tell, and the
memory in ``state_dir/alerts.json``) and the transport (alerts.send: apprise, redaction, the status
ping) together. record.sinks feeds it every finished run and every health verdict, the same way
for the daemon, `run-once`, `drill` and `status`.

One memory for every process: each decision reads ``alerts.json`` under an exclusive lock
(``alerts.lock`` beside it), sends, and writes the memory back before the lock is released. So a
failure that `run-once` reported is not reported again by the daemon, and the recovery is told
once, whoever sees it first. A thread lock orders this process's own threads (a verdict check and
a finishing run). No method raises or waits longer than ``send_timeout_s`` (+ 3 s for the status
ping) beyond the lock.

Each notification sent is one log line with journald fields ALERT_STATE, ALERT_PREVIOUS,
ALERT_SENT=n/m (and JOB for a run event); a URL is never in it. When every URL fails, the memory
is not advanced, so the next verdict (or run) tries the same notification again. With no URLs at
all (only a status ping) the decisions are still made, logged with ALERT_SENT=0/0 and remembered.

Nothing here reads the config: the settings come in as anything with ``min_state``,
``remind_every_s`` and ``status_ping_url`` (config.AlertsConfig).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from loguru import logger

from supervisor.alerts import rules as alertstate
from supervisor.alerts import send as alertsend
from supervisor.alerts.rules import Memory, Notification
from supervisor.alerts.send import SendResult
from supervisor.core.states import OK, SUCCESS, rank

LOCK_FILE = "alerts.lock"


class Settings(Protocol):
    @property
    def min_state(self) -> str: ...

    @property
    def remind_every_s(self) -> float: ...

    @property
    def status_ping_url(self) -> str: ...


class Alerter:
    def __init__(
        self,
        settings: Settings,
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
        # The last decision could not be saved (a full or read-only state_dir): the file is
        # older than what this process knows, so it is not read back over it. Else every check
        # would tell the same problem again.
        self._unsaved = False

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        """This process's threads, then every process with this state_dir, one at a time; the
        memory as the last of them left it. Without a writable state_dir: this process only."""
        with self._lock:
            fd = self._open_lock()
            if fd is None:
                yield
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not self._unsaved:
                    self.memory = alertstate.load_memory(self.state_dir)
                yield
            finally:
                os.close(fd)

    def can_share(self) -> bool:
        """May this process take the memory's lock (and so share it with the daemon)?"""
        fd = self._open_lock()
        if fd is not None:
            os.close(fd)
        return fd is not None

    def _open_lock(self) -> int | None:
        """The lock file beside the memory, or None where this user may not open it."""
        try:
            return os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                           0o600)
        except OSError:
            return None

    def reconfigure(self, settings: Settings, urls: Sequence[str]) -> None:
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
            with self._shared():
                note, memory = alertstate.decide(self.memory, state, problems, now,
                                                 self.settings, checks=checks, host=self.host)
                self._deliver(note, memory)
                ping = self.settings.status_ping_url
                healthy = rank(state) < rank(self.settings.min_state)
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
            with self._shared():
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
                self._unsaved = False
            except OSError as exc:  # keep going in memory; a restart may repeat one message
                logger.warning(f"alerts: cannot save {alertstate.memory_path(self.state_dir)}: "
                               f"{exc}")
                self._unsaved = True
            self.memory = memory


def journal(note: Notification, result: SendResult) -> None:
    """One line per notification: ALERT_STATE, ALERT_PREVIOUS, ALERT_SENT=n/m (JOB for runs).
    The title only (send() logged each failure with its redacted URL): never a URL."""
    text = f"alert {note.kind}: {note.title} (sent to {result.label})"
    bad = note.state not in (OK, SUCCESS.upper(), "TEST")
    level = "ERROR" if result.total and not result.sent else (
        "WARNING" if bad or result.failures else "INFO")
    logger.bind(alert_state=note.state, alert_previous=note.previous,
                alert_sent=result.label, job=note.job or None).log(level, text)
