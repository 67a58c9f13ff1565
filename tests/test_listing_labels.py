"""A read-only listing is not a writer: a `status` check (which lists the dump volume in an rclone
container) running beside an upload never makes it refuse, nor the daemon skip its run. A real
sync container of the same prefix still does. Real dockerd, rclone, SeaweedFS, CLI and daemon."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from supervisor.config import load as config
from supervisor.containers import engine as docker_runner
from supervisor.daemon.service import DockerContainers
from tests.harness import dockerd
from tests.harness.cli import run_cli, service
from tests.harness.freeze import ListingFreezer, SyncFreezer
from tests.harness.pgtree import make_backups_tree, volume_mountpoint
from tests.harness.poll import poll
from tests.harness.s3server import S3Server

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[1]


def fill_dumps(client: docker.DockerClient, volume: str) -> dict[str, int]:
    """Two settled dumps in postgres-backup-local's layout; returns S3 key -> size expected."""
    now = datetime.now(UTC)
    root = volume_mountpoint(client, volume)
    files = make_backups_tree(root, [(now - timedelta(hours=h), os.urandom(3000 + h))
                                     for h in (27, 3)])
    return {f"postgres/{p.relative_to(root)}": p.stat().st_size for p in files}


def dump_config(write_config, tmp_path: Path, server, bucket: str, volume: str,
                schedule: str = "15 * * * *") -> tuple[Path, str]:
    """A config whose dump job has a name of its own: the test engine is shared with other
    sessions, and their `db-upload` containers would count for the daemon's check of that name.
    Returns (config path, job name)."""
    job = f"db-{secrets.token_hex(4)}"
    cfg = write_config(tmp_path, server, bucket, db_volume=volume, jobs={
        "db-upload": None,
        job: {"schedule": schedule, "source": f"volume:{volume}", "prefix": "postgres"},
        "receipts-upload": {"schedule": "0 0 1 1 *", "catch_up": False},
    }, health={"db_container": "", "dump_job": job})
    return cfg, job


@pytest.fixture
def frozen_status(docker_client, pg_volume) -> Iterator[ListingFreezer]:
    """`ardua-backup status` (a real CLI process) with its listing container of pg_volume frozen
    alive. Yields a function that starts it for a config and returns the freezer once the
    listing is held."""
    freezer = ListingFreezer(docker_client, "status-", pg_volume)
    procs: list[subprocess.Popen] = []

    def start(cfg: Path) -> ListingFreezer:
        def held() -> bool:
            if freezer.attrs:
                return True
            if not procs or procs[-1].poll() is not None:  # finished before it could be held
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "supervisor", "--config", str(cfg), "status"],
                    env={**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST}, cwd=ROOT,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            return False

        poll(held, "a status listing container to be held", timeout=60)
        return freezer

    try:
        yield start  # type: ignore[misc]
    finally:
        freezer.close()
        for proc in procs:
            proc.wait(timeout=60)  # thawed: its listing finishes and status removes it


def assert_reader(attrs: dict, job: str, volume: str) -> None:
    labels = attrs["Config"]["Labels"]
    assert labels[docker_runner.LABEL_JOB] == job  # reaped as the job's leftover if killed
    assert labels[docker_runner.LABEL_STEP] == "list"
    assert labels[docker_runner.LABEL_READS] == f"volume:{volume}"
    assert docker_runner.LABEL_TARGET not in labels


def test_run_once_is_not_refused_while_a_status_listing_runs(
    docker_client, s3server, bucket, pg_volume, write_config, tmp_path, frozen_status
) -> None:
    expected = fill_dumps(docker_client, pg_volume)
    cfg, job = dump_config(write_config, tmp_path, s3server, bucket, pg_volume)
    held = frozen_status(cfg)
    assert_reader(held.attrs, job, pg_volume)
    # The daemon's check (the real Containers implementation) sees no running run of the job.
    assert DockerContainers().running(config.load(cfg), job) is False

    result = run_cli("run-once", job, config=cfg)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    objects = s3server.list_sizes(bucket, "postgres/")
    assert objects.pop("postgres/.last_success")
    assert objects == expected
    # The listing was alive the whole time (frozen), and it is still there.
    assert docker_client.containers.get(held.attrs["Id"]).status == "running"


def test_daemon_runs_its_due_job_while_a_status_listing_runs(
    docker_client, s3server, bucket, pg_volume, write_config, tmp_path, frozen_status
) -> None:
    expected = fill_dumps(docker_client, pg_volume)
    # Every minute: catch-up fires it at start-up.
    cfg, job = dump_config(write_config, tmp_path, s3server, bucket, pg_volume, "* * * * *")
    held = frozen_status(cfg)
    assert_reader(held.attrs, job, pg_volume)
    with service(cfg, tmp_path) as (proc, notify):
        notify.expect("READY", "1", timeout=60)
        notify.status_until(lambda s: f"{job}: success" in s, timeout=120)
        assert docker_client.containers.get(held.attrs["Id"]).status == "running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "still running" not in log, log
    objects = s3server.list_sizes(bucket, "postgres/")
    assert objects.pop("postgres/.last_success")
    assert objects == expected


def test_a_running_sync_still_refuses_a_second_one(docker_client, pg_volume, write_config,
                                                   tmp_path) -> None:
    with S3Server() as server:
        bucket = server.create_bucket("ardua-test-second-sync")
        expected = fill_dumps(docker_client, pg_volume)
        cfg, job = dump_config(write_config, tmp_path, server, bucket, pg_volume)
        freezer = SyncFreezer(docker_client, server)
        try:
            first = subprocess.Popen(
                [sys.executable, "-m", "supervisor", "--config", str(cfg), "run-once", job],
                env={**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST},
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            poll(lambda: freezer.sync_attrs, "the first run's sync to hang", timeout=60)
            server.resume()  # S3 answers again (the preflight); the first rclone stays frozen
            first_run = freezer.sync_attrs["Config"]["Labels"][docker_runner.LABEL_RUN]
            assert DockerContainers().running(config.load(cfg), job) is True

            second = run_cli("run-once", job, config=cfg)

            assert second.returncode == 1, second.stdout + second.stderr
            assert "REFUSED" in second.stdout
            assert (f"a sync to s3://{bucket}/postgres/ is already running (run {first_run})"
                    in second.stdout)
        finally:
            freezer.close()
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
        objects = server.list_sizes(bucket, "postgres/")
        assert objects.pop("postgres/.last_success")
        assert objects == expected
