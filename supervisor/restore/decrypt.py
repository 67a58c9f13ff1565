"""Decrypting what was downloaded from an encrypted destination: rclone's crypt remote over a
local folder (storage.crypt.LOCAL_REMOTE), in a one-shot container without network, with the
destination's config file (containers.jobs.crypt_mounts). rclone authenticates every block;
a wrong key or a damaged block fails it. restore.db.fetch_object is the one way in.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import docker

from supervisor.config.load import Config
from supervisor.containers import engine as docker_runner
from supervisor.containers import rclone
from supervisor.containers.jobs import rclone_spec, run_labels
from supervisor.record.report import new_run_id
from supervisor.storage import crypt, s3
from supervisor.storage.destination import Destination

DECRYPT_JOB = "decrypt"
TIMEOUT_S = 3600.0
_BAD_BLOCK = "failed to authenticate decrypted block"  # rclone's ErrorEncryptedBadBlock


class DecryptError(s3.S3Error):
    """One line: why the download was not decrypted."""


def decrypt_folder(config: Config, dest: Destination, encrypted: Path, out: Path,
                   client: docker.DockerClient | None = None) -> None:
    """Every NAME.bin in `encrypted` decrypted to out/NAME, as this user (so it reads the
    config file, 0600, and owns what it writes). Raises DecryptError."""
    client = client or docker_runner.connect()
    docker_runner.ensure_image(client, config.rclone.image)
    command = ["copy", f"{crypt.LOCAL_REMOTE}:", f"{rclone.DEST_MOUNT}/", *rclone.BOUNDS,
               *rclone.logging(dest)]
    spec = rclone_spec(config, dest, command,
                       docker_runner.file_mount(str(out), rclone.DEST_MOUNT, read_only=False),
                       run_labels(config, DECRYPT_JOB, new_run_id()),
                       user=f"{os.getuid()}:{os.getgid()}")
    spec = dataclasses.replace(spec, network_mode="none", mounts=[
        *spec.mounts, docker_runner.file_mount(str(encrypted), crypt.LOCAL_ROOT)])
    result = docker_runner.run_oneshot(client, spec, TIMEOUT_S)
    log = rclone.parse_log(result.stderr)
    verdict = rclone.judge_sync(result.exit_code, result.timed_out, log)
    if not verdict.ok:
        why = ("a block does not authenticate (a damaged object or a wrong key)"
               if _BAD_BLOCK in result.stderr else verdict.reason)
        raise DecryptError(f"decrypting with destination {dest.name}'s key failed: {why}")
