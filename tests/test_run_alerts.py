"""`run-once` and `drill` from a shell report through the daemon's sinks (record.sinks): a failed
run reaches a person once per change and once on recovery, and the alert memory is shared with
every other process of the same state_dir, so the daemon never repeats what a shell run told.
Real apprise posting json:// to an HTTP receiver on 127.0.0.1, a real S3 server, real rclone."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.alerts.alerter import Alerter
from supervisor.config.load import AlertsConfig
from supervisor.core.states import FAILED, SUCCESS
from tests.conftest import write_credentials
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.receiver import receiving

TOKEN = "hook-" + "5e1d0b" * 4  # the secret part of a real notification URL


@pytest.fixture
def receiver() -> Iterator:
    with receiving() as server:
        yield server


def _titles(receiver) -> list[str]:
    return [body["title"] for _, body in receiver.posts]


def _urls_file(tmp_path: Path, port: int) -> Path:
    urls = tmp_path / "alert-urls"
    urls.write_text(f"json://127.0.0.1:{port}/{TOKEN}\n")
    urls.chmod(0o600)
    return urls


@pytest.mark.docker
def test_run_once_with_a_wrong_secret_alerts_once_then_recovers_once(
        receiver, tmp_path, s3server, bucket, write_config) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r1.pdf").write_bytes(b"receipt one")
    settle(receipts)
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts,
                       alerts={"urls_file": str(_urls_file(tmp_path, receiver.server_port))})
    creds = tmp_path / "aws-credentials"
    write_credentials(creds, s3server.access_key, "not-the-secret")

    first = run_cli("run-once", "receipts-upload", config=cfg)
    assert first.returncode == 1, first.stdout + first.stderr
    assert _titles(receiver) == [f"ardua-backup on {socket.gethostname()}: receipts-upload failed"]
    (path, body), = receiver.posts
    assert path == f"/{TOKEN}" and "refused the credentials" in body["message"]
    assert TOKEN not in first.stdout + first.stderr  # the URL's secret is never shown

    again = run_cli("run-once", "receipts-upload", config=cfg)
    assert again.returncode == 1
    assert len(receiver.posts) == 1  # the same failure again: nobody is told twice

    write_credentials(creds, s3server.access_key, s3server.secret_key)
    fixed = run_cli("run-once", "receipts-upload", config=cfg)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert _titles(receiver)[1:] == [
        f"ardua-backup on {socket.gethostname()}: receipts-upload OK (recovered from failed)"]
    assert run_cli("run-once", "receipts-upload", config=cfg).returncode == 0
    assert len(receiver.posts) == 2  # success after success: nothing to tell


def test_two_processes_share_one_alert_memory(receiver, tmp_path) -> None:
    """Two alerters on one state_dir (the daemon's, loaded before `run-once` told anyone, and
    the shell's): each decision reads the memory the other left, under its lock."""
    settings = AlertsConfig()
    url = f"json://127.0.0.1:{receiver.server_port}/{TOKEN}"
    daemon = Alerter(settings, [url], tmp_path, host="h")
    shell = Alerter(settings, [url], tmp_path, host="h")
    assert shell.on_run("db-upload", FAILED, "exit 7") is not None
    assert daemon.on_run("db-upload", FAILED, "exit 7") is None  # already told
    assert daemon.on_run("db-upload", SUCCESS) is not None  # one recovery...
    assert shell.on_run("db-upload", SUCCESS) is None  # ...whoever sees it first
    assert _titles(receiver) == ["ardua-backup on h: db-upload failed",
                                 "ardua-backup on h: db-upload OK (recovered from failed)"]
