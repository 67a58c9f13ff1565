"""The drill's receipts spot check: a sample of S3 against this host, and of this host against S3.

Two samples of K receipts. From S3: each object's sha256 against the local regular file
('mismatched', or 'missing' here: absent, or a symlink, FIFO, device; no symlink is followed at
any depth); a key that names no path inside the folder is refused by name, never read.
From this host: files that already existed when the last successful upload
started must be in S3 with their size ('not_in_s3').
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from supervisor.config.load import Config
from supervisor.core import paths
from supervisor.record import ledger
from supervisor.restore import decrypt
from supervisor.restore.db import workdir_root
from supervisor.storage import crypt, cryptform, markers, s3
from supervisor.storage.destination import Destination


@dataclass(frozen=True)
class SpotCheck:
    checked: int = 0  # objects sampled in S3
    mismatched: tuple[str, ...] = ()  # sha256 in S3 differs from the local file
    missing: tuple[str, ...] = ()  # in S3, gone from this host
    checked_local: int = 0  # local files sampled that the last upload must have taken
    not_in_s3: tuple[str, ...] = ()  # of those: absent from S3, or another size there
    note: str = ""
    # S3 keys that name no path inside the folder (absolute, empty/./.. segments, NUL): never
    # read, a sign someone wrote to the bucket what no upload of ours writes.
    refused: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.not_in_s3 or self.refused)

    @property
    def problems(self) -> int:
        return (len(self.mismatched) + len(self.missing) + len(self.not_in_s3)
                + len(self.refused))



def _sha256_local(root_fd: int, rel: str) -> str | None:
    """The sha256 of the regular file `rel` below the folder; None if there is none (a
    symlink, a FIFO, a device or a directory is not a receipt rclone uploaded)."""
    fd = paths.open_regular_below(root_fd, rel)
    if fd is None:
        return None
    with open(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def spot_check_receipts(config: Config, rng: random.Random | None = None,
                        prefer: Destination | None = None) -> SpotCheck:
    """Two samples of K receipts, in `prefer` (the drill's destination) when the receipts job
    copies there, else in its first destination. From S3: each object's sha256 against the
    local file ('mismatched', or 'missing' here). From this host: files that already existed
    when the last successful upload started must be in S3 with their size ('not_in_s3').
    "Already existed" is judged by ctime, which no copy or touch can set back, against that
    run's start in the ledger (recorded before rclone listed the source)."""
    name, k = config.drill.receipts_job, config.drill.receipts_sample
    if not name or k == 0:
        return SpotCheck(note="disabled")
    if name not in config.jobs:
        return SpotCheck(note=f"no job '{name}' configured")
    job = config.jobs[name]
    if job.source.kind != "path":
        return SpotCheck(note=f"source {job.source} is a volume; local files not readable")
    root = Path(job.source.location)
    copies = config.destinations_of(job)
    dest = prefer if prefer in copies else copies[0]
    listed = {rel: obj for rel, obj in s3.list_objects(dest, job.prefix).items()
              if rel not in markers.MARKER_NAMES}
    # Refused by name, never joined onto the folder: `receipts//dev/zero` would read /dev/zero.
    refused = sorted(repr(rel) for rel in listed if not paths.plain_relative(rel))
    objects = {rel: obj for rel, obj in listed.items() if paths.plain_relative(rel)}
    rng = rng or random.SystemRandom()
    sample = rng.sample(sorted(objects), min(k, len(objects)))
    mismatched, missing = _compare_sample(config, dest, root, objects, sample)
    notes = [] if listed else ["no objects under the receipts prefix"]
    if refused:
        notes.append(f"{len(refused)} S3 key(s) name no path inside the folder, not read: "
                     f"{', '.join(refused[:3])}{', ...' if len(refused) > 3 else ''}")
    since = _last_upload_start(config, name)
    # Younger than guard.quiet_period at that run: left for the next one (pipeline.skips_young).
    older = _files_changed_before(root, since, config.guard.quiet_period_s) if since else {}
    if since is None:
        notes.append(f"no successful {name} in the ledger: local files not checked")
    local_sample = rng.sample(sorted(older), min(k, len(older)))
    not_in_s3 = [rel for rel in local_sample
                 if rel not in objects or objects[rel].size != older[rel]]
    return SpotCheck(len(sample), tuple(mismatched), tuple(missing), len(local_sample),
                     tuple(not_in_s3), "; ".join(notes), tuple(refused))


def _compare_sample(config: Config, dest: Destination, root: Path,
                    objects: dict[str, s3.S3Object], sample: list[str],
                    ) -> tuple[list[str], list[str]]:
    """The sampled objects' sha256 against the local files: (mismatched, missing)."""
    mismatched, missing = [], []
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        local = {rel: _sha256_local(root_fd, rel) for rel in sample}
    finally:
        os.close(root_fd)
    missing = [rel for rel in sample if local[rel] is None]
    held = _digests(config, dest, objects, [rel for rel in sample if local[rel] is not None])
    mismatched = [rel for rel, digest in held.items() if digest != local[rel]]
    return mismatched, missing


def _digests(config: Config, dest: Destination, objects: dict[str, s3.S3Object],
             sample: list[str]) -> dict[str, str | None]:
    """The sha256 of each sampled file as S3 holds it. Encrypted: the sample downloaded and
    decrypted by one rclone container (None: a file it did not give back)."""
    if not dest.encrypted:
        return {rel: _sha256_chunks(s3.read_chunks(dest, objects[rel].key)) for rel in sample}
    if sample:
        cryptform.plain_head(dest, objects[sample[0]])  # a wrong key: its one line
    with tempfile.TemporaryDirectory(dir=workdir_root(config), prefix="spotcheck-") as tmp:
        encrypted, out = Path(tmp, "in"), Path(tmp, "out")
        encrypted.mkdir()
        out.mkdir()
        for i, rel in enumerate(sample):
            s3.download(dest, objects[rel].key, str(encrypted / crypt.object_name(str(i))))
        decrypt.decrypt_folder(config, dest, encrypted, out)
        return {rel: _sha256_file(out / str(i)) if (out / str(i)).is_file() else None
                for i, rel in enumerate(sample)}


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256_chunks(iter(lambda: f.read(1 << 20), b""))


def _sha256_chunks(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _last_upload_start(config: Config, job: str) -> datetime | None:
    try:
        run = ledger.Ledger(config.state_dir).last_success(job)
    except (OSError, sqlite3.Error):
        return None
    return run.started_at if run else None


def _files_changed_before(root: Path, cutoff: datetime, quiet_s: float = 0) -> dict[str, int]:
    """Regular files under root (what rclone uploads: no symlinks, not our marker names at the
    top) whose inode last changed before cutoff, modified quiet_s before it -> their size."""
    found: dict[str, int] = {}
    limit = cutoff.timestamp()
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except FileNotFoundError:  # removed while we walk
                continue
            rel = path.relative_to(root).as_posix()
            if (stat.S_ISREG(st.st_mode) and st.st_ctime < limit
                    and st.st_mtime < limit - quiet_s and rel not in markers.MARKER_NAMES):
                found[rel] = st.st_size
    return found
