"""The real `ardua-backup` CLI and service in subprocesses, as an operator and systemd run them."""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from loguru import logger

from tests.harness import dockerd
from tests.harness.files import settle

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `python -m supervisor` runs there


@pytest.fixture(autouse=True)
def _detach_cli_logging() -> Iterator[None]:
    """Autouse where imported, for tests that call cli.main() in-process."""
    # cli.main() points loguru at the sys.stderr of the moment: pytest's capture, closed later.
    yield
    logger.remove()


def run_cli(
    *args: str, config: Path | None = None, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "supervisor"]
    if config is not None:
        command += ["--config", str(config)]
    full_env = {**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST, **(env or {})}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, env=full_env,
        cwd=ROOT,
    )


LA = ZoneInfo("America/Los_Angeles")  # write_config's timezone


def next_fire_shown(status: str, job: str, tz: ZoneInfo = LA) -> str:
    """A job's next fire as the daemon's STATUS= shows it (`next 12-06 12:00Z`: UTC), in the
    config's zone as cron reads it: `12-06 04:00`. "" when STATUS names no next fire."""
    found = re.search(rf"{re.escape(job)}: [^;]*?, next (\d\d-\d\d \d\d:\d\d)Z", status)
    if not found:
        return ""
    year = datetime.now(UTC).year  # STATUS shows no year; the zone's offset depends on the date
    shown = datetime.strptime(f"{year}-{found[1]}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return shown.astimezone(tz).strftime("%m-%d %H:%M")


class Notifications:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.seen: list[dict[str, str]] = []
        self.times: list[float] = []  # time.monotonic() each of `seen` arrived at

    def expect(self, key: str, value: str | None = None, timeout: float = 10) -> dict[str, str]:
        """The next message (after those already consumed) that carries key[=value]."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536).decode("utf-8")
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in data.split("\n"))
            self.seen.append(msg)
            self.times.append(time.monotonic())
            if key in msg and (value is None or msg[key] == value):
                return msg
        raise AssertionError(f"no {key}={value} within {timeout}s; got {self.seen[-5:]}")

    def gaps(self, key: str) -> list[float]:
        """Seconds between consecutive messages carrying `key` (WATCHDOG: systemd's deadline)."""
        at = [t for msg, t in zip(self.seen, self.times, strict=True) if key in msg]
        return [b - a for a, b in itertools.pairwise(at)]

    def status_until(self, ready: Callable[[str], bool], timeout: float) -> str:
        """The next STATUS= that `ready` accepts, within `timeout` seconds in all: the daemon
        sends a STATUS on every change, so a per-message deadline alone could wait for ever."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no wanted STATUS within {timeout}s; got {self.seen[-5:]}")
            status = self.expect("STATUS", timeout=left)["STATUS"]
            if ready(status):
                return status


@contextmanager
def service(
    config: Path, tmp_path: Path, **env: str
) -> Iterator[tuple[subprocess.Popen, Notifications]]:
    """`ardua-backup run` as systemd starts it: NOTIFY_SOCKET owned by the test, stderr to
    tmp_path/daemon.log; killed afterwards if the test did not stop it."""
    notify = Notifications(tmp_path / "notify.sock")
    full_env = {**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST,
                "NOTIFY_SOCKET": str(notify.sock.getsockname()), **env}
    full_env.pop("JOURNAL_STREAM", None)
    with open(tmp_path / "daemon.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--config", str(config), "run"],
            env=full_env, stderr=log, cwd=ROOT,
        )
    try:
        yield proc, notify
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.sock.close()


def minutely_receipts_config(write_config, tmp_path: Path, server, bucket: str, **more) -> Path:
    """A config for daemon tests: one settled receipt `r1.pdf` ("receipt one"), receipts-upload
    every minute (so at start-up catch-up runs it at once, no waiting for the clock) and
    db-upload never."""
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r1.pdf").write_bytes(b"receipt one")
    settle(receipts)
    return write_config(tmp_path, server, bucket, receipts_dir=receipts, **more,
                        jobs={"receipts-upload": {"schedule": "* * * * *"},
                              "db-upload": {"schedule": "0 0 1 1 *", "catch_up": False}})
