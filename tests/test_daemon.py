"""The daemon: firing under an injected clock (DST), catch-up, no overlap, reload, and the real
service as a subprocess driven by signals and observed through sd_notify."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from supervisor.config.load import Config
from supervisor.core.retry import is_transient
from supervisor.daemon.loop import Daemon
from supervisor.daemon.notify import Notifier
from supervisor.record.ledger import Ledger
from supervisor.record.report import RunReport
from tests.harness.cli import Notifications, next_fire_shown
from tests.harness.fakedaemon import FakeClock, Runner, log_lines_fixture, tick_at  # noqa: F401
from tests.harness.poll import poll

LA = ZoneInfo("America/Los_Angeles")
ROOT = Path(__file__).resolve().parents[1]


def config_text(
    state_dir: Path, db: str, receipts: str = "0 0 1 1 *", catch_up: bool = True
) -> str:
    return f"""
timezone = "America/Los_Angeles"
state_dir = "{state_dir}"
stop_grace = "0.5s"
[s3]
bucket = "ardua-test"
[jobs.db-upload]
schedule = "{db}"
source = "volume:pg_backups"
prefix = "postgres"
catch_up = {str(catch_up).lower()}
[jobs.receipts-upload]
schedule = "{receipts}"
source = "/data/receipts"
prefix = "receipts"
"""


def wait_for(check: Callable[[], object], what: str) -> object:
    return poll(check, what, timeout=10, interval=0.01)  # the clock is fake: runs are quick


@dataclass
class FakeContainers:
    orphans: set[str] = field(default_factory=set)

    def running(self, config: Config, job: str) -> bool:
        return job in self.orphans

    def stop(self, config: Config, job: str, timeout_s: float) -> None:
        self.orphans.discard(job)


def make_daemon(tmp_path: Path, start: datetime, text: str) -> tuple[Daemon, Runner, FakeClock]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    clock = FakeClock(start)
    runner = Runner(clock)
    daemon = Daemon(
        path, runner, FakeContainers(), lambda c: None, clock=clock, notifier=Notifier({})
    )
    return daemon, runner, clock


def test_hourly_job_fires_in_both_fall_back_hours(tmp_path: Path) -> None:
    start = datetime(2026, 11, 1, 0, 30, tzinfo=LA)
    daemon, runner, clock = make_daemon(tmp_path, start, config_text(tmp_path, "0 * * * *"))
    daemon.start()
    utc_first_1am = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # 01:00 PDT
    for minutes in [0, 20, 40, 60, 80, 120]:  # through 01:00 PDT, 01:00 PST, 02:00 PST
        tick_at(daemon, clock, utc_first_1am + timedelta(minutes=minutes, seconds=1))
    fired = [t.astimezone(LA).strftime("%H:%M%z") for _, t in runner.calls]
    assert fired == ["01:00-0700", "01:00-0800", "02:00-0800"]
    assert [r.result for r in daemon.ledger.history("db-upload")] == ["success"] * 3


def test_daily_job_on_spring_forward_fires_once_at_three(tmp_path: Path) -> None:
    start = datetime(2026, 3, 8, 1, 0, tzinfo=LA)
    daemon, runner, clock = make_daemon(tmp_path, start, config_text(tmp_path, "30 2 * * *"))
    daemon.start()
    pst_1_59 = datetime(2026, 3, 8, 9, 59, tzinfo=UTC)
    for minutes in [0, 1, 2, 30, 31, 90]:  # 01:59 PST, 03:00 PDT, ..., 04:29 PDT
        tick_at(daemon, clock, pst_1_59 + timedelta(minutes=minutes, seconds=1))
    assert [t.astimezone(LA).isoformat() for _, t in runner.calls] == ["2026-03-08T03:00:01-07:00"]


def test_catch_up_runs_once_after_downtime(tmp_path: Path, log_lines: list[str]) -> None:
    now = datetime(2026, 5, 4, 12, 5, tzinfo=UTC)
    daemon, runner, clock = make_daemon(tmp_path, now, config_text(tmp_path, "15 * * * *"))
    Ledger(tmp_path).finish(
        RunReport(
            "db-upload", "old", "success", 0, now - timedelta(days=3), now - timedelta(days=3), 1.0
        )
    )
    daemon.start()
    tick_at(daemon, clock, now)
    assert runner.calls == [("db-upload", now)]  # 72 missed fires, one run
    assert any("catching up" in line for line in log_lines)
    tick_at(daemon, clock, now + timedelta(minutes=5))
    assert len(runner.calls) == 1


def test_no_catch_up_when_disabled(tmp_path: Path) -> None:
    now = datetime(2026, 5, 4, 12, 5, tzinfo=UTC)
    text = config_text(tmp_path, "15 * * * *", catch_up=False)
    daemon, runner, clock = make_daemon(tmp_path, now, text)
    Ledger(tmp_path).finish(
        RunReport(
            "db-upload", "old", "success", 0, now - timedelta(days=3), now - timedelta(days=3), 1.0
        )
    )
    daemon.start()
    tick_at(daemon, clock, now)
    assert runner.calls == []


def test_deferred_run_retries_after_the_quiet_period(tmp_path: Path) -> None:
    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    daemon, runner, clock = make_daemon(tmp_path, t0, config_text(tmp_path, "15 * * * *"))
    runner.results.append("deferred")  # the dump was still being written
    daemon.start()
    tick_at(daemon, clock, t0 + timedelta(minutes=15))
    retry = daemon._jobs["db-upload"].retry_at
    assert retry == t0 + timedelta(minutes=15, seconds=daemon.config.guard.quiet_period_s)
    assert daemon.next_wake() == retry
    tick_at(daemon, clock, retry - timedelta(seconds=1))
    assert len(runner.calls) == 1
    tick_at(daemon, clock, retry)
    assert [when for _, when in runner.calls] == [t0 + timedelta(minutes=15), retry]
    assert daemon._jobs["db-upload"].retry_at is None


def test_overlap_refused_while_running(tmp_path: Path, log_lines: list[str]) -> None:
    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    daemon, runner, clock = make_daemon(tmp_path, t0, config_text(tmp_path, "* * * * *"))
    daemon.start()
    runner.gate.clear()
    clock.t = t0 + timedelta(minutes=1)
    daemon.tick()
    wait_for(lambda: runner.calls, "first run")
    clock.t = t0 + timedelta(minutes=2)
    daemon.tick()
    assert len(runner.calls) == 1
    assert any("still running: skipping" in line for line in log_lines)
    assert "db-upload: running since" in daemon.status()
    runner.gate.set()
    daemon._jobs["db-upload"].worker.join(5)  # type: ignore[union-attr]
    tick_at(daemon, clock, t0 + timedelta(minutes=3))
    assert len(runner.calls) == 2


def test_container_left_by_predecessor_blocks_start(tmp_path: Path, log_lines: list[str]) -> None:
    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    daemon, runner, clock = make_daemon(tmp_path, t0, config_text(tmp_path, "* * * * *"))
    daemon.containers = FakeContainers({"db-upload"})
    daemon.start()
    tick_at(daemon, clock, t0 + timedelta(minutes=1))
    assert runner.calls == []
    assert any("still running (left by an earlier process?)" in line for line in log_lines)


def test_reload_invalid_keeps_schedule_valid_applies_at_once(tmp_path: Path) -> None:
    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    daemon, runner, clock = make_daemon(tmp_path, t0, config_text(tmp_path, "0 3 * * *"))
    daemon.start()
    daemon.config_path.write_text(config_text(tmp_path, "0 3 * * * *"))  # 6 fields: invalid
    daemon.request_reload()
    tick_at(daemon, clock, t0)
    assert daemon.status().startswith("reload failed, previous schedule kept:")
    assert daemon.config.jobs["db-upload"].schedule == "0 3 * * *"
    daemon.config_path.write_text(config_text(tmp_path, "*/5 * * * *"))
    daemon.request_reload()
    tick_at(daemon, clock, t0 + timedelta(seconds=30))
    assert "reload failed" not in daemon.status()
    assert daemon.next_wake() == t0 + timedelta(minutes=5)
    tick_at(daemon, clock, t0 + timedelta(minutes=5))
    assert runner.calls == [("db-upload", t0 + timedelta(minutes=5))]


def test_reload_never_dies_on_an_unexpected_error(tmp_path: Path, log_lines: list[str]) -> None:
    """ConfigError is the validation's answer; anything else escaping a reload (a bug there)
    still keeps the running schedule instead of killing the service."""
    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)  # 05:00 in Los Angeles
    daemon, runner, clock = make_daemon(tmp_path, t0, config_text(tmp_path, "0 3 * * *"))
    daemon.start()

    def broken(path: Path) -> Config:
        raise TypeError("a validation bug")

    daemon.load = broken
    daemon.request_reload()
    tick_at(daemon, clock, t0)
    status = daemon.status()
    assert status.startswith("reload failed, previous schedule kept: ")
    assert "TypeError: a validation bug" in status
    assert any("TypeError: a validation bug" in line for line in log_lines)
    fire = datetime(2026, 5, 5, 10, 0, tzinfo=UTC)  # 03:00 PDT: the old schedule still runs
    assert daemon.next_wake() == fire
    tick_at(daemon, clock, fire)
    assert runner.calls == [("db-upload", fire)]


def test_transient_classification() -> None:
    import requests
    from docker.errors import APIError

    def api_error(status: int) -> APIError:
        response = requests.Response()
        response.status_code = status
        return APIError("x", response=response)

    assert is_transient(requests.exceptions.ConnectionError())
    assert is_transient(api_error(503))
    assert not is_transient(api_error(401))
    assert not is_transient(ValueError("NoSuchBucket"))
    assert is_transient(type("S3Error", (Exception,), {"transient": True})())


# -- the real service in a subprocess ---------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], Notifications]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(config: Path, ctl: Path) -> tuple[subprocess.Popen[str], Notifications]:
        notify = Notifications(tmp_path / f"notify-{len(procs)}.sock")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NOTIFY_SOCKET": str(notify.sock.getsockname()),
            "WATCHDOG_USEC": "400000",
        }
        env.pop("JOURNAL_STREAM", None)
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "harness" / "daemon_stub.py"), str(config),
             str(ctl)],
            env=env,
            stderr=open(tmp_path / f"stderr-{len(procs)}.log", "w"),  # noqa: SIM115
            text=True,
        )
        procs.append(proc)
        return proc, notify

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_service_notify_reload_and_sigterm_mid_run(tmp_path: Path, service) -> None:  # type: ignore[no-untyped-def]
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path, "0 0 1 1 *", receipts="0 0 1 1 *"))
    long_ago = datetime.now(UTC) - timedelta(days=800)  # a yearly run was missed: catch-up
    Ledger(tmp_path).finish(RunReport("db-upload", "old", "success", 0, long_ago, long_ago, 1.0))
    proc, notify = service(config, ctl)

    ready = notify.expect("READY", "1")
    assert "db-upload:" in ready["STATUS"] and "receipts-upload: never run" in ready["STATUS"]
    notify.expect("WATCHDOG", "1")
    wait_for(lambda: (ctl / "started-db-upload").exists(), "catch-up run")
    assert "db-upload: running since" in notify.expect("STATUS")["STATUS"]

    config.write_text("not toml [")
    proc.send_signal(signal.SIGHUP)
    notify.expect("RELOADING", "1")
    status = notify.expect("READY", "1")["STATUS"]
    assert (
        status.startswith("reload failed, previous schedule kept:") and "not valid TOML" in status
    )

    config.write_text(config_text(tmp_path, "0 0 1 1 *", receipts="0 4 * * *"))
    proc.send_signal(signal.SIGHUP)
    notify.expect("RELOADING", "1")
    status = notify.expect("READY", "1")["STATUS"]
    assert "reload failed" not in status
    # STATUS= prints UTC with Z: the new 04:00 (config timezone) fire, seen in UTC.
    assert next_fire_shown(status, "receipts-upload").endswith(" 04:00"), status

    proc.send_signal(signal.SIGTERM)  # mid-run: grace 0.5 s, then the container is stopped
    notify.expect("STOPPING", "1")
    assert proc.wait(timeout=15) == 0
    assert (ctl / "stopped-db-upload").exists()
    assert not (ctl / "started-receipts-upload").exists()
    run = Ledger(tmp_path).last_run("db-upload")
    assert run is not None and (run.result, run.exit_code) == ("failed", 2)


def test_service_sigkill_restart_with_container_still_running(tmp_path: Path, service) -> None:  # type: ignore[no-untyped-def]
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path, "0 0 1 1 *"))
    long_ago = datetime.now(UTC) - timedelta(days=800)
    Ledger(tmp_path).finish(RunReport("db-upload", "old", "success", 0, long_ago, long_ago, 1.0))
    proc, notify = service(config, ctl)
    notify.expect("READY", "1")
    run_id = wait_for(
        lambda: (ctl / "started-db-upload").exists() and (ctl / "started-db-upload").read_text(),
        "first run",
    )
    (ctl / "container-db-upload").touch()  # its container outlives the daemon
    proc.kill()
    proc.wait()
    (ctl / "started-db-upload").unlink()

    proc, notify = service(config, ctl)
    notify.expect("READY", "1")
    log = tmp_path / "stderr-1.log"
    wait_for(lambda: "left by an earlier process" in log.read_text(), "refusal logged")
    assert not (ctl / "started-db-upload").exists()
    assert Ledger(tmp_path).get(str(run_id)).result == "interrupted"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_a_crashed_run_is_recorded_and_logged_without_credential_material(
        tmp_path: Path, log_lines: list[str]) -> None:
    """A bug in a run (an exception, not a failed report) closes its ledger row and logs its
    traceback, both through core.redact: an exception's text may carry a presigned URL."""
    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    daemon, _, clock = make_daemon(tmp_path, t0, config_text(tmp_path, "* * * * *"))
    signed = ("http://127.0.0.1:8333/b?list-type=2&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
              "%2F20260504&X-Amz-Signature=0123abcd")

    def crash(config: Config, job: str, *, run_id: str) -> RunReport:
        raise RuntimeError(f"unexpected answer from {signed}")

    daemon.run_job = crash  # type: ignore[method-assign]
    daemon.start()
    tick_at(daemon, clock, t0 + timedelta(minutes=1))
    daemon._jobs["db-upload"].worker.join(5)  # type: ignore[union-attr]
    run = Ledger(tmp_path).last_run("db-upload")  # config_text's state_dir
    assert run is not None and run.result == "failed", run
    assert run.message == "run crashed: unexpected answer from http://127.0.0.1:8333/b?..."
    crashed = [line for line in log_lines if line.startswith("run ") and " crashed: " in line]
    assert crashed and "Traceback" in crashed[0] and "RuntimeError" in crashed[0]
    assert not any("X-Amz" in line or "AKIA" in line for line in log_lines)
