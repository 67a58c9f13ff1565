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

# Each call of the loop's own client: a hung engine (socket accepts, never answers) held the
# loop 60 s per due job (docker-py's default), past WatchdogSec=60s: systemd killed the daemon.
# The loop pings every 30 s; a container check is at most two calls (API version, list).
DOCKER_CALL_TIMEOUT_S = 10


class DockerContainers:
    """Containers via the Docker socket; the client is created on first use and kept."""

    def __init__(self) -> None:
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            self._client = retrying(lambda: docker.from_env(timeout=DOCKER_CALL_TIMEOUT_S),
                                    "connect to Docker")
        return self._client

    def running(self, config: Config, job: str) -> bool:
        """Is a container at work that a run of `job` must not overlap? For an upload, a sync to
        any of its destinations (the writer label LABEL_TARGET), whoever started it: two syncs
        of one prefix must never overlap, while another installation's job of the same name on
        this engine writes elsewhere. The drill writes to no prefix: its job label, this
        installation's containers only (LABEL_INSTANCE)."""
        upload = config.jobs.get(job)
        if upload is None:
            return bool(docker_runner.job_containers(self.client(), job,
                                                     instance=instance_of(config)))
        return any(docker_runner.target_containers(self.client(), dest.url(upload.prefix))
                   for dest in config.destinations_of(upload))

    def stop(self, config: Config, job: str, timeout_s: float) -> None:
        docker_runner.stop_own_containers(self.client(), job, timeout_s,
                                          instance=instance_of(config))


def main(config_path: Path) -> int:
    """`ardua-backup run [--config PATH]` with the real pipeline, Docker and S3."""
    logs.setup()
    containers = DockerContainers()

    def preflight(config: Config) -> None:
        retrying(lambda: docker_runner.ping(containers.client()), "Docker ping")
        problems = []
        for dest in config.destinations:
            # A prefix of a job that copies there: a least-privilege key may list nothing else
            # (doctor --iam-policy).
            prefix = next((j.prefix for j in config.jobs.values()
                           if dest in config.destinations_of(j)), None)
            if prefix is None:
                continue
            try:
                retrying(lambda d=dest, p=prefix: s3.preflight(d, p),
                         f"S3 preflight of {dest.name}")
            except s3.S3Error as exc:
                several = len(config.destinations) > 1
                problems.append(f"{dest.name}: {exc}" if several else str(exc))
        if problems:  # every destination's, not only the first
            raise s3.S3Error("; ".join(problems))

    # The pipeline makes its own Docker client per run, so a Docker outage is its clear failure.
    def run(config: Config, name: str, *, run_id: str) -> Report:
        if name == config_module.DRILL_JOB:
            return drill.run_drill(config, run_id=run_id)
        if name == config_module.VERIFY_JOB:
            return verify.run_verify(config, run_id=run_id)
        return pipeline.run_job(config, name, run_id=run_id)

    daemon = Daemon(config_path, run, containers, preflight, check_health=gather.evaluate_status)
    return run_service(daemon)
