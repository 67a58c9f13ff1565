"""The daemon's "a container of JOB is still running, skip this run" check is scoped to the
job's destination: a sync writing to its s3://BUCKET/PREFIX/ (label ardua-backup.target) makes
it skip, whoever started it and whatever its job label; another installation's `receipts-upload`
on the same engine, writing elsewhere, does not. Real containers on the shared test engine, the
real DockerContainers, the daemon's loop with a stand-in run."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from supervisor.containers import engine as docker_runner
from supervisor.daemon.loop import Daemon
from supervisor.daemon.notify import Notifier
from supervisor.daemon.service import DockerContainers
from tests.harness.fakedaemon import FakeClock, Runner, log_lines_fixture, tick_at  # noqa: F401

pytestmark = pytest.mark.docker
JOB = "receipts-upload"  # the name every installation gives it


@pytest.fixture
def sync_container(docker_client: docker.DockerClient,
                   rclone_image: str) -> Iterator[object]:
    """Starts a long-running container labelled as a sync of `job` to `target`."""
    made: list = []

    def start(job: str, target: str) -> None:
        made.append(docker_client.containers.run(
            rclone_image, ["rcd", "--rc-no-auth", "--rc-addr", "127.0.0.1:5572"], detach=True,
            network_mode="none", labels={docker_runner.LABEL_JOB: job,
                                         docker_runner.LABEL_STEP: "sync",
                                         docker_runner.LABEL_TARGET: target}))

    yield start
    for c in made:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def test_daemon_skips_only_for_a_sync_to_its_own_destination(
        tmp_path: Path, sync_container, log_lines: list[str]) -> None:
    bucket = f"ardua-test-{secrets.token_hex(6)}"  # no other session writes there
    path = tmp_path / "config.toml"
    path.write_text(f"""
timezone = "America/Los_Angeles"
state_dir = "{tmp_path / 'state'}"
[s3]
bucket = "{bucket}"
[jobs.db-upload]
schedule = "0 0 1 1 *"
source = "volume:pg_backups"
prefix = "postgres"
catch_up = false
[jobs.{JOB}]
schedule = "* * * * *"
source = "/data/receipts"
prefix = "receipts"
""")
    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    clock = FakeClock(t0)
    runner = Runner(clock)
    daemon = Daemon(path, runner, DockerContainers(), lambda c: None, clock=clock,
                    notifier=Notifier({}))
    daemon.start()

    # Another installation's job of the same name, syncing its own prefix.
    sync_container(JOB, f"s3://other-{bucket}/receipts/")
    tick_at(daemon, clock, t0 + timedelta(minutes=1))
    assert [job for job, _ in runner.calls] == [JOB]
    assert not any("still running (left by" in line for line in log_lines)

    # Any sync of our prefix, whatever started it and under whatever job name.
    sync_container("uploads-of-another-install", f"s3://{bucket}/receipts/")
    tick_at(daemon, clock, t0 + timedelta(minutes=2))
    assert [job for job, _ in runner.calls] == [JOB]
    assert any(f"a container of {JOB} is still running (left by an earlier process?)" in line
               for line in log_lines)
