"""rclone in one-shot containers: the spec every rclone container gets (image, network, S3
settings, the credentials file read-only, the least capability to read any file under a seccomp
profile that keeps it from opening files by handle), the labels that
say whose a container is (job, run, installation) and tell a writer from a reader, and the listing
of a job's source as rclone sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import docker
from docker.types import Mount

from supervisor.config.load import Config, JobConfig
from supervisor.containers import engine as docker_runner
from supervisor.containers import rclone, seccomp
from supervisor.containers.engine import ContainerRun, DockerError
from supervisor.core.files import write_private
from supervisor.storage import crypt
from supervisor.storage.destination import Destination

# Read-only container, but it must read every file whatever its owner and mode: the capability,
# under a seccomp profile that refuses the one syscall making it a key to the whole host
# filesystem (open_by_handle_at: containers.seccomp).
READ_ANY_FILE = ["DAC_READ_SEARCH"]
LIST_TIMEOUT_S = 300.0
LIST_STEP, SYNC_STEP = "list", "sync"
# upload.hardlinks' steps: hashing only reads; the seed upload writes to the prefix.
HASH_STEP, SEED_STEP = "hash", "seed"
WRITER_STEPS = frozenset({SYNC_STEP, SEED_STEP})  # containers that write to S3


def instance_of(config: Config) -> str:
    """This installation's LABEL_INSTANCE (engine.instance_label of its state_dir)."""
    return docker_runner.instance_label(config.state_dir)


def run_labels(config: Config, job: str, run_id: str) -> dict[str, str]:
    """The labels of every container of a run of `job` (an upload's, the drill's, a restore's):
    the job and the run, and the installation, so that another installation's job of the same
    name on this engine is never counted, reaped nor stopped as ours."""
    return {
        docker_runner.LABEL_JOB: job,
        docker_runner.LABEL_RUN: run_id,
        docker_runner.LABEL_INSTANCE: instance_of(config),
    }


@dataclass
class JobContainers:
    """The containers of one run of a job: its config, job, run id and Docker client; each
    container gets the job's source mounted read-only and the labels of its step."""

    config: Config
    job: JobConfig
    run_id: str
    client: docker.DockerClient
    destination: Destination | None = None  # where its writers write; None: the first

    @property
    def dest(self) -> Destination:
        return self.destination or self.config.destination()

    @property
    def target(self) -> str:
        """The mirror this run writes: `s3://bucket/prefix/`."""
        return self.dest.url(self.job.prefix)

    @property
    def instance(self) -> str:
        return instance_of(self.config)

    def labels(self, step: str) -> dict[str, str]:
        """Every container carries the job, the run and the installation (run_labels: so a
        killed run's leftovers are reaped by this installation alone). Only the sync writes to
        S3: it alone carries the writer label LABEL_TARGET, which makes a second sync of the
        prefix refuse and the daemon skip a run, whichever installation started it. Any other
        step only reads the source and says so (LABEL_READS): `status` lists the dump volume
        this way every few minutes, and that must never block an upload."""
        labels = {
            **run_labels(self.config, self.job.name, self.run_id),
            docker_runner.LABEL_STEP: step,
        }
        if step in WRITER_STEPS:
            labels[docker_runner.LABEL_TARGET] = self.target
        else:
            labels[docker_runner.LABEL_READS] = str(self.job.source)
        return labels

    def container(self, step: str, command: list[str], timeout_s: float) -> ContainerRun:
        spec = rclone_spec(
            self.config, self.dest, command,
            docker_runner.source_mount(self.client, self.job.source, rclone.SOURCE_MOUNT),
            self.labels(step),
        )  # fmt: skip
        return docker_runner.run_oneshot(self.client, spec, timeout_s)


def rclone_spec(
    config: Config, dest: Destination, command: list[str], mount: Mount, labels: dict[str, str],
    user: str | None = None,
) -> docker_runner.Spec:
    """An rclone one-shot container: the configured image and network, the destination's
    settings as environment, its credentials file read-only, and `mount` (a job's source, a
    restore's target); DAC_READ_SEARCH under the seccomp profile that refuses
    open_by_handle_at."""
    return docker_runner.Spec(
        image=config.rclone.image,
        command=command,
        mounts=[mount, *docker_runner.credentials_mounts(dest, rclone.CREDENTIALS_MOUNT),
                *crypt_mounts(config, dest)],
        env=rclone.environment(dest),
        labels=labels,
        network_mode=config.rclone.network_mode,
        cap_add=READ_ANY_FILE,
        user=user,
        security_opt=[seccomp.security_opt()],
    )


def crypt_mounts(config: Config, dest: Destination) -> list[Mount]:
    """An encrypted destination's rclone config file, read-only: written (0600, in state_dir,
    whose directory only the service user enters) when it is not there or differs."""
    if dest.crypt_key is None:
        return []
    path = config.state_dir / "crypt" / f"{dest.name}.conf"
    try:
        write_private(path, crypt.rclone_config(dest.bucket, dest.crypt_key))
    except OSError as exc:  # e.g. made by root's run-once, before the service's run
        raise DockerError(f"cannot write rclone's crypt config {path}: {exc.strerror}; "
                          f"{path.parent} must belong to the user running ardua-backup"
                          ) from None
    return [docker_runner.file_mount(str(path), rclone.CRYPT_CONFIG_MOUNT)]


@dataclass(frozen=True)
class Listing:
    """A job's source as rclone sees it: the files, and the symlinks it skips (as a sync would)."""

    files: list[rclone.ListedFile]
    skipped_symlinks: int


def list_source(run: JobContainers) -> Listing:
    """The job's source as rclone sees it, listed in a read-only one-shot container."""
    result = run.container(LIST_STEP, rclone.list_command(), min(LIST_TIMEOUT_S, run.job.timeout_s))
    log = rclone.parse_log(result.stderr)
    if result.exit_code != 0 or log.error_count:
        raise DockerError(
            f"listing source {run.job.source} failed (exit {result.exit_code}): "
            f"{log.last_error or 'no error text'}"
        )
    try:
        return Listing(rclone.parse_listing(result.stdout), log.skipped_symlinks)
    except (ValueError, KeyError, TypeError) as exc:
        raise DockerError(
            f"listing source {run.job.source} gave unreadable output: {exc}"
        ) from None
