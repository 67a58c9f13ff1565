"""The daemon's health reads: the `status` verdict read again every alerts.check_every and after
every run, for STATUS=, the metrics and the alerts (record.sinks).

Each read re-reads the real signals (a listing container, S3) on a thread of its own: neither the
scheduler loop nor a finishing run waits for it. One read at a time, in order (the alerts must
never see an older verdict after a newer one); a request while one runs makes it read once more
when done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from loguru import logger

from supervisor.config.load import Config
from supervisor.health.verdict import Verdict
from supervisor.record.sinks import Sinks

Check = Callable[[Config], Verdict]


class HealthReads:
    def __init__(self, check: Check | None, current: Callable[[], tuple[Config, Sinks]],
                 changed: Callable[[], None]) -> None:
        """`current`: the config and sinks in force when a read starts; `changed`: called after
        each read (the daemon sends STATUS=)."""
        self.check, self.current, self.changed = check, current, changed
        self.line = ""  # the last verdict's status line, for STATUS=
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._running = False
        self._again = False

    def request(self) -> None:
        if self.check is None:  # tests that only exercise the scheduler
            return
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
            read = threading.Thread(target=self._until_current, name="health", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [read]
        read.start()

    def join(self, timeout_s: float) -> None:
        """Let a read in progress finish: it has a listing container to remove (a second)."""
        with self._lock:
            reads = list(self._threads)
        for read in reads:
            read.join(timeout_s)

    def _until_current(self) -> None:
        while True:
            self._read()
            with self._lock:
                if not self._again:
                    self._running = False
                    return
                self._again = False

    def _read(self) -> None:
        config, sinks = self.current()
        assert self.check is not None
        try:
            verdict = self.check(config)
        except Exception as exc:
            self.line = f"UNKNOWN: health check failed: {exc}"
        else:
            line = verdict.status_line()
            if line.split(":", 1)[0] != self.line.split(":", 1)[0]:
                logger.info("health: {}", line)  # on a change of state only
            self.line = line
            sinks.verdict(verdict)
        self.changed()
