"""One proof: read back every byte of an item S3 holds and judge it.

A dump: restore's download and checks (size + MD5 against S3, the format from its bytes; an SQL
dump gunzipped whole and its closing comment found), then for an archive `pg_restore --list` and
`pg_restore -f /dev/null`, which reads and decompresses every data block (a -Fd directory: every
file). A receipt: size + MD5 against S3, then the sha256 of the bytes read equals the local
file's while the local file exists and is older than the upload (a file changed since is the
next sync's, not rot); otherwise (only in S3, or from a volume) the MD5 alone. Any other object:
size + MD5. Every object is read as restore reads it (restore.db.fetch_object): an encrypted
destination's through the decryption, every block authenticated.

A proof fails (returns why) only for bytes proven wrong; an object that cannot be read now (S3
down, a tool that did not run) raises Unreadable and is left due, nothing recorded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from supervisor.config.load import Config
from supervisor.core import paths
from supervisor.postgres import dumpformat, pgtools
from supervisor.record.proofs import Held
from supervisor.restore import db as restore
from supervisor.restore.db import KeysRefused, RestoreError, StoredDump
from supervisor.storage import crypt, s3
from supervisor.storage.destination import Destination

# `pg_restore -f /dev/null` reads the whole archive; bounded like a drill's restore.
READ_TIMEOUT_S = 3600.0


class Unreadable(Exception):
    """The item could not be read now; it stays due. One line."""


def prove_dump(config: Config, dump: StoredDump, workdir: Path) -> str:
    """"" when the dump reads back whole, else why not."""
    try:
        fetched = restore.fetch_dump(config, dump, workdir)
        if fetched.format in dumpformat.ARCHIVES:
            restore.check_archive(fetched)
            res = pgtools.run(["pg_restore", "-f", os.devnull, str(fetched.path)],
                              READ_TIMEOUT_S)
            if res.returncode != 0:
                return f"pg_restore cannot read it whole: {pgtools.first_error(res.stderr)}"
    except KeysRefused as exc:
        return f"{exc}: {'; '.join(exc.lines)}"
    except RestoreError as exc:
        return str(exc)
    except (s3.S3Error, pgtools.PgToolError, OSError) as exc:
        raise Unreadable(str(exc)) from None
    return ""


def prove_object(config: Config, dest: Destination, held: Held, workdir: Path,
                 local: Path | None, rel: str) -> str:
    """"" when one object's bytes match S3's checksums (and the local file, see above)."""
    path = workdir / "object"
    try:
        head = s3.head(dest, held.key)
        if str(head.get("ETag", "")).strip('"') != held.etag:
            raise Unreadable(f"{held.key} changed since it was listed")
        restore.fetch_object(config, dest, s3.S3Object(held.key, held.size, held.etag,
                                                       head["LastModified"]), path)
    except RestoreError as exc:
        return str(exc)
    except (s3.S3Error, OSError) as exc:
        raise Unreadable(str(exc)) from None
    if dest.encrypted:  # the local file's name: the key's without crypt's suffix
        rel = (crypt.plain(rel, 0) or (rel, 0))[0]
    if local is None or not paths.plain_relative(rel):
        return ""
    mine = _local_sha256(local, rel, head["LastModified"].timestamp())
    if mine is None:
        return ""
    with open(path, "rb") as f:
        theirs = hashlib.file_digest(f, "sha256").hexdigest()
    return "" if theirs == mine else "sha256 of the S3 bytes differs from the local file's"


def _local_sha256(root: Path, rel: str, uploaded: float) -> str | None:
    """The local file's sha256, when it is a regular file not modified since the upload;
    None otherwise (gone, not a file, changed since: nothing to compare against)."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = paths.open_regular_below(root_fd, rel)
    finally:
        os.close(root_fd)
    if fd is None:
        return None
    with open(fd, "rb") as f:
        if os.fstat(f.fileno()).st_mtime >= uploaded:
            return None
        return hashlib.file_digest(f, "sha256").hexdigest()
