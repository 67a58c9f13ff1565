"""Getting backups back out of S3: list dumps, fetch and verify one, restore it, restore receipts.

Everything an operator needs on a bad day; the drill (restore.drill) reuses the same steps.
Every postgres-backup-local format restores (postgres.dumpformat): custom and directory dumps
with this host's pg_restore (no meta-commands: an archive's SQL runs in the target server, not
here), plain and cluster SQL dumps with psql in a throwaway container (restore.sandbox: a script
from S3 never reaches a psql on this host, docs/security.md).

Point in time (a versioned bucket, supervisor.storage.versions): every step takes `at` (an aware
datetime, None = now) and then works on the object versions S3 held at that time, so a bad sync
(a wiped folder forced through, dumps overwritten) can be undone. Seams for the CLI:

    list_dumps(config, at=None, dest=None) -> list[StoredDump]   (lists, then dumps_in)
    dumps_in(config, held, at, dest) -> list[StoredDump]         restore list --at TIME, drill
    find_dump(config, key, at=None, dest=None) -> StoredDump
    restore_db(config, key, target, ..., at=None, dest=None)     restore db KEY --at TIME

`dest` is the destination read (restore.source.choose picks it; None: the first listed); each
StoredDump remembers where it was listed, and is fetched from there.

restore.receipts.restore_receipts(config, dest, ..., at=None) gets the receipts back
(`restore receipts DEST --at TIME`).

`--at TIME` parses with supervisor.storage.versions.parse_at; without versioning each raises
versions.VersioningOff (an S3Error: one line naming the command that turns it on).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import re
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from supervisor.config.load import Config
from supervisor.containers.engine import DockerError
from supervisor.core.text import printable
from supervisor.postgres import dumpformat, dumps, pgtools
from supervisor.restore import decrypt, names, sandbox
from supervisor.storage import crypt, cryptform, markers, s3, versions
from supervisor.storage.destination import Destination

# The name timestamp postgres-backup-local gives last/ dumps (DB-%Y%m%d-%H%M%S<suffix>).
_NAME_STAMP = re.compile(r"-(\d{8}-\d{6})(?!\d)[^/]*$")


class RestoreError(Exception):
    """A restore problem, phrased as one line that says what is wrong."""


class KeysRefused(RestoreError):
    """S3 keys that name no path inside the target (restore.names), refused by name: `lines`
    says one line each which and why; the message counts them and says what was done."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message)
        self.lines = lines


# -- listing -------------------------------------------------------------------------------------


def db_prefix(config: Config) -> str:
    return config.job(config.drill.db_job).prefix


@dataclass(frozen=True)
class StoredDump:
    """One dump in S3: a file, or a -Fd directory whose files make one dump."""

    key: str  # the full S3 key; a directory dump: its prefix, without the trailing slash
    database: str
    size: int  # a directory: the sum of its files
    uploaded: datetime  # S3's LastModified (a directory: its newest file)
    # the object, or the directory's files; versions.ObjectVersion when listed as of a time
    objects: tuple[s3.S3Object | versions.ObjectVersion, ...]
    dated: bool = True  # in dump_dir/ under its dated name, not a daily/weekly/monthly link
    at: datetime | None = None  # listed as S3 held it at this time (None: as it is now)
    source: Destination | None = None  # where it was listed (None: the first destination)

    @property
    def is_directory(self) -> bool:
        key = self.source.object_key(self.key) if self.source else self.key
        return len(self.objects) != 1 or self.objects[0].key != key

    @property
    def shown(self) -> str:
        """Its key as printed: a directory with its slash, control characters escaped."""
        return printable(f"{self.key}/" if self.is_directory else self.key)

    def dest(self, config: Config) -> Destination:
        return self.source or config.destination()


def _sort_key(d: StoredDump) -> tuple[bool, str, str]:
    """Dated last/ dumps first, by their name stamp (LastModified is the upload time, and a
    first sync uploads every dump at once); last/ always holds the newest dump. Then the
    daily/weekly/monthly hard links, by LastModified."""
    match = _NAME_STAMP.search(d.key)
    stamp = match.group(1) if d.dated and match else f"{d.uploaded:%Y%m%d-%H%M%S}"
    return (d.dated, stamp, d.key)


def list_dumps(config: Config, at: datetime | None = None,
               dest: Destination | None = None) -> list[StoredDump]:
    """Dumps under the db job's prefix, newest first, named as postgres-backup-local names them.
    `*-latest*` names are symlinks locally (rclone skips them) or, with
    BACKUP_LATEST_TYPE=hardlink, copies of a dated dump: never offered.
    With `at`: the dumps as S3 held them then (each object the version live at `at`)."""
    prefix = db_prefix(config)
    dest = dest or config.destination()
    held: Mapping[str, s3.S3Object | versions.ObjectVersion] = (
        s3.list_objects(dest, prefix) if at is None else versions.state_at(dest, prefix, at)
    )
    return dumps_in(config, held, at, dest)


def dumps_in(config: Config, held: Mapping[str, s3.S3Object | versions.ObjectVersion],
             at: datetime | None, dest: Destination) -> list[StoredDump]:
    """The dumps in a listing of the db job's prefix at `dest` (list_dumps', or the one
    restore.source made when it chose the destination), newest first."""
    prefix = db_prefix(config)
    found = dumps.find(((rel, o.size, o.last_modified) for rel, o in held.items()),
                       config.health.dump_dir)
    stored = [
        StoredDump(f"{prefix}/{f.dump.key}", f.database, f.dump.size, f.dump.modified,
                   tuple(held[rel] for rel, _ in f.dump.files or ((f.dump.key, 0),)),
                   f.in_dump_dir, at, dest)
        for f in found
    ]
    return sorted(stored, key=_sort_key, reverse=True)


def newest_per_database(
    listed: list[StoredDump], databases: Iterable[str] = ()
) -> dict[str, StoredDump | None]:
    """Each database's newest dated dump (the list is newest first); `databases` pins which."""
    pinned = set(databases)
    newest: dict[str, StoredDump | None] = dict.fromkeys(pinned)
    for d in listed:
        if d.dated and (not pinned or d.database in pinned) and newest.get(d.database) is None:
            newest[d.database] = d
    return dict(sorted(newest.items()))


# A dump's name time (postgres-backup-local's container clock, often not UTC) may be this far
# ahead of now; later ones are not made yet: a name from whoever can write the bucket.
FUTURE_MARGIN = timedelta(days=1)


def split_future(listed: list[StoredDump], now: datetime) -> tuple[list[StoredDump],
                                                                   list[StoredDump]]:
    """(dumps, those whose name time is after now + FUTURE_MARGIN). Dumps sort by their name
    time, so `ardua-20991231-000000.sql.gz` would be every drill's newest dump for 70 years,
    and the real ones never drilled again."""
    latest = f"{now.astimezone(UTC) + FUTURE_MARGIN:%Y%m%d-%H%M%S}"
    future = [d for d in listed if d.dated and (m := _NAME_STAMP.search(d.key))
              and m.group(1) > latest]
    return [d for d in listed if d not in future], future


def future_note(future: list[StoredDump]) -> str:
    return (f"ignored {len(future)} dump(s) named with a time in the future (not made by "
            f"postgres-backup-local yet; whoever can write the bucket can name a file so): "
            f"{', '.join(d.shown for d in future)}") if future else ""


def split_empty(listed: list[StoredDump]) -> tuple[list[StoredDump], list[StoredDump]]:
    """(dumps that may be archives, 0-byte ones). A pg_dump that fails leaves its output file
    under the final name in last/, often empty (postgres-backup-local writes straight there);
    no restore tool can read 0 bytes, so such a key is never offered or drilled."""
    return [d for d in listed if d.size], [d for d in listed if not d.size]


def skipped_note(empty: list[StoredDump]) -> str:
    return (f"skipped {len(empty)} empty dump(s) (0 B, left by a failed pg_dump; not an "
            f"archive): {', '.join(d.shown for d in empty)}") if empty else ""


def format_of(config: Config, dump: StoredDump) -> str:
    """The dump's format from its first bytes in S3 (a ranged GET), or why it has none."""
    dest = dump.dest(config)
    names = tuple(_file_name(dest, o.key) for o in dump.objects) if dump.is_directory else ()
    first = (next((o for o in dump.objects if _file_name(dest, o.key) == dumpformat.TOC), None)
             if dump.is_directory else dump.objects[0])
    try:
        if first is None:
            head = b""
        elif dest.encrypted:  # the first block, opened (a wrong key: its one line)
            head = cryptform.plain_head(dest, first, dumpformat.HEAD_BYTES)
        else:
            head = s3.read_head(dest, first.key, dumpformat.HEAD_BYTES, first.version_id)
        return dumpformat.detect(dump.key, head, names)
    except dumpformat.FormatError:
        return "not-a-dump"


def format_listing(listed: Iterable[StoredDump], formats: dict[str, str]) -> str:
    rows = [f"{'LAST MODIFIED (UTC)':<21} {'SIZE':>12}  {'FORMAT':<14}  KEY"]
    rows += [
        f"{markers.timestamp(d.uploaded)}  {d.size:>12}  {formats.get(d.key, '?'):<14}  {d.shown}"
        for d in listed
    ]
    return "\n".join(rows)


# -- fetch and verify ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    key: str
    path: Path  # the file, or the directory of a -Fd dump
    size: int
    verified: str  # what was checked against S3, in words
    seconds: float
    format: str  # supervisor.postgres.dumpformat, read from the downloaded bytes


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
    Single-part ETag = MD5 of the body. A multipart ETag is an MD5 of part MD5s, and the ETag of
    an SSE-KMS or SSE-C object is no MD5 at all (AWS's common response headers); rclone then
    stores the whole-file MD5 as metadata md5chksum, which we use when present."""
    size = path.stat().st_size
    expected = int(head["ContentLength"])
    if size != expected:
        raise RestoreError(f"downloaded {size} bytes but S3 holds {expected}; download is corrupt")
    etag = str(head.get("ETag", "")).strip('"')
    kms_or_c = bool(head.get("ServerSideEncryption") == "aws:kms"
                    or head.get("SSECustomerAlgorithm"))
    if etag and "-" not in etag and not kms_or_c:
        if _md5_of(path).hexdigest() != etag:
            raise RestoreError(f"MD5 of the download does not match the S3 ETag {etag}")
        return f"size {size} B and MD5 = S3 ETag"
    meta = head.get("Metadata", {}).get("md5chksum")
    if meta:
        if base64.b64encode(_md5_of(path).digest()).decode() != meta:
            raise RestoreError("MD5 of the download does not match rclone's md5chksum metadata")
        why = "SSE-KMS/SSE-C object" if kms_or_c else "multipart upload"
        return f"size {size} B and MD5 = rclone md5chksum metadata ({why})"
    why = "an SSE-KMS/SSE-C ETag is no MD5" if kms_or_c else f"multipart ETag {etag}"
    return f"size {size} B only ({why}, without md5chksum metadata)"


def _download(dest: Destination, obj: s3.S3Object | versions.ObjectVersion, path: Path,
              progress: bool) -> str:
    """Downloads one object, or with a version_id that version, and verifies it against the
    HEAD of that same version."""
    key, version_id = obj.key, obj.version_id
    head = s3.head(dest, key, version_id)
    size = int(head["ContentLength"])
    callback = Progress(printable(key), size) if progress and sys.stderr.isatty() else None
    s3.download(dest, key, str(path), callback, version_id)
    try:
        verified = verify(path, head)
    except RestoreError as exc:
        raise RestoreError(f"{printable(key)}{f' (version {version_id})' if version_id else ''}"
                           f": {exc}") from None
    return f"{verified}, version {version_id}" if version_id else verified


def fetch_object(config: Config, dest: Destination, obj: s3.S3Object | versions.ObjectVersion,
                 path: Path, progress: bool = False) -> str:
    """The file an object (or one version of it, as listed: s3.list_objects, versions.state_at)
    at `dest` holds, written to `path` and verified; returns what was verified, in words. Every
    restore reads through this. Encrypted: the key is first proved on the object's first
    block (cryptform.WrongKey, one line, before anything is downloaded), the ciphertext is
    downloaded and verified as a plain object is, then decrypted (restore.decrypt: every block
    authenticated) and its size checked against crypt's. Raises RestoreError, S3Error."""
    if not dest.encrypted:
        return _download(dest, obj, path, progress)
    cryptform.plain_head(dest, obj)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".decrypt-") as tmp:
        encrypted, out = Path(tmp, "in"), Path(tmp, "out")
        encrypted.mkdir()
        out.mkdir()
        verified = _download(dest, obj, encrypted / crypt.object_name("file"), progress)
        try:
            decrypt.decrypt_folder(config, dest, encrypted, out)
        except decrypt.DecryptError as exc:
            raise RestoreError(f"{printable(obj.key)}: {exc}") from None
        expected = crypt.decrypted_size((encrypted / crypt.object_name("file")).stat().st_size)
        if (out / "file").stat().st_size != expected:
            raise RestoreError(f"{printable(obj.key)}: decrypted {(out / 'file').stat().st_size}"
                               f" bytes, crypt's size of the object is {expected}")
        os.replace(out / "file", path)
    return f"{verified} (ciphertext), decrypted with every block authenticated"


def _file_name(dest: Destination, key: str) -> str:
    """The file name an object's key gives (an encrypted one's without `.bin`)."""
    name = key.rsplit("/", 1)[-1]
    return name[:-len(crypt.SUFFIX)] if dest.encrypted and name.endswith(crypt.SUFFIX) else name


def fetch_dump(config: Config, dump: StoredDump, workdir: Path, progress: bool = False) -> Fetched:
    """Downloads one dump from S3 into workdir, verifies every file of it against S3 and reads
    its format from the downloaded bytes. A dump listed with `at` (list_dumps/find_dump) is
    fetched as the versions it was made of then, each verified against its own HEAD.
    A directory dump with a file name that is no file name (`..`, restore.names) is refused
    before anything is downloaded."""
    path = workdir / dump.key.rsplit("/", 1)[-1]
    started = time.monotonic()
    if dump.is_directory:
        _refuse_names(dump)
        path.mkdir()
        for obj in dump.objects:  # a -Fd dump's files sit flat in its directory
            fetch_object(config, dump.dest(config), obj,
                         path / _file_name(dump.dest(config), obj.key), progress)
        verified = f"{len(dump.objects)} files, size and MD5 of each = S3"
        names = tuple(p.name for p in path.iterdir())
        first = path / dumpformat.TOC
    else:
        verified = fetch_object(config, dump.dest(config), dump.objects[0], path, progress)
        names, first = (), path
    seconds = time.monotonic() - started
    try:
        with open(first, "rb") as f:
            fmt = dumpformat.detect(dump.key, f.read(dumpformat.HEAD_BYTES), names)
        dumpformat.check_complete(dump.key, fmt, _script_tail(dump.key, path, fmt))
    except FileNotFoundError:
        fmt = dumpformat.detect(dump.key, b"", names)  # raises: no toc.dat
    except dumpformat.FormatError as exc:
        raise RestoreError(str(exc)) from None
    return Fetched(dump.key, path, dump.size, verified, seconds, fmt)


def _refuse_names(dump: StoredDump) -> None:
    """Every file of a directory dump must be a plain name inside it: S3 can hold
    `<dump>/..` (written by anyone who can write the bucket), which would be downloaded onto
    the work directory's parent."""
    refused = [(o.key, why) for o in dump.objects
               if (why := names.refusal(o.key[len(dump.key) + 1:]))]
    if refused:
        raise KeysRefused(f"{len(refused)} file name(s) of {dump.shown} refused: "
                          f"nothing restored", [names.refused_line(k, w) for k, w in refused])


# A gzip stream may unpack to at most this many times its size (and always to MIN_UNPACKED):
# pg_dump -Z1 SQL unpacks 3-10x, deflate's limit is ~1030x (a "gzip bomb").
MAX_GZIP_RATIO = 200
MIN_UNPACKED = 1 << 30


def _script_tail(key: str, path: Path, fmt: str) -> bytes:
    """The last HEAD_BYTES of an SQL dump's script; a compressed one is read to its end (1.9 s
    for 190 MB of -Z1 gzip, measured), which also proves its gzip stream whole, up to
    MAX_GZIP_RATIO times its size. b"" for an archive."""
    if fmt in dumpformat.ARCHIVES:
        return b""
    if fmt == dumpformat.PLAIN:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - dumpformat.HEAD_BYTES))
            return f.read()
    limit = max(MIN_UNPACKED, MAX_GZIP_RATIO * path.stat().st_size)
    tail, unpacked = b"", 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                unpacked += len(chunk)
                if unpacked > limit:
                    raise dumpformat.FormatError(
                        f"{key}: its gzip data unpacks to more than {limit >> 20} MiB "
                        f"({MAX_GZIP_RATIO}x its size, pg_dump's SQL compresses far less): "
                        f"not restored (a gzip bomb?)")
                tail = (tail + chunk)[-dumpformat.HEAD_BYTES:]
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise dumpformat.FormatError(f"{key}: gzip data cut off or corrupt ({exc})") from None
    return tail


def resolve_key(config: Config, key: str) -> str:
    """Accepts a full key or one relative to the db prefix (as `restore list` helps find)."""
    prefix = db_prefix(config)
    key = key.rstrip("/")
    return key if key.startswith(f"{prefix}/") else f"{prefix}/{key.lstrip('/')}"


def find_dump(config: Config, key: str, at: datetime | None = None,
              dest: Destination | None = None) -> StoredDump:
    key = resolve_key(config, key)
    dest = dest or config.destination()
    if dest.encrypted and key.endswith(crypt.SUFFIX):  # its S3 key, as a bucket browser shows it
        key = key[:-len(crypt.SUFFIX)]
    shown = printable(dest.key_url(key))
    if "-latest" in key.rsplit("/", 1)[-1]:
        raise RestoreError(f"{printable(key)}: *-latest names are moving links; pick a dated "
                           f"dump")
    found = next((d for d in list_dumps(config, at, dest) if d.key == key), None)
    if found is None and at is not None:
        when = versions.format_at(at)
        raise RestoreError(f"{shown} did not exist at {when} (or is not named as "
                           f"postgres-backup-local names dumps); see `ardua-backup restore list "
                           f"--at {when}`")
    if found is None:
        raise RestoreError(f"{shown} does not exist (or is not named as postgres-backup-local "
                           f"names dumps); see `ardua-backup restore list`")
    if not found.size:
        raise RestoreError(f"{found.shown} is empty (0 B): a pg_dump that failed left it; pick "
                           f"another")
    return found


# -- restore into a server -----------------------------------------------------------------------


def _run(args: list[str], timeout_s: float) -> pgtools.ToolRun:
    try:
        return pgtools.run(args, timeout_s)
    except pgtools.PgToolError as exc:
        raise RestoreError(str(exc)) from None


def check_archive(fetched: Fetched) -> int:
    """`pg_restore --list`: a readable custom or directory archive? Returns its TOC size."""
    res = _run(pgtools.list_args(str(fetched.path)), 300)
    if res.returncode != 0:
        raise RestoreError(f"{fetched.key} is not a readable pg_dump archive: "
                           f"{pgtools.first_error(res.stderr)}")
    # Its entries: every line but the `;` comments of its header (a dozen or so).
    return res.stdout_lines - sum(1 for line in res.stdout.splitlines()
                                  if not line or line.startswith(";"))


def _count(dsn: str, sql: str) -> int:
    res = _run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql], 60)
    if res.returncode != 0:
        raise RestoreError(f"cannot use the target database: {pgtools.first_error(res.stderr)}")
    return int(res.stdout.strip())


@dataclass(frozen=True)
class RestoreResult:
    fetched: Fetched
    detail: str  # what was restored, in words (archive entries, or the SQL script)
    restore_s: float


def _check_target(fmt: str, target: str, clean: bool, privileges: bool) -> None:
    """Before minutes of download: the target is reachable and can take this kind of dump."""
    if fmt in dumpformat.ARCHIVES:
        existing = _count(target, pgtools.USER_RELATIONS_SQL)
        if existing and not clean:
            raise RestoreError(
                f"the target database already holds {existing} relation(s); restore into an "
                f"empty database or pass --clean to drop and replace the dump's objects")
        return
    if clean or not privileges:
        raise RestoreError(f"a {fmt} dump is an SQL script restored as written: --clean and "
                           f"--no-privileges only apply to pg_restore archives")
    if fmt == dumpformat.CLUSTER_GZ:
        if _count(target, pgtools.USER_DATABASES_SQL):
            raise RestoreError("a cluster dump (pg_dumpall) creates its roles and databases: "
                               "restore it into an empty server (only postgres/template dbs)")
    elif _count(target, pgtools.USER_RELATIONS_SQL):
        raise RestoreError("the target database is not empty; restore into an empty database")


def restore_db(
    config: Config, key: str, target: str, *, jobs: int = 1, clean: bool = False,
    privileges: bool = True, workdir: Path, progress: bool = False, at: datetime | None = None,
    dest: Destination | None = None,
) -> RestoreResult:
    """Fetch, verify and restore one dump into the target DSN (for a cluster dump: a server,
    any database of it). The target is checked first, against the format the name and S3's
    first bytes say, so an unusable target fails before minutes of download. With `at`: the
    dump as S3 held it then (the versions live at that time)."""
    dump = find_dump(config, key, at, dest)
    _check_target(format_of(config, dump), target, clean, privileges)
    fetched = fetch_dump(config, dump, workdir, progress)
    if fetched.format not in dumpformat.ARCHIVES:
        return _restore_script(config, fetched, target)
    detail = f"{check_archive(fetched)} archive entries"
    args = pgtools.restore_args(str(fetched.path), connect=["--dbname", target], jobs=jobs,
                                clean=clean, privileges=privileges)
    started = time.monotonic()
    res = _run(args, config.drill.timeout_s)
    if res.returncode != 0:
        why = pgtools.first_error(res.stderr)
        if pgtools.MISSING_ROLE.search(why):
            why += " (create the role, or pass --no-privileges to restore without GRANTs)"
        raise RestoreError(f"restore of {fetched.key} failed: {why}")
    return RestoreResult(fetched, detail, time.monotonic() - started)


def _restore_script(config: Config, fetched: Fetched, target: str) -> RestoreResult:
    """An SQL script: psql in a throwaway container (restore.sandbox), never this host's."""
    try:
        res = sandbox.run_script(config, fetched.path, fetched.format, ["-d", target])
    except DockerError as exc:
        raise RestoreError(f"restore of {fetched.key}: psql runs in a container of drill.image "
                           f"and Docker failed: {exc}") from None
    if res.timed_out:
        raise RestoreError(f"restore of {fetched.key} did not finish within "
                           f"{config.drill.timeout_s:.0f} s (drill.timeout)")
    errors = pgtools.script_errors(res.stderr) if fetched.format == dumpformat.CLUSTER_GZ else []
    if res.exit_code != 0 or errors:
        why = errors[0] if errors else pgtools.first_error(res.stderr)
        if pgtools.MISSING_ROLE.search(why):
            why += " (create the role first)"
        raise RestoreError(f"restore of {fetched.key} failed: {why}")
    mode = ", restricted mode" if res.restricted else ""
    detail = f"{fetched.format} script via psql in a container of drill.image{mode}"
    return RestoreResult(fetched, detail, res.seconds)


def workdir_root(config: Config) -> Path:
    """Downloads go under state_dir (a disk), not /tmp (often RAM)."""
    root = config.state_dir / "restore"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    return root
