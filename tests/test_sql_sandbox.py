"""A dump from S3 is data, never commands on this host (docs/security.md): a plain SQL script
planted in the bucket with psql meta-commands (`\\!`, `\\o |cmd`, `\\unrestrict`), restored by
`restore db` and drilled, with the real psql (in drill.image's container) and a real server."""

from __future__ import annotations

import gzip
import secrets
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor import cli
from supervisor.config import load as config
from supervisor.postgres import dumpformat, pgtools
from supervisor.restore import db as restore
from supervisor.restore import drill
from tests.harness.cli import _detach_cli_logging  # noqa: F401 - autouse fixture
from tests.harness.images import ensure_debian_pg_image
from tests.harness.pgimage import ensure_postgres_image
from tests.harness.postgres import PgServer

HEADER = "--\n-- PostgreSQL database dump\n--\n\nSET client_min_messages = warning;\n"
FOOTER = "\n--\n-- PostgreSQL database dump complete\n--\n\n"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def postgres_image(docker_client) -> str:
    return ensure_postgres_image(docker_client, ensure_debian_pg_image(docker_client))


@pytest.fixture
def bangs(tmp_path: Path) -> list[Path]:
    """Where the planted commands write: this test's directory and the host's /tmp (a
    container has a /tmp of its own; these paths must stay absent on the host)."""
    paths = [tmp_path / "bang-shell", Path(f"/tmp/ardua-bang-{secrets.token_hex(4)}")]
    yield paths
    for p in paths:
        p.unlink(missing_ok=True)


def _planted(bangs: list[Path], *, unrestrict: bool = True, whoami: str = "") -> bytes:
    """A plain pg_dump script (header, footer) with meta-commands between them; `whoami`: a
    shell line for `\\!` that records who ran it."""
    lines = [HEADER, "CREATE TABLE planted (id int);", "INSERT INTO planted VALUES (1);",
             # The pipe reads what psql writes to it: a command that does not would make psql
             # fail on a broken pipe, or not, by timing alone.
             f"\\! touch {bangs[0]}", f"\\o | touch {bangs[1]}; cat >/dev/null", "SELECT 1;",
             "\\o"]
    if unrestrict:
        lines += ["\\unrestrict aaaa", f"\\! touch {bangs[0]}-after"]
    if whoami:
        lines.append(f"\\! {whoami}")
    lines += ["INSERT INTO planted VALUES (2);", FOOTER]
    return gzip.compress("\n".join(lines).encode())


def _config(tmp_path: Path, s3server, bucket: str, pg_volume: str, write_config,
            postgres_image: str, checks: list | None = None) -> config.Config:
    path = write_config(
        tmp_path, s3server, bucket, db_volume=pg_volume, jobs={"receipts-upload": None},
        health={"db_container": ""},
        drill={"image": postgres_image, "network_mode": "host", "timeout": "5m",
               "receipts_job": "", "checks": checks or []},
    )
    return config.load(path)


def _put(s3server, bucket: str, key: str, body: bytes) -> None:
    s3server.client().put_object(Bucket=bucket, Key=key, Body=body)


def _restore(cfg: config.Config, key: str, target: str) -> int:
    return cli.main(["--config", str(cfg.path), "restore", "db", key, "--target", target])


def _no_bangs(bangs: list[Path]) -> None:
    for p in [*bangs, Path(f"{bangs[0]}-after")]:
        assert not p.exists(), f"a command of the dump ran on this host: {p}"


def _target(pg: PgServer) -> tuple[str, str]:
    db = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(db)
    return db, pg.dsn(db)


def test_planted_script_runs_no_command_on_this_host(
    tmp_path, s3server, bucket, pg_volume, write_config, postgres_image, pg, bangs, capsys,
) -> None:
    """The issue's dump: `\\!`, `\\o |` and `\\unrestrict`. psql runs in the container, where
    `\\unrestrict` (no restricted mode to leave) is an error: one line, exit 1, and the one
    transaction leaves the target empty. Nothing appears on the host."""
    cfg = _config(tmp_path, s3server, bucket, pg_volume, write_config, postgres_image)
    key = "postgres/last/ardua-20991231-000000.sql.gz"
    _put(s3server, bucket, key, _planted(bangs))
    db, dsn = _target(pg)
    assert _restore(cfg, key, dsn) == 1
    err = capsys.readouterr().err.strip()
    # psql's first error: `\unrestrict`'s, or a write to the `\o |touch` pipe that touch
    # closed (a race in psql, not ours)
    assert len(err.splitlines()) == 1 and f"restore of {key} failed" in err, err
    _no_bangs(bangs)
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'planted'", db).strip() == "0"


def test_what_a_planted_command_can_still_do(
    tmp_path, s3server, bucket, pg_volume, write_config, postgres_image, pg, bangs, capsys,
) -> None:
    """Without the `\\unrestrict` line the script restores, and its `\\!` really runs, in the
    container: as nobody (65534), with the target's connection string on psql's command line,
    so it can reach the target as the restoring user (what docs/security.md says it can do).
    Nothing appears on the host."""
    cfg = _config(tmp_path, s3server, bucket, pg_volume, write_config, postgres_image)
    key = "postgres/last/ardua-20260101-000000.sql.gz"
    whoami = ("psql -Xq -d \"$(tr '\\0' '\\n' </proc/$PPID/cmdline | grep ^postgresql://)\" "
              "-c \"CREATE TABLE whoami AS SELECT $(id -u) AS uid\"")
    _put(s3server, bucket, key, _planted(bangs, unrestrict=False, whoami=whoami))
    db, dsn = _target(pg)
    assert _restore(cfg, key, dsn) == 0, capsys.readouterr().err
    assert "psql in a container of drill.image" in capsys.readouterr().out
    _no_bangs(bangs)
    assert pg.psql("SELECT count(*) FROM planted", db).strip() == "2"
    assert pg.psql("SELECT uid FROM whoami", db).strip() == "65534"


def test_restricted_mode_where_psql_holds_it(
    tmp_path, s3server, bucket, pg_volume, write_config, postgres_image, pg, bangs, capsys,
    monkeypatch,
) -> None:
    """With a psql whose restricted mode is known to hold (here the image's 15.18 is declared
    so), psql refuses every meta-command of the script, and a real pg_dump script (its own
    \\restrict and \\unrestrict lines dropped) still restores."""
    monkeypatch.setattr(pgtools, "RESTRICT_FIXED", {15: 0, 16: 0, 17: 0, 18: 0})
    cfg = _config(tmp_path, s3server, bucket, pg_volume, write_config, postgres_image)
    planted = "postgres/last/ardua-20260101-000000.sql.gz"
    _put(s3server, bucket, planted, _planted(bangs, unrestrict=False, whoami="id"))
    db, dsn = _target(pg)
    assert _restore(cfg, planted, dsn) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "backslash commands are restricted" in err, err
    _no_bangs(bangs)

    source = f"src_{secrets.token_hex(4)}"
    pg.createdb(source)
    pg.psql("CREATE TABLE t (s text); INSERT INTO t VALUES ('a'), (E'\\\\restrict x');", source)
    script = pg.pg_dump(source, tmp_path / "real.sql", "-Fp").read_bytes()
    assert b"\\restrict " in script  # pg_dump 15.14+ writes its own
    real = "postgres/last/ardua-20260102-000000.sql.gz"
    _put(s3server, bucket, real, gzip.compress(script))
    assert _restore(cfg, real, dsn) == 0, capsys.readouterr().err
    assert "restricted mode" in capsys.readouterr().out
    assert pg.psql("SELECT string_agg(s, ',' ORDER BY s) FROM t", db).strip() == "\\restrict x,a"


def test_planted_script_and_copy_to_program_in_a_drill(
    tmp_path, s3server, bucket, pg_volume, write_config, postgres_image, bangs,
    docker_client,
) -> None:
    """The drill restores the planted script with psql inside its throwaway server, as the
    image's postgres user (not root): `\\!` and `COPY … TO PROGRAM` (the server's own, as
    superuser) run there, and nothing on the host. The checks read back who ran them."""
    record = ("touch {bang}; psql -h /ardua-socket -U postgres -d ardua -Xqc "
              "\"CREATE TABLE {table} AS SELECT $(id -u) AS uid\"")
    shell = record.format(table="shell_uid", bang=f"{bangs[0]}-after")
    program = record.format(table="program_uid", bang=f"{bangs[0]}-after")
    body = gzip.decompress(_planted(bangs, unrestrict=False, whoami=shell)).decode().replace(
        "INSERT INTO planted VALUES (2);",
        f"INSERT INTO planted VALUES (2);\nCOPY (SELECT 1) TO PROGRAM '{program}';")
    checks = [{"name": name, "sql": f"SELECT uid FROM {name}", "min": 1}
              for name in ("shell_uid", "program_uid")]
    cfg = _config(tmp_path, s3server, bucket, pg_volume, write_config, postgres_image, checks)
    key = f"postgres/last/ardua-{NOW - timedelta(hours=1):%Y%m%d-%H%M%S}.sql.gz"
    _put(s3server, bucket, key, gzip.compress(body.encode()))
    report = drill.run_drill(cfg, client=docker_client)
    assert report.ok, report.summary()
    assert report.dump_key == key
    _no_bangs(bangs)
    assert [c.name for c in report.checks] == ["schema has tables", "shell_uid", "program_uid"]
    assert all(c.ok for c in report.checks)  # both ran, neither as root (uid >= 1)


def test_a_future_dated_dump_is_not_the_drills_newest(
    tmp_path, s3server, bucket, pg_volume, write_config, postgres_image, bangs, docker_client,
) -> None:
    """`ardua-20991231-000000.sql.gz` would sort first for 70 years and the real dumps would
    never be drilled again: names dated after now + a day are ignored, with a warning."""
    cfg = _config(tmp_path, s3server, bucket, pg_volume, write_config, postgres_image)
    future = "postgres/last/ardua-20991231-000000.sql.gz"
    _put(s3server, bucket, future, _planted(bangs))
    real = f"postgres/last/ardua-{NOW - timedelta(hours=2):%Y%m%d-%H%M%S}.sql.gz"
    _put(s3server, bucket, real, _planted(bangs, unrestrict=False))
    soon = f"postgres/last/ardua-{NOW + timedelta(hours=12):%Y%m%d-%H%M%S}.sql.gz"
    _put(s3server, bucket, soon, _planted(bangs, unrestrict=False))  # another time zone's now
    report = drill.run_drill(cfg, client=docker_client)
    assert report.ok, report.summary()
    assert report.dump_key == soon
    assert report.skipped.startswith("ignored 1 dump(s) named with a time in the future")
    assert report.skipped.endswith(future)
    _no_bangs(bangs)


def test_a_database_name_from_a_key_is_only_a_dbname(
    tmp_path, s3server, bucket, pg_volume, write_config, postgres_image, bangs, docker_client,
) -> None:
    """A key names database `host=127.0.0.9 port=1 dbname=x`: libpq would read it as a
    connection string (another server). It is passed as one quoted dbname value."""
    name = "host=127.0.0.9 port=1 dbname=x"
    cfg = _config(tmp_path, s3server, bucket, pg_volume, write_config, postgres_image,
                  [{"name": "rows", "sql": "SELECT count(*) FROM planted", "min": 2,
                    "database": name}])
    key = f"postgres/last/{name}-{NOW - timedelta(hours=1):%Y%m%d-%H%M%S}.sql.gz"
    _put(s3server, bucket, key, _planted(bangs, unrestrict=False))
    report = drill.run_drill(cfg, client=docker_client)
    assert report.ok, report.summary()
    assert report.dump_key == key


def test_missing_role_matches_a_huge_line_in_linear_time() -> None:
    """A multi-MB error line (a RAISE of the dump's choosing): `.+?` backtracked
    quadratically (1.9 s for 48 KB, hours for MBs); the bounded pattern answers at once."""
    line = "ERROR:  " + ('role "' + "a" * 70) * 70_000 + 'role "x" does not exist'  # 5.3 MB
    found = pgtools.MISSING_ROLE.search(line)
    assert found and found.group(1) == 'x'
    assert pgtools.MISSING_ROLE.search('role "' + "a" * 5_000_000) is None
    assert pgtools.MISSING_ROLE.search('ERROR:  role "a""b" does not exist').group(1) == 'a""b'


def test_conninfo_quoting() -> None:
    assert pgtools.dbname("host=evil dbname=x") == "dbname='host=evil dbname=x'"
    assert pgtools.dbname("it's\\") == "dbname='it\\'s\\\\'"


@pytest.mark.parametrize(("text", "safe"), [
    ("psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", False),
    ("psql (PostgreSQL) 15.19", True), ("psql (PostgreSQL) 16.14", False),
    ("psql (PostgreSQL) 17.11", True), ("psql (PostgreSQL) 18.5", False),
    ("psql (PostgreSQL) 19.0", True), ("psql (PostgreSQL) 14.30", False),
    ("psql (PostgreSQL) 19devel", False), ("", False),
])
def test_restricted_mode_only_where_known_fixed(text: str, safe: bool) -> None:
    assert pgtools.restricted_mode_safe(pgtools.version_of(text)) is safe


def test_a_gzip_bomb_is_refused_before_psql(tmp_path: Path, monkeypatch) -> None:
    """The cut-off check reads a .sql.gz to its end: past MAX_GZIP_RATIO times its size it
    stops with one line instead of unpacking for hours."""
    monkeypatch.setattr(restore, "MIN_UNPACKED", 1 << 20)
    bomb = tmp_path / "ardua-20260101-000000.sql.gz"
    bomb.write_bytes(gzip.compress(HEADER.encode() + b"\0" * (64 << 20)))
    with pytest.raises(dumpformat.FormatError, match=r"unpacks to more than .* gzip bomb"):
        restore._script_tail("k", bomb, dumpformat.PLAIN_GZ)


def test_a_scripts_output_is_cut_inside_its_container(tmp_path: Path) -> None:
    """psql's stderr is cut at SCRIPT_OUTPUT_BYTES by the pipeline that runs it (read to its
    end: psql never blocks), its stdout dropped, its exit code kept."""
    psql = tmp_path / "psql"
    psql.write_text("#!/bin/bash\nhead -c 5000000 /dev/zero | tr '\\0' x >&2\n"
                    "head -c 5000000 /dev/zero\nexit 3\n")
    psql.chmod(0o755)
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1;\n")
    args = pgtools.script_args(str(script), str(psql), connect=[], fmt=dumpformat.PLAIN)
    res = subprocess.run(args, capture_output=True, timeout=60)
    assert res.returncode == 3
    assert res.stdout == b"" and res.stderr == b"x" * pgtools.SCRIPT_OUTPUT_BYTES
