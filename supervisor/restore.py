"""Getting backups back out of S3: list dumps, fetch and verify one, restore it, restore receipts.

Everything an operator needs on a bad day; the drill (supervisor.drill) reuses the same steps.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from supervisor import docker_runner, rclone, s3
from supervisor.config import Config
from supervisor.pipeline import new_run_id, rclone_spec
from supervisor.report import judge_sync

DUMP_SUFFIX = ".dump"
RESTORE_JOB = "receipts-restore"
# The name timestamp postgres-backup-local gives last/ dumps (DB-%Y%m%d-%H%M%S.dump).
_NAME_STAMP = re.compile(r"-(\d{8}-\d{6})\.dump$")
# Tables, views, sequences... anything a restore would collide with, outside the catalogs.
USER_RELATIONS_SQL = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
)
USER_TABLES_SQL = USER_RELATIONS_SQL.replace("IN ('r', 'p', 'v', 'm', 'S', 'f')", "IN ('r', 'p')")


class RestoreError(Exception):
    """A restore problem, phrased as one line that says what is wrong."""


# -- listing -------------------------------------------------------------------------------------


def db_prefix(config: Config) -> str:
    return config.job(config.drill.db_job).prefix


def _sort_key(obj: s3.S3Object) -> tuple[bool, str, str]:
    """Dated last/ dumps first, by their name stamp (LastModified is the upload time, and a
    first sync uploads every dump at once); last/ always holds the newest dump. Then the
    daily/weekly/monthly hard links, by LastModified."""
    match = _NAME_STAMP.search(obj.key)
    stamp = match.group(1) if match else f"{obj.last_modified:%Y%m%d-%H%M%S}"
    return (match is not None, stamp, obj.key)


def list_dumps(config: Config) -> list[s3.S3Object]:
    """Dumps under the db job's prefix, newest first. `*-latest*` names are symlinks locally
    (rclone skips them) but could exist in S3 from another tool: never offered."""
    found = s3.list_objects(config.s3, db_prefix(config))
    dumps = [
        obj for rel, obj in found.items()
        if rel.endswith(DUMP_SUFFIX) and "-latest" not in rel.rsplit("/", 1)[-1]
    ]  # fmt: skip
    return sorted(dumps, key=_sort_key, reverse=True)


def split_empty(dumps: list[s3.S3Object]) -> tuple[list[s3.S3Object], list[s3.S3Object]]:
    """(dumps that may be archives, 0-byte ones). A pg_dump that fails leaves its output file
    under the final name in last/, often empty (postgres-backup-local writes straight there);
    no restore tool can read 0 bytes, so such a key is never offered or drilled."""
    return [d for d in dumps if d.size], [d for d in dumps if not d.size]


def skipped_note(empty: list[s3.S3Object]) -> str:
    return (f"skipped {len(empty)} empty dump(s) (0 B, left by a failed pg_dump; not an "
            f"archive): {', '.join(d.key for d in empty)}") if empty else ""


def format_listing(dumps: Iterable[s3.S3Object]) -> str:
    rows = [f"{'LAST MODIFIED (UTC)':<21} {'SIZE':>12}  KEY"]
    rows += [
        f"{d.last_modified:%Y-%m-%dT%H:%M:%SZ}  {d.size:>12}  {d.key}" for d in dumps
    ]
    return "\n".join(rows)


# -- fetch and verify ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    key: str
    path: Path
    size: int
    verified: str  # what was checked against S3, in words
    seconds: float


class Progress:
    """A one-line download progress on stderr, only when stderr is a terminal.
    boto3 calls it from its transfer threads with byte increments."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, max(total, 1), 0
        self._last = 0.0

    def __call__(self, increment: int) -> None:
        self.done += increment
        now = time.monotonic()
        if now - self._last >= 0.2 or self.done >= self.total:
            self._last = now
            mib = 1024 * 1024
            sys.stderr.write(
                f"\r{self.label}  {self.done / mib:8.1f} / {self.total / mib:.1f} MiB"
                f"  {100 * self.done // self.total:3d}%"
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _md5_of(path: Path) -> hashlib._Hash:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest


def verify(path: Path, head: dict[str, Any]) -> str:
    """Checks the downloaded file against what S3 says; returns what was verified.
    Single-part ETag = MD5 of the body. A multipart ETag is an MD5 of part MD5s; rclone then
    stores the whole-file MD5 as metadata md5chksum, which we use when present."""
    size = path.stat().st_size
    expected = int(head["ContentLength"])
    if size != expected:
        raise RestoreError(f"downloaded {size} bytes but S3 holds {expected}; download is corrupt")
    etag = str(head.get("ETag", "")).strip('"')
    if etag and "-" not in etag:
        if _md5_of(path).hexdigest() != etag:
            raise RestoreError(f"MD5 of the download does not match the S3 ETag {etag}")
        return f"size {size} B and MD5 = S3 ETag"
    meta = head.get("Metadata", {}).get("md5chksum")
    if meta:
        if base64.b64encode(_md5_of(path).digest()).decode() != meta:
            raise RestoreError("MD5 of the download does not match rclone's md5chksum metadata")
        return f"size {size} B and MD5 = rclone md5chksum metadata (multipart upload)"
    return f"size {size} B only (multipart ETag {etag} without md5chksum metadata)"


def fetch_dump(
    config: Config, key: str, workdir: Path, progress: bool = False
) -> Fetched:
    """Downloads one dump from S3 into workdir and verifies it."""
    if "-latest" in key.rsplit("/", 1)[-1]:
        raise RestoreError(f"{key}: *-latest names are moving links; pick a dated dump")
    head = s3.head(config.s3, key)
    path = workdir / key.rsplit("/", 1)[-1]
    size = int(head["ContentLength"])
    callback = Progress(key, size) if progress and sys.stderr.isatty() else None
    started = time.monotonic()
    s3.download(config.s3, key, str(path), callback)
    seconds = time.monotonic() - started
    return Fetched(key, path, size, verify(path, head), seconds)


def resolve_key(config: Config, key: str) -> str:
    """Accepts a full key or one relative to the db prefix (as `restore list` helps find)."""
    prefix = db_prefix(config)
    return key if key.startswith(f"{prefix}/") else f"{prefix}/{key.lstrip('/')}"


# -- pg_restore ----------------------------------------------------------------------------------


def list_args(archive: str) -> list[str]:
    return ["pg_restore", "--list", archive]


def restore_args(
    archive: str, *, connect: list[str], jobs: int, clean: bool, privileges: bool
) -> list[str]:
    # --no-owner: the roles of the source server may not exist where we restore; objects are
    # owned by the connecting user. --exit-on-error: a partial restore must not look like one.
    args = ["pg_restore", *connect, "--no-owner", "--exit-on-error", f"--jobs={jobs}"]
    if clean:
        args += ["--clean", "--if-exists"]
    if not privileges:
        args.append("--no-privileges")
    return [*args, archive]


def first_error(stderr: str) -> str:
    """The line of pg_restore/psql output that explains a failure."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "fatal" in line.lower():
            return line
    return lines[0] if lines else "no error text"


def pg_tool(name: str) -> str:
    """A PostgreSQL client binary: from PATH, else the newest /usr/lib/postgresql/N/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise RestoreError(f"{name} not found; install the PostgreSQL client (postgresql-client)")
    return str(candidates[-1])


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    tool = pg_tool(args[0])
    try:
        return subprocess.run(
            [tool, *args[1:]], capture_output=True, text=True, timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise RestoreError(f"{args[0]} did not finish within {timeout_s:.0f} s") from None


def check_archive(fetched: Fetched) -> int:
    """`pg_restore --list`: is this a readable custom-format archive? Returns its TOC size."""
    res = _run(list_args(str(fetched.path)), 300)
    if res.returncode != 0:
        raise RestoreError(f"{fetched.key} is not a readable pg_dump archive: "
                           f"{first_error(res.stderr)}")
    return sum(1 for line in res.stdout.splitlines() if line and not line.startswith(";"))


def count_relations(dsn: str) -> int:
    res = _run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", USER_RELATIONS_SQL], 60)
    if res.returncode != 0:
        raise RestoreError(f"cannot use the target database: {first_error(res.stderr)}")
    return int(res.stdout.strip())


@dataclass(frozen=True)
class RestoreResult:
    fetched: Fetched
    toc_entries: int
    restore_s: float


def restore_db(
    config: Config, key: str, target: str, *, jobs: int = 1, clean: bool = False,
    privileges: bool = True, workdir: Path, progress: bool = False,
) -> RestoreResult:
    """Fetch, verify and restore one dump into the target DSN. The target is checked first:
    an unreachable or non-empty target fails before minutes of download."""
    existing = count_relations(target)
    if existing and not clean:
        raise RestoreError(
            f"the target database already holds {existing} relation(s); restore into an empty "
            f"database or pass --clean to drop and replace the dump's objects"
        )
    fetched = fetch_dump(config, resolve_key(config, key), workdir, progress)
    toc = check_archive(fetched)
    started = time.monotonic()
    res = _run(
        restore_args(str(fetched.path), connect=["--dbname", target], jobs=jobs, clean=clean,
                     privileges=privileges),
        config.drill.timeout_s,
    )
    if res.returncode != 0:
        why = first_error(res.stderr)
        if privileges and re.search(r'role ".*" does not exist', why):
            why += " (create the role, or pass --no-privileges to restore without GRANTs)"
        raise RestoreError(f"pg_restore of {fetched.key} failed: {why}")
    return RestoreResult(fetched, toc, time.monotonic() - started)


# -- receipts ------------------------------------------------------------------------------------


def receipts_prefix(config: Config) -> str:
    if not config.drill.receipts_job:
        raise RestoreError("no receipts job: drill.receipts_job is empty")
    return config.job(config.drill.receipts_job).prefix


def restore_receipts(
    config: Config, dest: Path, *, force: bool = False,
    client: docker.DockerClient | None = None,
    on_line: Callable[[str], None] = print,
) -> str:
    """rclone sync s3://BUCKET/<receipts prefix>/ -> dest in a one-shot container.
    A sync deletes what the source lacks, so a non-empty dest needs force."""
    prefix = receipts_prefix(config)
    dest = dest.resolve()
    if dest.exists() and not dest.is_dir():
        raise RestoreError(f"{dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise RestoreError(
            f"{dest} is not empty; the sync would delete files that are not in S3. "
            f"Use an empty directory or pass --force"
        )
    # Created here, owned by us: Docker would create a missing bind path itself, as root.
    dest.mkdir(parents=True, exist_ok=True)
    s3.preflight(config.s3)
    client = client or docker_runner.connect()
    docker_runner.ensure_image(client, config.rclone.image)
    owner = dest.stat()
    timeout_s = config.job(config.drill.receipts_job).timeout_s
    on_line(f"restoring s3://{config.s3.bucket}/{prefix}/ -> {dest}")
    spec = rclone_spec(
        config,
        rclone.restore_command(config.s3.bucket, prefix, timeout_s),
        docker_runner.file_mount(str(dest), rclone.DEST_MOUNT, read_only=False),
        {docker_runner.LABEL_JOB: RESTORE_JOB, docker_runner.LABEL_RUN: new_run_id()},
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
            f"into {dest}")


def workdir_root(config: Config) -> Path:
    """Downloads go under state_dir (a disk), not /tmp (often RAM)."""
    root = config.state_dir / "restore"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    return root
