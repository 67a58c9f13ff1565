"""Carrying out supervisor.upload.hardlinks' plan before the sync: hash the candidates, upload the
seeds, make the other keys with S3 server-side copies, each verified.

Nothing here can fail a run: whatever goes wrong (a container, a copy, a verification) is
logged and left to the sync, which uploads any key that is missing or differs, as it always
did. What it reports (COPIED_SERVER_SIDE, BYTES_SAVED) counts only copies verified afterwards
by a HEAD (size and MD5), i.e. keys the sync will find equal and not upload.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from loguru import logger

from supervisor.containers import rclone
from supervisor.containers.engine import ContainerRun, DockerError
from supervisor.containers.jobs import HASH_STEP, SEED_STEP
from supervisor.containers.rclone import ListedFile
from supervisor.storage import crypt, s3, upload_options
from supervisor.storage.destination import Destination
from supervisor.storage.s3 import S3Object
from supervisor.upload import hardlinks

# One CopyObject up to this size; above it a multipart copy (UploadPartCopy) in parts of this
# size, each well within botocore's read timeout.
COPY_PART_BYTES = 64 * 1024 * 1024
MD5_META = "md5chksum"  # rclone's metadata: base64 of the binary MD5 (multipart / KMS objects)

RunStep = Callable[[str, list[str], float], ContainerRun]  # (step, command, timeout) -> run


@dataclass
class Outcome:
    plans: list[hardlinks.CopyPlan] = field(default_factory=list)
    copied: int = 0  # keys made server-side and verified
    bytes_saved: int = 0
    failed: int = 0  # planned copies left to the sync
    seed_files: int = 0  # uploaded by the seed step
    seed_bytes: int = 0


def object_md5(head: Mapping[str, Any]) -> str | None:
    """The MD5 (hex) of an object from its HEAD: the ETag when it is one, else rclone's
    md5chksum metadata; None when neither says."""
    etag = hardlinks.etag_md5(str(head.get("ETag", "")))
    if etag:
        return etag
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    try:
        raw = base64.b64decode(meta.get(MD5_META, ""), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def holds(dest: Destination, key: str, size: int, md5: str) -> tuple[bool, dict[str, Any]]:
    """Does the object of the file at key hold exactly that content? (and its HEAD).
    Encrypted, its ETag is the MD5 of ciphertext, no file's: the size crypt gives that file
    is checked, the content is rclone's upload (each block authenticated)."""
    try:
        head = s3.head(dest, dest.object_key(key))
    except s3.S3Error:
        return False, {}
    length = int(head.get("ContentLength", -1))
    if dest.encrypted:
        return length == crypt.encrypted_size(size), head
    return length == size and object_md5(head) == md5, head


def copy(dest: Destination, source_key: str, target_key: str, md5: str,
         source_head: Mapping[str, Any]) -> None:
    """A server-side copy that keeps what rclone compares and stores: the metadata (mtime; the
    hard links share it) plus md5chksum, so a multipart copy (whose ETag is no MD5) still
    carries its MD5; the content type; the configured storage class, encryption and Object
    Lock. Raises S3Error."""
    metadata = dict(source_head.get("Metadata") or {})
    if not dest.encrypted:  # encrypted, the source's md5chksum (of its ciphertext) stays true
        metadata[MD5_META] = base64.b64encode(bytes.fromhex(md5)).decode()
    extra: dict[str, Any] = {
        "MetadataDirective": "REPLACE",
        "Metadata": metadata,
        **upload_options.boto_extra_args(dest.upload_options),
        **s3.lock_args(dest),  # a copy is a new version: it is locked like an upload
    }
    if source_head.get("ContentType"):
        extra["ContentType"] = source_head["ContentType"]
    transfer = TransferConfig(multipart_threshold=COPY_PART_BYTES,
                              multipart_chunksize=COPY_PART_BYTES)
    try:
        s3.copy_client(dest).copy({"Bucket": dest.bucket, "Key": dest.object_key(source_key)},
                                  dest.bucket, dest.object_key(target_key), ExtraArgs=extra,
                                  Config=transfer)
    except (BotoCoreError, ClientError) as exc:
        raise s3.S3Error(f"server-side copy {source_key} -> {target_key} failed: "
                         f"{s3.describe(exc, dest)}") from None


def _same_etag(copied: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    """Encrypted: the copy holds the source's ciphertext, when both ETags are MD5s (a copy in
    parts has an ETag of its own: its size alone is checked)."""
    a, b = (hardlinks.etag_md5(str(h.get("ETag", ""))) for h in (copied, source))
    return a == b or a is None or b is None


def _counts(run: ContainerRun) -> tuple[bool, rclone.LogSummary]:
    log = rclone.parse_log(run.stderr)
    return rclone.judge_sync(run.exit_code, run.timed_out, log).ok, log


def hash_candidates(run_step: RunStep, groups: list[hardlinks.Group], timeout_s: float,
                    ) -> dict[str, hardlinks.Hashed]:
    """MD5 of every candidate file, from one read-only container. Raises DockerError."""
    paths = [p for g in groups for p in g.paths]
    result = run_step(HASH_STEP, hardlinks.hash_command(paths), timeout_s)
    log = rclone.parse_log(result.stderr)
    if result.exit_code != 0 or log.error_count:
        raise DockerError(f"hashing {len(paths)} candidate file(s) failed (exit "
                          f"{result.exit_code}): {log.last_error or 'no error text'}")
    try:
        return hardlinks.parse_hashes(result.stdout)
    except (ValueError, KeyError, TypeError) as exc:
        raise DockerError(f"hashing candidates gave unreadable output: {exc}") from None


def plan(run_step: RunStep, listed: Iterable[ListedFile], mirror: Mapping[str, S3Object],
         timeout_s: float, encrypted: bool = False) -> list[hardlinks.CopyPlan]:
    """The copies worth making (reads only: the source, hashed in a container). `encrypted`:
    the mirror is a crypt remote's (no ETag is a file's MD5). Raises DockerError."""
    groups = hardlinks.candidate_groups(listed, mirror)
    if not groups:
        return []
    return hardlinks.plan_copies(groups, hash_candidates(run_step, groups, timeout_s), mirror,
                                 encrypted)


def carry_out(
    run_step: RunStep, dest: Destination, prefix: str, plans: list[hardlinks.CopyPlan],
    timeout_s: float, log: Any = logger, extra: list[str] | None = None,
) -> Outcome:
    """Seeds, then copies, each verified. Never raises for S3 or rclone trouble: what fails is
    left to the sync. (A Docker API error starting the seed container does raise.)"""
    out = Outcome(plans=plans)
    seeds = [p for p in plans if p.seed]
    if seeds:
        result = run_step(SEED_STEP, hardlinks.seed_command(
            dest, prefix, timeout_s, [p.source for p in seeds], extra or ()), timeout_s)
        ok, summary = _counts(result)
        out.seed_files, out.seed_bytes = summary.stat("transfers"), summary.stat("bytes")
        if not ok:
            log.warning(f"uploading {len(seeds)} file(s) to copy from failed (exit "
                        f"{result.exit_code}): {summary.last_error or 'no error text'}; "
                        f"the sync uploads what is missing")
    for p in plans:
        source_key = f"{prefix}/{p.source}"
        good, head = holds(dest, source_key, p.size, p.md5)
        if not good:
            out.failed += len(p.targets)
            log.warning(f"{source_key} does not hold the MD5 {p.md5} of its hard links; "
                        f"the sync uploads {len(p.targets)} of them")
            continue
        for target in p.targets:
            target_key = f"{prefix}/{target}"
            try:
                copy(dest, source_key, target_key, p.md5, head)
                verified, copied = holds(dest, target_key, p.size, p.md5)
                # encrypted: the copy is the source's ciphertext, nonce and all
                verified = verified and (not dest.encrypted or _same_etag(copied, head))
            except s3.S3Error as exc:
                log.warning(f"{exc}; the sync uploads it")
                verified = False
            if verified:
                out.copied += 1
                out.bytes_saved += p.size
            else:
                out.failed += 1
    return out
