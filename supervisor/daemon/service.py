"""`ardua-backup run` as systemd runs it: the daemon (daemon.loop) with the real pipeline, the
real drill, Docker through its socket, S3, and status's signals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker

from supervisor.config import load as config_module
from supervisor.config.load import Config
from supervisor.containers import engine as docker_runner
from supervisor.containers.jobs import instance_of
from supervisor.core.retry import retrying
from supervisor.daemon.loop import Daemon, run_service
from supervisor.health import gather
from supervisor.record import journal as logs
from supervisor.record.report import Report
from supervisor.restore import drill
from supervisor.storage import s3
from supervisor.upload import run as pipeline
from supervisor.verify import run as verify


class DockerContainers:
    """Containers via the Docker socket; the client is created on first use and kept."""

    def __init__(self) -> None:
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            self._client = retrying(docker.from_env, "connect to Docker")
        return self._client

    def running(self, config: Config, job: str) -> bool:
        """Is a container at work that a run of `job` must not overlap? For an upload, a sync to
        its destination (the writer label LABEL_TARGET), whoever started it: two syncs of one
        prefix must never overlap, while another installation's job of the same name on this
        engine writes elsewhere. The drill writes to no prefix: its job label, this
        installation's containers only (LABEL_INSTANCE)."""
        upload = config.jobs.get(job)
        if upload is None:
            return bool(docker_runner.job_containers(self.client(), job,
                                                     instance=instance_of(config)))
        destination = config.destination().url(upload.prefix)
        return bool(docker_runner.target_containers(self.client(), destination))

    def stop(self, config: Config, job: str, timeout_s: float) -> None:
        docker_runner.stop_own_containers(self.client(), job, timeout_s,
                                          instance=instance_of(config))


def main(config_path: Path) -> int:
    """`ardua-backup run [--config PATH]` with the real pipeline, Docker and S3."""
    logs.setup()
    containers = DockerContainers()

    def preflight(config: Config) -> None:
        retrying(lambda: docker_runner.ping(containers.client()), "Docker ping")
        # One prefix of ours: a least-privilege key may list nothing else (doctor --iam-policy).
        prefix = next(iter(config.jobs.values())).prefix
        retrying(lambda: s3.preflight(config.destination(), prefix), "S3 preflight")

    # The pipeline makes its own Docker client per run, so a Docker outage is its clear failure.
    def run(config: Config, name: str, *, run_id: str) -> Report:
        if name == config_module.DRILL_JOB:
            return drill.run_drill(config, run_id=run_id)
        if name == config_module.VERIFY_JOB:
            return verify.run_verify(config, run_id=run_id)
        return pipeline.run_job(config, name, run_id=run_id)

    daemon = Daemon(config_path, run, containers, preflight, check_health=gather.evaluate_status)
    return run_service(daemon)
