"""Pure: a dump's format from its first bytes, and -Fd directories read as one dump each.
(Real pg_dump/pg_dumpall output of every format goes through tests/test_dump_formats.py.)"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest

from supervisor.postgres import dumpformat, dumps
from supervisor.postgres.dumpformat import FormatError

# The opening lines pg_dump (plain) and pg_dumpall write, PostgreSQL 15.
PLAIN = b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nSET statement_timeout = 0;\n"
CLUSTER = b"--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n\nSET x = off;\n"


@pytest.mark.parametrize(("head", "files", "fmt"), [
    (b"PGDMP\x01\x0f\x00", (), dumpformat.CUSTOM),
    (gzip.compress(PLAIN, 1, mtime=0), (), dumpformat.PLAIN_GZ),
    (gzip.compress(CLUSTER, mtime=0), (), dumpformat.CLUSTER_GZ),
    (gzip.compress(PLAIN * 2000, mtime=0)[:4096], (), dumpformat.PLAIN_GZ),  # only the head is read
    (b"PGDMP\x01", ("last/a/toc.dat", "last/a/3338.dat.gz"), dumpformat.DIRECTORY),
    (PLAIN, (), dumpformat.PLAIN),  # POSTGRES_EXTRA_OPTS without -Z
])
def test_detect(head: bytes, files: tuple[str, ...], fmt: str) -> None:
    assert dumpformat.detect("last/a", head, files) == fmt


@pytest.mark.parametrize(("head", "files", "error"), [
    (b"", (), "last/a: empty (0 B)"),
    (b"not a dump" * 10, (), "last/a is not a readable pg_dump archive"),
    (CLUSTER, (), "last/a is not a readable pg_dump archive"),  # pbl always gzips pg_dumpall
    (gzip.compress(b"hello", mtime=0), (), "gzip data that is not SQL from pg_dump or pg_dumpall"),
    (gzip.compress(b"x", mtime=0)[:10] + b"\xff" * 20, (), "last/a: corrupt gzip data"),
    (b"PGDMP", ("last/a/3338.dat.gz",), "last/a/ has no toc.dat"),
])
def test_anything_else_is_named_in_a_clear_error(head: bytes, files: tuple[str, ...],
                                                 error: str) -> None:
    with pytest.raises(FormatError, match=error.replace("(", r"\(").replace(")", r"\)")):
        dumpformat.detect("last/a", head, files)


# The last lines pg_dump and pg_dumpall write in plain format (\unrestrict: since 15.14).
FOOTER = b"\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n"
CLUSTER_FOOTER = b"\n--\n-- PostgreSQL database cluster dump complete\n--\n\n"


@pytest.mark.parametrize(("fmt", "footer"), [
    (dumpformat.PLAIN, FOOTER), (dumpformat.PLAIN_GZ, FOOTER),
    (dumpformat.CLUSTER_GZ, FOOTER + CLUSTER_FOOTER)])
def test_an_sql_dump_cut_off_is_named_and_a_whole_one_passes(fmt: str, footer: bytes) -> None:
    body = PLAIN + b"COPY public.orders (id) FROM stdin;\n1\n\\.\n\n"
    dumpformat.check_complete("last/a", fmt, body + footer)
    with pytest.raises(FormatError, match=r"last/a: SQL without the closing '.*': cut off"):
        dumpformat.check_complete("last/a", fmt, body)
    if fmt == dumpformat.CLUSTER_GZ:  # its first database's end is not the cluster's
        with pytest.raises(FormatError, match="cluster dump complete"):
            dumpformat.check_complete("last/a", fmt, body + FOOTER)


def test_an_archive_is_not_checked_for_a_footer() -> None:
    """pg_restore reads an archive's table of contents and fails on a cut one itself: only the
    SQL scripts, which psql would run up to the cut, are held to the footer."""
    cut = PLAIN + b"COPY public.orders (id) FROM stdin;\n1\n"
    for fmt in (dumpformat.CUSTOM, dumpformat.DIRECTORY):
        assert dumpformat.check_complete("last/a", fmt, cut) is None
        assert dumpformat.check_complete("last/a", fmt, b"") is None
    with pytest.raises(FormatError, match="last/a: SQL without the closing"):
        dumpformat.check_complete("last/a", dumpformat.PLAIN, cut)


def test_a_directory_dump_is_one_dump_and_its_period_copies_too() -> None:
    at = datetime(2026, 11, 24, 1, 15, tzinfo=UTC)
    entries = [
        ("last/ardua-20261124-011500/toc.dat", 100, at),
        ("last/ardua-20261124-011500/3338.dat.gz", 900, at + timedelta(seconds=1)),
        ("daily/ardua-20261124/toc.dat", 100, at),
        ("daily/ardua-20261124/3338.dat.gz", 900, at + timedelta(seconds=1)),  # hard links
        ("daily/ardua-20261125-new/toc.dat", 100, at),  # backup.sh is building it right now
        ("last/ardua-20261123-011500.dump", 800, at - timedelta(days=1)),
    ]
    found = sorted(dumps.find(entries, "last"), key=lambda f: f.dump.key)
    assert [(f.dump.key, f.dump.size, f.dump.is_directory, f.in_dump_dir) for f in found] == [
        ("daily/ardua-20261124", 1000, True, False),
        ("last/ardua-20261123-011500.dump", 800, False, True),
        ("last/ardua-20261124-011500", 1000, True, True),
    ]
    (db,) = dumps.by_database(entries, "last")
    assert db.newest is not None and db.newest.modified == at + timedelta(seconds=1)
    assert db.previous is not None and db.previous.key == "last/ardua-20261123-011500.dump"
