"""The daemon's "a container of JOB is still running, skip this run" check is scoped to the
job's destination: a sync writing to its s3://BUCKET/PREFIX/ (label ardua-backup.target) makes
it skip, whoever started it and whatever its job label; another installation's `receipts-upload`
on the same engine, writing elsewhere, does not. Everything else is per installation (label
ardua-backup.instance, from its state_dir): two daemons with their own configs on one engine never
count, reap nor stop each other's containers of a job of the same name. Real containers on the
shared test engine (host networking), the real DockerContainers, the daemon's loop with a
stand-in run."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from supervisor.config import load as config_module
from supervisor.containers import engine as docker_runner
from supervisor.containers.jobs import JobContainers, instance_of
from supervisor.daemon.loop import Daemon
from supervisor.daemon.notify import Notifier
from supervisor.daemon.service import DockerContainers
from tests.harness.fakedaemon import FakeClock, Runner, log_lines_fixture, tick_at  # noqa: F401
from tests.harness.owners import SERVER, end, owner_process

pytestmark = pytest.mark.docker
JOB = "receipts-upload"  # the name every installation gives it


@pytest.fixture
def sync_container(docker_client: docker.DockerClient,
                   rclone_image: str) -> Iterator[object]:
    """Starts a long-running container labelled as a sync of `job` to `target`."""
    made: list = []

    def start(job: str, target: str) -> None:
        made.append(docker_client.containers.run(
            rclone_image, SERVER, detach=True,
            network_mode="host", labels={docker_runner.LABEL_JOB: job,
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


def write_config(directory: Path, bucket: str, job: str) -> Path:
    """One installation: its own state_dir and bucket, and the dump job every one has."""
    directory.mkdir()
    path = directory / "config.toml"
    path.write_text(f"""
timezone = "UTC"
state_dir = "{directory / 'state'}"
[s3]
bucket = "{bucket}"
[jobs.{job}]
schedule = "* * * * *"
source = "volume:pg_backups"
prefix = "postgres"
[jobs.receipts-upload]
schedule = "0 0 1 1 *"
source = "/data/receipts"
prefix = "receipts"
catch_up = false
""")
    return path


def test_two_installations_never_block_reap_nor_stop_each_other(
        tmp_path: Path, docker_client: docker.DockerClient, rclone_image: str,
        log_lines: list[str]) -> None:
    """Daemon A's dump job's sync runs (its owner alive: this process); a run of A's killed
    between create and start left a container of the job behind. Daemon B, another config on
    the same engine with its own job of that name: runs its job on time, reaps and stops nothing of
    A's. A itself skips its run while its sync runs, stops it at shutdown and reaps its own."""
    bucket = f"ardua-test-{secrets.token_hex(6)}"  # no other session writes there
    # `db-upload` in both configs, made unique to this test: the engine is shared with other
    # sessions, and their runs of a plain `db-upload` (any version before the installation
    # label) would reap A's leftover themselves.
    job = f"db-upload-{secrets.token_hex(4)}"
    path_a = write_config(tmp_path / "a", f"{bucket}-a", job)
    path_b = write_config(tmp_path / "b", bucket, job)
    config_a, config_b = config_module.load(path_a), config_module.load(path_b)
    assert instance_of(config_a) != instance_of(config_b)
    run_a = JobContainers(config_a, config_a.jobs[job], "a-run", docker_client)
    sync = docker_runner.Spec(image=rclone_image, command=SERVER, mounts=[], env={},
                              labels=run_a.labels("sync"), network_mode="host")
    killed_owner = None
    try:
        with docker_runner.service(docker_client, sync) as a_sync:
            # The killed run's container: A's labels, its owner gone before the start.
            killed_owner, killed = owner_process(rclone_image, job, "created",
                                                 instance_of(config_a))
            end(killed_owner)

            t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
            daemons = {}
            for name, path in (("a", path_a), ("b", path_b)):
                clock = FakeClock(t0)
                runner = Runner(clock)
                containers = DockerContainers()
                daemon = Daemon(path, runner, containers, lambda c: None, clock=clock,
                                notifier=Notifier({}))
                daemon.start()
                tick_at(daemon, clock, t0 + timedelta(minutes=1))
                daemons[name] = (runner, containers)

            runner_b, containers_b = daemons["b"]
            assert not containers_b.running(config_b, job)
            assert [name for name, _ in runner_b.calls] == [job]
            runner_a, containers_a = daemons["a"]
            assert containers_a.running(config_a, job)
            assert runner_a.calls == []
            assert sum(f"a container of {job} is still running" in line
                       for line in log_lines) == 1

            # B's run reaps (run_job's call), B's daemon stops at shutdown: nothing of A's.
            assert docker_runner.reap_orphans(docker_client, job,
                                              instance=instance_of(config_b), running=True) == 0
            containers_b.stop(config_b, job, 5)
            assert docker_client.containers.get(killed).status == "created"
            a_sync.reload()
            assert a_sync.status == "running"

            # A's own: stopped at its shutdown, its leftover reaped by its next run.
            containers_a.stop(config_a, job, 5)
            a_sync.reload()
            assert a_sync.status == "exited"
            assert docker_runner.reap_orphans(docker_client, job,
                                              instance=instance_of(config_a)) == 1
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(killed)
    finally:
        if killed_owner is not None:
            end(killed_owner)
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(killed).remove(force=True)
