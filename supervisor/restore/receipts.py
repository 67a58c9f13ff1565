"""Getting the receipts back out of S3: `rclone sync` from the receipts prefix into a host
directory, in a one-shot container running as that directory's owner (root only when asked:
--as-root), the directory held open from the checks to the start; optionally as the bucket
held it at a time (a versioned bucket, rclone's --s3-version-at); from the destination
restore.source chooses. Keys that name no path inside DEST (restore.names) are refused by name
and left out; every other receipt is restored."""

from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import docker
from docker.types import Mount

from supervisor.config.load import Config
from supervisor.containers import engine as docker_runner
from supervisor.containers import rclone
from supervisor.containers.jobs import rclone_spec, run_labels
from supervisor.containers.rclone import judge_sync
from supervisor.core import paths
from supervisor.record.report import new_run_id
from supervisor.restore import names
from supervisor.restore.db import KeysRefused, RestoreError, workdir_root
from supervisor.restore.source import Source, choose
from supervisor.storage import cryptform, versions

RESTORE_JOB = "receipts-restore"


def receipts_prefix(config: Config) -> str:
    if not config.drill.receipts_job:
        raise RestoreError("no receipts job: drill.receipts_job is empty")
    return config.job(config.drill.receipts_job).prefix


def restore_receipts(
    config: Config, dest: Path, *, force: bool = False, at: datetime | None = None,
    as_root: bool = False, client: docker.DockerClient | None = None,
    on_line: Callable[[str], None] = print,
    on_step: Callable[[str], None] = lambda step: None, destination: str | None = None,
) -> str:
    """rclone sync s3://BUCKET/<receipts prefix>/ -> dest in a one-shot container.
    A sync deletes what the source lacks, so a non-empty dest needs force.
    With `at`: the prefix as it was then (rclone --s3-version-at; deleted files and delete
    markers are not listed, the sentinel and drill marker are excluded as always), into an
    empty dest only (--force does not apply: merging an old state into files of today would
    make a directory that never existed).
    DEST is opened once, without following symlinks (core.paths), and the sync runs as the
    owner of the directory opened: root only with as_root. No one but root and that owner may
    be able to swap any directory of its path (Docker mounts the path by name, at the start),
    and the name must still be that directory just before the container starts.
    Keys refused by name (restore.names) are left out: KeysRefused after the sync, naming them.
    `on_step` is a test seam: called with "checked", then "verified" (just before the start)."""
    prefix = receipts_prefix(config)
    # S3 first: no destination that answers with receipts (or versions, for `at`) leaves no
    # DEST made for nothing.
    source = choose(config, config.drill.receipts_job, destination, at)
    if source.dest.encrypted and (sample := cryptform.newest(source.held.values())):
        cryptform.plain_head(source.dest, sample)  # a wrong key: one line, DEST untouched
    refused = sorted((obj.key, why) for rel, obj in source.held.items()
                     if (why := names.refusal(rel)))
    held = _open_dest(dest, as_root)
    try:
        _check_contents(held, force, at)
        on_step("checked")
        done = _sync(config, prefix, source, held, at, client, on_line, on_step,
                     bool(refused))
    finally:
        held.close()
    if refused:
        raise KeysRefused(f"{len(refused)} S3 key(s) refused; {done}",
                          [names.refused_line(key, why) for key, why in refused])
    return done


def _open_dest(dest: Path, as_root: bool) -> paths.HeldDir:
    """DEST held open (made if missing: by us, not by Docker as root), judged: its owner is
    who the sync runs as, and no one else can replace a directory of its path."""
    try:
        held = paths.open_dir(dest, create=True)
    except paths.PathRefused as exc:
        raise RestoreError(str(exc)) from None
    try:
        owner = held.st.st_uid
        if owner == 0 and not as_root:
            raise RestoreError(
                f"{held.path} is owned by root, so the sync (which deletes what S3 lacks) would "
                f"run as root: chown it to the user the files are for, or pass --as-root")
        trusted = frozenset({0, owner, os.geteuid()})
        for parent, child in itertools.pairwise(held.chain):
            if paths.others_can_replace(parent, child, trusted):
                raise RestoreError(
                    f"{held.path} is under a directory that other users can change "
                    f"(uid {parent.st_uid}, mode {parent.st_mode & 0o7777:o}): one could swap "
                    f"it for a symlink; use a directory only root or its owner can write")
    except BaseException:
        held.close()
        raise
    return held


def _check_contents(held: paths.HeldDir, force: bool, at: datetime | None) -> None:
    if not os.listdir(held.fd):
        return
    if at is not None:
        raise RestoreError(f"{held.path} is not empty; a restore as of a time goes into an empty "
                           f"directory (compare or move the files afterwards)")
    if not force:
        raise RestoreError(
            f"{held.path} is not empty; the sync would delete files that are not in S3. "
            f"Use an empty directory or pass --force"
        )


def _sync(
    config: Config, prefix: str, source: Source, held: paths.HeldDir, at: datetime | None,
    client: docker.DockerClient | None, on_line: Callable[[str], None],
    on_step: Callable[[str], None], refusing: bool,
) -> str:
    client = client or docker_runner.connect()
    docker_runner.ensure_image(client, config.rclone.image)
    as_of = f" as of {versions.format_at(at)}" if at is not None else ""
    on_line(f"restoring {source.dest.url(prefix)}{as_of} -> {held.path} {source.note}")
    with tempfile.TemporaryDirectory(dir=workdir_root(config)) as tmp:
        mounts = [_listed(source, Path(tmp))] if refusing else []
        return _run_sync(config, prefix, source, held, at, client, on_step, mounts) + as_of


def _listed(source: Source, tmp: Path) -> Mount:
    """The names to restore, one a line, for rclone --files-from-raw: every one that is a
    path inside DEST (no line break: it would read as two names). 0644 for the sync's user
    (bind-mounted: the host directories above it, 0700, are not in its way), under
    state_dir/restore, which no other user can enter."""
    path = tmp / "listed"
    path.write_text("".join(f"{rel}\n" for rel in sorted(source.held)
                            if not names.refusal(rel) and "\n" not in rel and "\r" not in rel))
    path.chmod(0o644)
    return docker_runner.file_mount(str(path), rclone.LISTED_MOUNT)


def _run_sync(
    config: Config, prefix: str, source: Source, held: paths.HeldDir, at: datetime | None,
    client: docker.DockerClient, on_step: Callable[[str], None],
    extra_mounts: list[Mount],
) -> str:
    timeout_s = config.job(config.drill.receipts_job).timeout_s
    spec = rclone_spec(
        config, source.dest,
        rclone.restore_command(source.dest, prefix, timeout_s, at, listed=bool(extra_mounts)),
        # By name: Docker resolves it when the container starts (a /proc/PID/fd/N of ours is
        # refused by runc: that mount is in another mount namespace).
        docker_runner.file_mount(str(held.path), rclone.DEST_MOUNT, read_only=False),
        run_labels(config, RESTORE_JOB, new_run_id()),
        # As DEST's owner: the files land owned like the directory, and no capability is
        # needed to write there. As root (DEST owned by root, --as-root) it may still read
        # the 0600 credentials file of the service user; any other owner must be able to.
        user=f"{held.st.st_uid}:{held.st.st_gid}",
    )
    spec = dataclasses.replace(spec, mounts=[*spec.mounts, *extra_mounts])
    if not held.unchanged():
        raise RestoreError(f"{held.path} was replaced while the restore prepared; nothing synced")
    on_step("verified")
    result = docker_runner.run_oneshot(client, spec, timeout_s)
    summary = rclone.parse_log(result.stderr)
    verdict = judge_sync(result.exit_code, result.timed_out, summary)
    if not verdict.ok:
        raise RestoreError(f"receipts restore failed: {verdict.reason}: {summary.last_error}")
    return (f"restored {summary.stat('transfers')} file(s), {summary.stat('bytes')} B "
            f"into {held.path}")
