"""Restore and drills, end to end: a real source database, pg_dump -Fc, a postgres-backup-local tree
in a Docker volume, the real upload pipeline to SeaweedFS, then restore/drill from S3."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import boto3.s3.transfer
import docker
import pytest

from supervisor import cli
from supervisor.config import load as config
from supervisor.containers import engine as docker_runner
from supervisor.containers import rclone
from supervisor.containers.jobs import instance_of
from supervisor.health import gather
from supervisor.restore import db as restore
from supervisor.restore import drill, spotcheck
from supervisor.upload import run as pipeline
from tests.harness.cli import _detach_cli_logging  # noqa: F401 - autouse fixture
from tests.harness.files import settle
from tests.harness.images import ensure_debian_pg_image
from tests.harness.pgimage import ensure_postgres_image
from tests.harness.pgtree import fill_volume, make_backups_tree
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server
from tests.harness.server import free_port as _free_port
from tests.harness.sourcedb import CUSTOMERS, NEW_ORDERS, OLD_ORDERS, dumps_and_receipts
from tests.harness.sourcedb import counts as _counts
from tests.harness.sourcedb import source_db as _source_db

pytestmark = pytest.mark.docker

MARKER = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (OK|FAIL) (\S+) (\d+)s\n$")


@pytest.fixture(scope="session")
def postgres_image(docker_client: docker.DockerClient) -> str:
    return ensure_postgres_image(docker_client, ensure_debian_pg_image(docker_client))


@dataclass
class Uploaded:
    path: Path
    cfg: config.Config
    receipts: Path
    newest_key: str


@pytest.fixture
def uploaded(
    tmp_path: Path, pg: PgServer, pg_volume: str, bucket: str, s3server: S3Server,
    write_config, docker_client: docker.DockerClient, postgres_image: str,
) -> Uploaded:
    """Two dumps (an old small one, a new big one) in a postgres-backup-local tree, receipts on
    disk, both uploaded by the real pipeline."""
    _, receipts = dumps_and_receipts(pg, tmp_path, docker_client, pg_volume)
    path = write_config(
        tmp_path, s3server, bucket, db_volume=pg_volume, receipts_dir=settle(receipts),
        drill={
            "image": postgres_image, "network_mode": "host", "port": _free_port(),
            "timeout": "5m", "receipts_sample": 5,
            "checks": [
                {"name": "orders", "sql": "SELECT count(*) FROM orders", "min": NEW_ORDERS},
                {"name": "fresh", "sql": "SELECT max(created_at) FROM orders",
                 "max_age": "3d"},
            ],
        },
    )
    cfg = config.load(path)
    for job in ("db-upload", "receipts-upload"):  # through the CLI: the ledger records them
        assert cli.main(["--config", str(path), "run-once", job]) == 0
    return Uploaded(path, cfg, receipts, "postgres/last/ardua-20260302-010000.dump")


def _cli(up: Uploaded, *args: str) -> int:
    return cli.main(["--config", str(up.path), *args])


def test_restore_list_newest_first_without_latest(uploaded: Uploaded, capsys) -> None:
    assert _cli(uploaded, "restore", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    keys = [line.split()[-1] for line in lines[1:]]
    assert keys[0] == uploaded.newest_key
    assert "postgres/last/ardua-20260301-010000.dump" in keys
    assert not [k for k in keys if "latest" in k]


def test_restore_db_reproduces_row_counts(uploaded: Uploaded, pg: PgServer, capsys) -> None:
    target = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(target)
    assert _cli(uploaded, "restore", "db", uploaded.newest_key, "--target", pg.dsn(target),
                "--jobs", "2") == 0
    out = capsys.readouterr().out
    assert "MD5 = S3 ETag" in out
    assert _counts(pg, target) == (NEW_ORDERS, CUSTOMERS)

    # Non-empty target: refused without --clean, replaced with it.
    assert _cli(uploaded, "restore", "db", "last/ardua-20260301-010000.dump",
                "--target", pg.dsn(target)) == 1
    assert "already holds" in capsys.readouterr().err
    assert _counts(pg, target) == (NEW_ORDERS, CUSTOMERS)
    assert _cli(uploaded, "restore", "db", "last/ardua-20260301-010000.dump",
                "--target", pg.dsn(target), "--clean") == 0
    assert _counts(pg, target) == (OLD_ORDERS, CUSTOMERS)


def test_restore_db_clear_errors(uploaded: Uploaded, pg: PgServer, capsys) -> None:
    target = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(target)
    assert _cli(uploaded, "restore", "db", "last/nope.dump", "--target", pg.dsn(target)) == 1
    assert "postgres/last/nope.dump does not exist" in capsys.readouterr().err
    assert _cli(uploaded, "restore", "db", "last/ardua-latest.dump",
                "--target", pg.dsn(target)) == 1
    assert "moving links" in capsys.readouterr().err
    dead = f"postgresql://postgres@127.0.0.1:{_free_port()}/x?connect_timeout=2"
    assert _cli(uploaded, "restore", "db", uploaded.newest_key, "--target", dead) == 1
    err = capsys.readouterr().err
    assert "cannot use the target database" in err and len(err.strip().splitlines()) == 1


def test_restore_db_grants_to_missing_roles(uploaded: Uploaded, pg: PgServer, capsys) -> None:
    """A dump GRANTs to a role the target server lacks (a fresh server on a bad day): the restore
    stops with the role named and the way out; --no-privileges restores without the GRANTs."""
    role = f"app_ro_{secrets.token_hex(3)}"
    source = _source_db(pg, 7)
    pg.psql(f"CREATE ROLE {role}; GRANT SELECT ON orders TO {role};", db=source)
    dump = pg.pg_dump(source, uploaded.path.parent / "grants.dump")
    key = "postgres/last/ardua-20260303-010000.dump"
    _s3(uploaded).put_object(Bucket=uploaded.cfg.destination().bucket, Key=key,
                             Body=dump.read_bytes())
    pg.psql(f"DROP DATABASE {source}; DROP ROLE {role};")

    target = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(target)
    assert _cli(uploaded, "restore", "db", key, "--target", pg.dsn(target)) == 1
    err = capsys.readouterr().err.strip()
    assert f'role "{role}" does not exist' in err and "--no-privileges" in err
    assert len(err.splitlines()) == 1
    assert _cli(uploaded, "restore", "db", key, "--target", pg.dsn(target), "--clean",
                "--no-privileges") == 0
    assert _counts(pg, target) == (7, CUSTOMERS)


def test_multipart_dump_is_verified_by_rclones_md5(
    uploaded: Uploaded, pg: PgServer, docker_client, monkeypatch, capsys
) -> None:
    """A dump over rclone's upload cutoff (200 MiB by default) goes up in parts: its ETag is no
    MD5, so restore checks the md5chksum metadata rclone stores. A 5 MiB cutoff forces it here;
    the rest is the real pipeline. Wrong metadata on a multipart object fails the restore."""
    source = _source_db(pg, 9)
    pg.psql("CREATE TABLE blobs AS SELECT md5(random()::text) || md5(random()::text) AS h "
            "FROM generate_series(1, 300000)", db=source)
    dump = pg.pg_dump(source, uploaded.path.parent / "big.dump")
    assert dump.stat().st_size > 6 << 20  # two parts at least
    fill_volume(docker_client, uploaded.cfg.job("db-upload").source.location,
                lambda root: make_backups_tree(root, [(datetime(2026, 3, 4, 1, 0),
                                                       dump.read_bytes())]))
    plain = rclone.environment
    monkeypatch.setattr(rclone, "environment", lambda s3cfg: {
        **plain(s3cfg), "RCLONE_S3_UPLOAD_CUTOFF": "5M", "RCLONE_S3_CHUNK_SIZE": "5M"})
    report = pipeline.run_job(uploaded.cfg, "db-upload", client=docker_client)
    assert report.ok, report.summary()
    key = "postgres/last/ardua-20260304-010000.dump"
    head = _s3(uploaded).head_object(Bucket=uploaded.cfg.destination().bucket, Key=key)
    assert "-" in head["ETag"] and "md5chksum" in head["Metadata"]  # really multipart

    target = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(target)
    assert _cli(uploaded, "restore", "db", key, "--target", pg.dsn(target)) == 0
    assert "MD5 = rclone md5chksum metadata (multipart upload)" in capsys.readouterr().out
    assert pg.psql("SELECT count(*) FROM blobs", db=target).strip() == "300000"

    # The same bytes in parts, with the metadata of another file: refused before pg_restore.
    wrong = base64.b64encode(hashlib.md5(b"another file").digest()).decode()
    _s3(uploaded).upload_file(str(dump), uploaded.cfg.destination().bucket, key,
                              ExtraArgs={"Metadata": {"md5chksum": wrong}},
                              Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 << 20,
                                                                      multipart_chunksize=5 << 20))
    other = f"tgt_{secrets.token_hex(4)}"
    pg.createdb(other)
    assert _cli(uploaded, "restore", "db", key, "--target", pg.dsn(other)) == 1
    assert "does not match rclone's md5chksum metadata" in capsys.readouterr().err
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'blobs'", db=other).strip() == "0"


def _s3(up: Uploaded):
    """A boto3 client with the test's credentials (read back from the credentials file)."""
    return boto3.client(
        "s3", endpoint_url=up.cfg.destination().endpoint_url,
        region_name=up.cfg.destination().region,
        aws_access_key_id=_creds(up)[0], aws_secret_access_key=_creds(up)[1],
    )


def _marker(up: Uploaded) -> str:
    body = _s3(up).get_object(Bucket=up.cfg.destination().bucket,
                              Key="postgres/.last_restore_drill")["Body"]
    return body.read().decode()


def _creds(up: Uploaded) -> tuple[str, str]:
    assert up.cfg.destination().credentials_file is not None
    text = up.cfg.destination().credentials_file.read_text()
    return (re.search(r"aws_access_key_id = (\S+)", text).group(1),  # type: ignore[union-attr]
            re.search(r"aws_secret_access_key = (\S+)", text).group(1))  # type: ignore[union-attr]


def _drill_leftovers(client: docker.DockerClient, cfg: config.Config) -> list:
    """This installation's drill containers: the engine is shared with other sessions' drills."""
    return client.containers.list(all=True, filters={"label": [
        f"{docker_runner.LABEL_JOB}=restore-drill",
        f"{docker_runner.LABEL_INSTANCE}={instance_of(cfg)}"]})


def _anonymous_volumes(client: docker.DockerClient) -> set[str]:
    """Anonymous volumes no container uses: what a drill container removed without its
    volumes leaves. Another session's drill running now holds its own (in use, not dangling)."""
    return {v.name for v in client.volumes.list(filters={"dangling": True})
            if re.fullmatch(r"[0-9a-f]{64}", v.name)}


def test_drill_passes_and_records_rto(uploaded: Uploaded, docker_client) -> None:
    volumes_before = _anonymous_volumes(docker_client)
    report = drill.run_drill(uploaded.cfg, client=docker_client)
    assert report.ok, report.summary()
    assert report.dump_key == uploaded.newest_key
    assert [c.name for c in report.checks] == ["schema has tables", "orders", "fresh"]
    assert all(c.ok for c in report.checks)
    assert report.receipts.checked == report.receipts.checked_local == 5 and report.receipts.ok
    assert report.restore_s > 0 and report.rto_s >= report.restore_s
    match = MARKER.match(_marker(uploaded))
    assert match and match.group(1) == "OK" and match.group(2) == uploaded.newest_key
    assert _drill_leftovers(docker_client, uploaded.cfg) == []
    # The image's PGDATA VOLUME went with the container. (Anonymous only: the engine is shared
    # with other test sessions creating named volumes.)
    assert _anonymous_volumes(docker_client) <= volumes_before
    # `status` reads the marker back from S3 (schema: docs/operations.md#health, `status --json`).
    seen = gather.gather(uploaded.cfg, docker_client).drill
    assert seen is not None and seen.ok and seen.dump_key == uploaded.newest_key
    print(report.summary())


def test_a_killed_drills_server_is_cleared_first(uploaded: Uploaded, docker_client,
                                                 rclone_image) -> None:
    """A drill killed mid-way (SIGKILL: no cleanup) leaves its server running, holding memory
    and the restored production data. Its owner is gone, so the next drill removes it."""
    boot, pidns, pid, _start = docker_runner.owner_label(os.getpid()).split("/")
    leftover = docker_client.containers.run(
        rclone_image, ["rcd", "--rc-no-auth", f"--rc-addr=127.0.0.1:{_free_port()}"],
        detach=True, network_mode="host",
        labels={docker_runner.LABEL_JOB: "restore-drill",
                docker_runner.LABEL_INSTANCE: instance_of(uploaded.cfg),
                docker_runner.LABEL_OWNER: f"{boot}/{pidns}/{pid}/1"})  # this pid, reused
    try:
        report = drill.run_drill(uploaded.cfg, client=docker_client)
        assert report.ok, report.summary()
        assert _drill_leftovers(docker_client, uploaded.cfg) == []
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            leftover.remove(force=True)


def test_corrupt_dump_in_s3_fails_the_drill(uploaded: Uploaded, docker_client) -> None:
    s3c = _s3(uploaded)
    body = s3c.get_object(Bucket=uploaded.cfg.destination().bucket,
                          Key=uploaded.newest_key)["Body"].read()
    # Truncated, as a pg_dump killed mid-write leaves it in last/ (and the upload copies it).
    s3c.put_object(Bucket=uploaded.cfg.destination().bucket, Key=uploaded.newest_key,
                   Body=body[: len(body) * 2 // 3])
    report = drill.run_drill(uploaded.cfg, client=docker_client)
    assert not report.ok
    assert f"pg_restore of {uploaded.newest_key} failed" in report.message
    match = MARKER.match(_marker(uploaded))
    assert match and match.group(1) == "FAIL"
    assert _drill_leftovers(docker_client, uploaded.cfg) == []


def test_garbage_dump_is_not_an_archive(uploaded: Uploaded, docker_client) -> None:
    s3c = _s3(uploaded)
    s3c.put_object(Bucket=uploaded.cfg.destination().bucket, Key=uploaded.newest_key,
                   Body=b"not a dump at all" * 100)
    report = drill.run_drill(uploaded.cfg, client=docker_client)
    assert not report.ok
    assert "is not a readable pg_dump archive" in report.message


def test_failing_sql_check_fails_the_drill(uploaded: Uploaded, docker_client, tmp_path) -> None:
    text = uploaded.path.read_text().replace(f"min = {NEW_ORDERS}", "min = 1000000")
    assert "min = 1000000" in text
    uploaded.path.write_text(text)
    report = drill.run_drill(config.load(uploaded.path), client=docker_client)
    assert not report.ok
    assert "check 'orders' failed: 1500 (min 1000000)" in report.message
    assert MARKER.match(_marker(uploaded)).group(1) == "FAIL"  # type: ignore[union-attr]


def test_spot_check_reports_tampered_and_missing_receipts(uploaded: Uploaded) -> None:
    files = sorted(p for p in uploaded.receipts.rglob("*.pdf"))
    files[0].write_bytes(b"tampered")
    files[1].unlink()
    # Lost from S3 although the last upload took it; a receipt added since is not expected yet.
    rel = [str(p.relative_to(uploaded.receipts)) for p in files[:3]]
    _s3(uploaded).delete_object(Bucket=uploaded.cfg.destination().bucket, Key=f"receipts/{rel[2]}")
    (uploaded.receipts / "2026/03/00/new.pdf").write_bytes(b"after the upload")
    cfg = config.load(uploaded.path)
    # Sample everything so the test does not depend on the random draw.
    cfg = cfg.__class__(**{**cfg.__dict__,
                           "drill": cfg.drill.__class__(**{**cfg.drill.__dict__,
                                                           "receipts_sample": 100})})
    result = spotcheck.spot_check_receipts(cfg)
    assert result.checked == len(files) - 1
    assert result.mismatched == (rel[0],)
    assert result.missing == (rel[1],)
    assert result.checked_local == len(files) - 2  # tampered (ctime now) and deleted ones out
    assert result.not_in_s3 == (rel[2],)
    assert not result.ok and result.problems == 3


def test_restore_receipts(uploaded: Uploaded, tmp_path: Path, capsys) -> None:
    dest = tmp_path / "restored"
    assert _cli(uploaded, "restore", "receipts", str(dest)) == 1  # root's: only when asked
    assert "is owned by root" in capsys.readouterr().err
    assert _cli(uploaded, "restore", "receipts", str(dest), "--as-root") == 0
    assert "restored 12 file(s)" in capsys.readouterr().out
    for src in uploaded.receipts.rglob("*.pdf"):
        assert (dest / src.relative_to(uploaded.receipts)).read_bytes() == src.read_bytes()
    assert not (dest / ".last_success").exists()
    assert _cli(uploaded, "restore", "receipts", str(dest), "--as-root") == 1
    assert "is not empty" in capsys.readouterr().err
    assert _cli(uploaded, "restore", "receipts", str(dest), "--force", "--as-root") == 0


def test_drill_config_errors(tmp_path: Path) -> None:
    base = """
[s3]
bucket = "b-ok"
[jobs.db-upload]
schedule = "15 * * * *"
source = "volume:v1"
prefix = "postgres"
"""
    cfg = config.parse(base, tmp_path / "c.toml")
    assert cfg.drill.image == "postgres:15" and cfg.drill.schedule == ""
    for bad, message in (
        ('[drill]\nimgae = "x"', "drill.imgae: unknown key"),
        ('[drill]\ndb_job = "nope"', "drill.db_job: no job named 'nope'"),
        ('[[drill.checks]]\nsql = "SELECT 1"', "needs a threshold"),
        ('[[drill.checks]]\nsql = "SELECT 1"\nmin = 1\nmax_age = "2d"', "drill.checks[0].max_age"),
        ('[drill]\nschedule = "weekly"', "drill.schedule"),
    ):
        with pytest.raises(config.ConfigError, match=re.escape(message)):
            config.parse(base + bad, tmp_path / "c.toml")


def test_newest_first_prefers_name_stamp() -> None:
    uploaded_at = datetime(2026, 3, 3)
    objs = [restore.s3.S3Object(f"postgres/last/DB-2026030{d}-010000.dump", 1, "e",
                                uploaded_at + timedelta(seconds=-d)) for d in (1, 2)]
    dumps = [restore.StoredDump(o.key, "DB", o.size, o.last_modified, (o,)) for o in objs]
    assert restore._sort_key(dumps[1]) > restore._sort_key(dumps[0])


def test_drill_skips_an_empty_dump_and_says_so(uploaded: Uploaded, docker_client, pg_volume,
                                               capsys) -> None:
    """A pg_dump that fails leaves a 0-byte file under the final name in last/ (observed with
    the real backup.sh; `set -Eeo pipefail` stops it before the hard links), and the upload
    mirrors it: the drill must restore the newest dump that can be an archive."""
    empty_key = "postgres/last/ardua-20260303-010000.dump"

    def failed_run(root: Path) -> None:
        empty = root / "last" / "ardua-20260303-010000.dump"
        empty.write_bytes(b"")
        when = datetime(2026, 3, 3, 1, 0).timestamp()
        os.utime(empty, (when, when))

    fill_volume(docker_client, pg_volume, failed_run)
    assert _cli(uploaded, "run-once", "db-upload") == 0
    assert _s3(uploaded).head_object(Bucket=uploaded.cfg.destination().bucket,
                                     Key=empty_key)["ContentLength"] == 0
    report = drill.run_drill(uploaded.cfg, client=docker_client)
    assert report.ok, report.summary()
    assert report.dump_key == uploaded.newest_key
    assert report.skipped == (f"skipped 1 empty dump(s) (0 B, left by a failed pg_dump; not an "
                              f"archive): {empty_key}")
    assert f"skipped           {report.skipped}" in report.summary()
