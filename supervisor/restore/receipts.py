"""Getting the receipts back out of S3: `rclone sync` from the receipts prefix into a host
directory, in a one-shot container running as that directory's owner; optionally as the bucket
held it at a time (a versioned bucket, rclone's --s3-version-at)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import docker

from supervisor.config.load import Config
from supervisor.containers import engine as docker_runner
from supervisor.containers import rclone
from supervisor.containers.jobs import rclone_spec, run_labels
from supervisor.containers.rclone import judge_sync
from supervisor.record.report import new_run_id
from supervisor.restore.db import RestoreError
from supervisor.storage import s3, versions

RESTORE_JOB = "receipts-restore"


def receipts_prefix(config: Config) -> str:
    if not config.drill.receipts_job:
        raise RestoreError("no receipts job: drill.receipts_job is empty")
    return config.job(config.drill.receipts_job).prefix


def restore_receipts(
    config: Config, dest: Path, *, force: bool = False, at: datetime | None = None,
    client: docker.DockerClient | None = None,
    on_line: Callable[[str], None] = print,
) -> str:
    """rclone sync s3://BUCKET/<receipts prefix>/ -> dest in a one-shot container.
    A sync deletes what the source lacks, so a non-empty dest needs force.
    With `at`: the prefix as it was then (rclone --s3-version-at; deleted files and delete
    markers are not listed, the sentinel and drill marker are excluded as always), into an
    empty dest only (--force does not apply: merging an old state into files of today would
    make a directory that never existed)."""
    prefix = receipts_prefix(config)
    dest = dest.resolve()
    if dest.exists() and not dest.is_dir():
        raise RestoreError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and at is not None:
        raise RestoreError(f"{dest} is not empty; a restore as of a time goes into an empty "
                           f"directory (compare or move the files afterwards)")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise RestoreError(
            f"{dest} is not empty; the sync would delete files that are not in S3. "
            f"Use an empty directory or pass --force"
        )
    source = config.destination()
    s3.preflight(source, prefix)
    if at is not None:
        versions.require_versioning(source)
    # Created here, owned by us: Docker would create a missing bind path itself, as root.
    dest.mkdir(parents=True, exist_ok=True)
    client = client or docker_runner.connect()
    docker_runner.ensure_image(client, config.rclone.image)
    owner = dest.stat()
    timeout_s = config.job(config.drill.receipts_job).timeout_s
    as_of = f" as of {versions.format_at(at)}" if at is not None else ""
    on_line(f"restoring {source.url(prefix)}{as_of} -> {dest}")
    spec = rclone_spec(
        config, source,
        rclone.restore_command(source, prefix, timeout_s, at),
        docker_runner.file_mount(str(dest), rclone.DEST_MOUNT, read_only=False),
        run_labels(config, RESTORE_JOB, new_run_id()),
        # As DEST's owner: the files land owned like the directory, and no capability is
        # needed to write there. As root (DEST owned by root) it may still read the 0600
        # credentials file of the service user; any other owner must be able to read it.
        user=f"{owner.st_uid}:{owner.st_gid}",
    )
    result = docker_runner.run_oneshot(client, spec, timeout_s)
    summary = rclone.parse_log(result.stderr)
    verdict = judge_sync(result.exit_code, result.timed_out, summary)
    if not verdict.ok:
        raise RestoreError(f"receipts restore failed: {verdict.reason}: {summary.last_error}")
    return (f"restored {summary.stat('transfers')} file(s), {summary.stat('bytes')} B "
            f"into {dest}{as_of}")
