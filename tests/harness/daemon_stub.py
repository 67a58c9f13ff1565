"""The real daemon service (signals, loop, sd_notify, ledger) with stand-in runs and containers.

Test helper, run as a subprocess: `python tests/harness/daemon_stub.py CONFIG CTL_DIR`. A stand-in
run writes CTL_DIR/started-<job>, then blocks until CTL_DIR/release-<job> exists or its "container"
is stopped. CTL_DIR/container-<job> makes the job's container count as running (left by a
predecessor).
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from supervisor.config.load import Config
from supervisor.daemon.loop import Daemon, run_service
from supervisor.record import journal as logs
from supervisor.record.report import RunReport


class StubContainers:
    def __init__(self, ctl: Path) -> None:
        self.ctl = ctl
        self.stopped: dict[str, threading.Event] = {}

    def running(self, config: Config, job: str) -> bool:
        return (self.ctl / f"container-{job}").exists()

    def stop(self, config: Config, job: str, timeout_s: float) -> None:
        (self.ctl / f"stopped-{job}").touch()
        self.stopped.setdefault(job, threading.Event()).set()


def main() -> int:
    config_path, ctl = Path(sys.argv[1]), Path(sys.argv[2])
    containers = StubContainers(ctl)

    def run_job(config: Config, job: str, *, run_id: str) -> RunReport:
        start = datetime.now(UTC)
        (ctl / f"started-{job}").write_text(run_id)
        stopped = containers.stopped.setdefault(job, threading.Event())
        while not (ctl / f"release-{job}").exists() and not stopped.wait(0.02):
            pass
        end = datetime.now(UTC)
        result, code = ("failed", 2) if stopped.is_set() else ("success", 0)
        return RunReport(job, run_id, result, code, start, end, (end - start).total_seconds())

    logs.setup(journal=False)
    daemon = Daemon(config_path, run_job, containers, lambda config: None)
    return run_service(daemon)


if __name__ == "__main__":
    sys.exit(main())
