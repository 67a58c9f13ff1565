"""Which kind of PostgreSQL dump a file is, read from its first bytes, and how each restores.

postgres-backup-local writes what POSTGRES_EXTRA_OPTS and POSTGRES_CLUSTER ask of its backup.sh:
`pg_dump -d DB -f FILE ${POSTGRES_EXTRA_OPTS}` (its default `-Z1`: plain SQL, gzip-compressed;
options without `-Z`: plain SQL as it is; `-Fc`: a custom archive; `-Fd`: a directory) or,
with POSTGRES_CLUSTER=TRUE, `pg_dumpall -l DB ${POSTGRES_EXTRA_OPTS} | gzip > FILE` (the whole
cluster, roles included). The name's suffix is whatever BACKUP_SUFFIX says, so the bytes decide.
"""

from __future__ import annotations

import zlib

CUSTOM = "custom"  # pg_dump -Fc: pg_restore
DIRECTORY = "directory"  # pg_dump -Fd: pg_restore on the directory, --jobs N
PLAIN_GZ = "sql.gz"  # pg_dump -Z1 (pbl's default): gunzip | psql, one transaction
PLAIN = "sql"  # pg_dump with no -Z (POSTGRES_EXTRA_OPTS overridden): psql, one transaction
CLUSTER_GZ = "cluster.sql.gz"  # pg_dumpall | gzip: psql into an empty server
ARCHIVES = (CUSTOM, DIRECTORY)  # read by pg_restore; the others are SQL scripts for psql

HEAD_BYTES = 4096  # enough for the gzip header and the dump's opening comment
TOC = "toc.dat"  # a directory dump's table of contents (itself starts with PGDMP)
_PGDMP = b"PGDMP"
_GZIP = b"\x1f\x8b"
# The first comment pg_dump / pg_dumpall write in plain format.
_PLAIN_HEADER = b"-- PostgreSQL database dump"
_CLUSTER_HEADER = b"-- PostgreSQL database cluster dump"
# The last comment of each SQL script (before 15.14's `\unrestrict` line): without it, the
# script was cut off.
_FOOTERS = {
    PLAIN: b"-- PostgreSQL database dump complete",
    PLAIN_GZ: b"-- PostgreSQL database dump complete",
    CLUSTER_GZ: b"-- PostgreSQL database cluster dump complete",
}


class FormatError(Exception):
    """Not a dump any PostgreSQL tool can restore; the message names the file."""


def detect(name: str, head: bytes, files: tuple[str, ...] = ()) -> str:
    """The format of a dump from its first bytes (a directory dump: of its toc.dat, with the
    names of its files in `files`)."""
    if files:
        if not any(f.rsplit("/", 1)[-1] == TOC for f in files):
            raise FormatError(f"{name}/ has no {TOC}: not a pg_dump -Fd directory")
        if not head.startswith(_PGDMP):
            raise FormatError(f"{name}/{TOC} is not a pg_dump table of contents")
        return DIRECTORY
    if head.startswith(_PGDMP):
        return CUSTOM
    if head.startswith(_GZIP):
        try:
            text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head)
        except zlib.error as exc:
            raise FormatError(f"{name}: corrupt gzip data ({exc})") from None
        opening = _opening(text)
        if opening.startswith(_CLUSTER_HEADER[3:]):
            return CLUSTER_GZ
        if opening.startswith(_PLAIN_HEADER[3:]):
            return PLAIN_GZ
        raise FormatError(f"{name}: gzip data that is not SQL from pg_dump or pg_dumpall")
    if not head:
        raise FormatError(f"{name}: empty (0 B): a pg_dump that failed leaves such a file")
    if _opening(head).startswith(_PLAIN_HEADER[3:]):
        return PLAIN
    # pbl pipes a cluster dump through gzip always: an uncompressed one is not its output.
    raise FormatError(f"{name} is not a readable pg_dump archive: no 'PGDMP' header, not "
                      f"SQL from pg_dump (plain or gzip-compressed), not a -Fd directory")


def _opening(text: bytes) -> bytes:
    """The start of a plain dump's first comment, past its `--` lines."""
    return text.lstrip(b"-\n ")[:200]


def check_complete(name: str, fmt: str, tail: bytes) -> None:
    """Raises FormatError when an SQL dump's script (its last HEAD_BYTES, decompressed, in
    `tail`) lacks pg_dump's or pg_dumpall's closing comment. pbl's pg_dump writes under the
    final name, so a failed one leaves a script that stops mid-way, and `pg_dumpall | gzip`
    leaves a well-formed gzip of one: psql would restore what it holds as if it were whole."""
    footer = _FOOTERS.get(fmt)
    if footer is not None and footer not in tail:
        raise FormatError(f"{name}: SQL without the closing '{footer[3:].decode()}': cut off "
                          f"(a pg_dump or pg_dumpall that failed leaves such a file)")
