"""Restores from several destinations, and object names from S3 as hostile input.

Two SeaweedFS servers (primary, offsite): a restore uses the first destination that answers and
holds the dumps, says which one and why the earlier ones were passed over; `--destination`
names exactly one. Keys that SeaweedFS refuses to store (`..`, `.`, NUL; it folds `//` and `\\`
into `/`, measured) are planted in moto's S3 server, which stores any key as given
(tests/harness/motoserver.py): they are refused by name, and nothing lands outside the target.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from supervisor import cli
from supervisor.storage import versions
from tests.conftest import two_destinations
from tests.harness.cli import _detach_cli_logging  # noqa: F401 - autouse fixture
from tests.harness.images import ensure_debian_pg_image
from tests.harness.motoserver import MotoServer
from tests.harness.pgimage import ensure_postgres_image
from tests.harness.poll import poll
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server, server_now
from tests.harness.sourcedb import CUSTOMERS, NEW_ORDERS, counts, source_db

pytestmark = pytest.mark.docker

KEY = "postgres/last/ardua-20260302-010000.dump"
# A dump name as postgres-backup-local writes it (DB-%Y%m%d-%H%M%S<suffix>), its suffix an
# xterm "set window title" sequence: OSC 0 ; text BEL.
TITLE_KEY = "postgres/last/ardua-20260303-010000\x1b]0;pwned\x07.dump"


@pytest.fixture(scope="module")
def dump(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real pg_dump -Fc of a database with NEW_ORDERS orders and CUSTOMERS customers."""
    folder = tmp_path_factory.mktemp("dest-dump")
    return pg.pg_dump(source_db(pg, NEW_ORDERS), folder / "new.dump").read_bytes()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def _two(tmp_path: Path, write_config, s3server: S3Server, bucket: str,
         offsite_s3server: S3Server, offsite_bucket: str, **more) -> Path:
    return write_config(tmp_path, s3server, bucket, overrides=two_destinations(
        tmp_path, s3server, bucket, offsite_s3server, offsite_bucket), **more)


def _run(path: Path, capsys, *args: str) -> tuple[int, str, list[str]]:
    code = cli.main(["--config", str(path), *args])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def _target(pg: PgServer) -> str:
    name = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(name)
    return name


def test_restore_from_offsite_when_primary_is_empty(
    tmp_path: Path, write_config, s3server: S3Server, bucket: str,
    offsite_s3server: S3Server, offsite_bucket: str, pg: PgServer, dump: bytes, capsys,
) -> None:
    path = _two(tmp_path, write_config, s3server, bucket, offsite_s3server, offsite_bucket)
    for server, name in ((s3server, bucket), (offsite_s3server, offsite_bucket)):
        server.put(name, KEY, dump)
        server.put(name, "postgres/.last_success", b"2026-03-02T01:15:04Z OK\n")
    s3server.client().delete_object(Bucket=bucket, Key=KEY)  # emptied: only its sentinel left
    why = f"(primary: nothing under s3://{bucket}/postgres/)"

    code, out, err = _run(path, capsys, "restore", "list")
    assert code == 0 and [line.split()[-1] for line in out.splitlines()[1:]] == [KEY]
    assert err == [f"ardua-backup: listed from destination offsite {why}"]

    db = _target(pg)
    code, out, err = _run(path, capsys, "restore", "db", KEY, "--target", pg.dsn(db))
    assert code == 0, err
    assert out.startswith(f"restored {KEY} (custom) from destination offsite {why}: ")
    assert counts(pg, db) == (NEW_ORDERS, CUSTOMERS)

    # Named: exactly that one, its emptiness the error; an unknown name is a config error.
    code, out, err = _run(path, capsys, "restore", "db", KEY, "--destination", "primary",
                          "--target", pg.dsn(_target(pg)))
    assert (code, out) == (1, "")
    assert err == [f"ardua-backup: destination primary holds nothing under "
                   f"s3://{bucket}/postgres/"]
    code, _, err = _run(path, capsys, "restore", "list", "--destination", "nope")
    assert code == 78 and len(err) == 1
    assert err[0].endswith("no destination named 'nope' (configured: primary, offsite)")
    code, out, _ = _run(path, capsys, "restore", "list", "--destination", "offsite")
    assert code == 0 and KEY in out

    # A key planted to retitle the operator's terminal is printed escaped, never raw.
    offsite_s3server.put(offsite_bucket, TITLE_KEY, b"PGDMP planted")
    code, out, err = _run(path, capsys, "restore", "list")
    assert code == 0
    shown = [line.split()[-1] for line in out.splitlines()[1:]]
    assert shown == ["postgres/last/ardua-20260303-010000\\x1b]0;pwned\\x07.dump", KEY]
    assert not {"\x1b", "\x07"} & set(out + "".join(err))
    code, _, err = _run(path, capsys, "restore", "db", TITLE_KEY, "--target",
                        pg.dsn(_target(pg)))
    assert code == 1 and len(err) == 1 and "\\x1b]0;pwned\\x07" in err[0]
    assert "\x1b" not in err[0]


@pytest.fixture(scope="module")
def postgres_image(docker_client: docker.DockerClient) -> str:
    return ensure_postgres_image(docker_client, ensure_debian_pg_image(docker_client))


def test_drill_restores_from_offsite_and_marks_it_there(
    tmp_path: Path, write_config, s3server: S3Server, bucket: str,
    offsite_s3server: S3Server, offsite_bucket: str, dump: bytes, postgres_image: str, capsys,
) -> None:
    """The primary emptied (its sentinel left), the dump off-site: the drill restores from
    the off-site copy, says why, and leaves its marker there, none in the primary. Named, the
    empty primary is the drill's failure, marked in the primary."""
    path = _two(tmp_path, write_config, s3server, bucket, offsite_s3server, offsite_bucket,
                jobs={"receipts-upload": None},
                drill={"image": postgres_image, "network_mode": "host", "timeout": "5m",
                       "receipts_job": "", "checks": [
                           {"name": "orders", "sql": "SELECT count(*) FROM orders",
                            "min": NEW_ORDERS, "max": NEW_ORDERS}]})
    s3server.put(bucket, "postgres/.last_success", b"2026-03-02T01:15:04Z OK\n")
    offsite_s3server.put(offsite_bucket, KEY, dump)
    marker = "postgres/.last_restore_drill"

    code, out, _ = _run(path, capsys, "drill")
    assert code == 0, out
    assert f"  destination       offsite  (primary: nothing under s3://{bucket}/postgres/)" in out
    assert "  check ok          orders: 1500 (min 1500 max 1500)" in out
    body = offsite_s3server.get(offsite_bucket, marker).decode()
    assert re.fullmatch(rf"\S+Z OK {re.escape(KEY)} \d+s\n", body), body
    assert marker not in s3server.list_sizes(bucket)

    code, out, _ = _run(path, capsys, "drill", "--destination", "primary")
    assert code == 1
    assert f"=> destination primary holds nothing under s3://{bucket}/postgres/" in out
    assert re.fullmatch(r"\S+Z FAIL - 0s\n", s3server.get(bucket, marker).decode())
    assert offsite_s3server.get(offsite_bucket, marker).decode() == body


def test_primary_down_restores_from_offsite_as_of_a_time(
    tmp_path: Path, write_config, s3server: S3Server, bucket: str,
    offsite_s3server: S3Server, offsite_bucket: str, pg: PgServer, dump: bytes, capsys,
) -> None:
    path = _two(tmp_path, write_config, s3server, bucket, offsite_s3server, offsite_bucket)
    offsite = offsite_s3server.client()
    offsite.put_bucket_versioning(Bucket=offsite_bucket,
                                  VersioningConfiguration={"Status": "Enabled"})
    s3server.put(bucket, KEY, dump)
    offsite_s3server.put(offsite_bucket, KEY, dump)
    at = server_now(offsite, offsite_bucket)
    poll(lambda: server_now(offsite, offsite_bucket) > at, "the S3 clock to pass T", 5)
    offsite_s3server.put(offsite_bucket, KEY, dump[:64])  # a bad sync after T
    iso = versions.format_at(at)

    s3server.stop()
    try:
        code, out, err = _run(path, capsys, "restore", "list", "--at", iso)
        assert code == 0 and [line.split()[1] for line in out.splitlines()[1:]] == [
            str(len(dump))]
        assert len(err) == 1 and err[0].startswith(
            f"ardua-backup: listed from destination offsite (primary: S3 endpoint "
            f"{s3server.endpoint_url} is unreachable")

        db = _target(pg)
        code, out, err = _run(path, capsys, "restore", "db", KEY, "--at", iso,
                              "--target", pg.dsn(db))
        assert code == 0, err
        assert f"from destination offsite (primary: S3 endpoint {s3server.endpoint_url} is " \
               f"unreachable" in out and "version " in out
        assert counts(pg, db) == (NEW_ORDERS, CUSTOMERS)

        code, out, err = _run(path, capsys, "restore", "list", "--destination", "primary")
        assert (code, out) == (1, "") and len(err) == 1 and "is unreachable" in err[0]
    finally:
        s3server.start()


def test_hostile_receipt_keys_are_refused_by_name(
    tmp_path: Path, write_config, moto: MotoServer, capsys,
) -> None:
    bucket = moto.create_bucket(f"ardua-hostile-{secrets.token_hex(4)}", lock=False)
    path = write_config(tmp_path, moto, bucket)
    client = moto.client()
    good = {"2026/03/r1.pdf": secrets.token_bytes(300), "r2.pdf": secrets.token_bytes(200)}
    hostile = ["../escape.pdf", "a/../evil.pdf", "./dot.pdf", "/abs.pdf", "back\\slash.pdf",
               "nul\x00.pdf", ".."]
    for rel, body in [*good.items(), *((rel, b"planted") for rel in hostile)]:
        client.put_object(Bucket=bucket, Key=f"receipts/{rel}", Body=body)
    out_dir = tmp_path / "out"
    dest = out_dir / "dest"
    out_dir.mkdir()

    code, out, err = _run(path, capsys, "restore", "receipts", str(dest), "--as-root")
    assert code == 1, (out, err)
    refused = sorted(line for line in err if line.startswith("ardua-backup: refused S3 key"))
    assert refused == sorted(
        f"ardua-backup: refused S3 key 'receipts/{shown}': it {why}, so it names no path "
        f"inside the target" for shown, why in [
            ("../escape.pdf", "has a '..' segment"), ("a/../evil.pdf", "has a '..' segment"),
            ("./dot.pdf", "has a '.' segment"), ("/abs.pdf", "starts with '/'"),
            ("back\\slash.pdf", "holds a backslash"), ("nul\\x00.pdf", "holds a NUL"),
            ("..", "has a '..' segment")])
    assert err[-1] == f"ardua-backup: 7 S3 key(s) refused; restored 2 file(s), 500 B into {dest}"
    assert len(err) == 8 and "Traceback" not in out + "".join(err)
    # Every other receipt restored, byte for byte; nothing anywhere else.
    files = {p.relative_to(dest).as_posix(): p.read_bytes()
             for p in dest.rglob("*") if p.is_file()}
    assert files == good
    assert sorted(p.name for p in out_dir.iterdir()) == ["dest"]
    assert not Path("/abs.pdf").exists() and not (tmp_path / "escape.pdf").exists()


def test_directory_dump_with_a_dotdot_entry_is_refused(
    tmp_path: Path, write_config, moto: MotoServer, pg: PgServer, capsys,
) -> None:
    bucket = moto.create_bucket(f"ardua-hostile-{secrets.token_hex(4)}", lock=False)
    path = write_config(tmp_path, moto, bucket)
    fd = pg.pg_dump(source_db(pg, 3), tmp_path / "fd", "-Fd")
    prefix = "postgres/last/ardua-20260302-010000"
    client = moto.client()
    for file in fd.iterdir():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{file.name}", Body=file.read_bytes())
    client.put_object(Bucket=bucket, Key=f"{prefix}/..", Body=b"onto the parent")
    db = _target(pg)

    code, out, err = _run(path, capsys, "restore", "db", f"{prefix}/", "--target", pg.dsn(db))
    assert (code, out) == (1, "")
    assert err == [
        f"ardua-backup: refused S3 key '{prefix}/..': it has a '..' segment, so it names no "
        f"path inside the target",
        f"ardua-backup: 1 file name(s) of {prefix}/ refused: nothing restored"]
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'orders'", db=db).strip() == "0"
    assert list((tmp_path / "state" / "restore").iterdir()) == []  # no download left behind
