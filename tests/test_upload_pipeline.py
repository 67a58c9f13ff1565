"""The upload pipeline end to end: real dockerd, real rclone container, real S3 server, real
pg_dump dumps in a postgres-backup-local tree, driven through the `ardua-backup` CLI."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import docker
import pytest

from supervisor.config import load as config
from supervisor.containers import engine as docker_runner
from supervisor.containers import seccomp
from supervisor.containers.jobs import instance_of
from tests.harness import dockerd
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.freeze import SyncFreezer
from tests.harness.pgtree import make_backups_tree, volume_mountpoint
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server

SENTINEL = "postgres/.last_success"
SENTINEL_RE = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) OK\n")
DUMP_TIMES = [
    datetime(2025, 12, 15, 1, 0, 0, tzinfo=UTC),
    datetime(2025, 12, 16, 1, 0, 0, tzinfo=UTC),
    datetime(2025, 12, 18, 1, 15, 4, tzinfo=UTC),
]


@pytest.fixture(scope="module")
def dumps(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[datetime, bytes]]:
    """Three real `pg_dump -Fc` dumps of a growing database."""
    db = f"ardua_src_{secrets.token_hex(3)}"
    pg.createdb(db)
    pg.psql("CREATE TABLE orders (id serial PRIMARY KEY, total numeric, created_at timestamptz "
            "DEFAULT now())", db=db)
    out = []
    folder = tmp_path_factory.mktemp("dumps")
    for i, when in enumerate(DUMP_TIMES):
        pg.psql(f"INSERT INTO orders (total) SELECT g FROM generate_series(1, {100 * (i + 1)}) g",
                db=db)
        path = pg.pg_dump(db, folder / f"{i}.dump")
        out.append((when, path.read_bytes()))
    assert out[0][1][:5] == b"PGDMP"  # custom format
    return out


def fill_tree(client: docker.DockerClient, volume: str, dumps) -> dict[str, bytes]:
    """postgres-backup-local's layout in the volume; returns relative path -> bytes."""
    root = volume_mountpoint(client, volume)
    files = make_backups_tree(root, dumps)
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def mirror(server: S3Server, bucket: str, prefix: str = "postgres/") -> dict[str, bytes]:
    return server.list_keys(bucket, prefix)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout


def assert_no_secret(server: S3Server, *texts: str) -> None:
    for text in texts:
        assert server.secret_key not in text
        assert server.access_key not in text


def test_backups_tree_is_mirrored_exactly(docker_client, s3server, bucket, pg_volume, dumps,
                                          write_config, tmp_path) -> None:
    expected = fill_tree(docker_client, pg_volume, dumps)
    assert len(expected) == 8  # 3 in last/, 3 daily, 1 weekly, 1 monthly
    cfg = write_config(tmp_path, s3server, bucket, db_volume=pg_volume)
    before = datetime.now(UTC).replace(microsecond=0)

    result = run_cli("run-once", "db-upload", config=cfg)

    assert_ok(result)
    objects = mirror(s3server, bucket)
    sentinel = objects.pop(SENTINEL)
    assert objects == {f"postgres/{rel}": body for rel, body in expected.items()}
    assert not [k for k in objects if "latest" in k]
    match = SENTINEL_RE.fullmatch(sentinel)
    assert match, sentinel
    written = datetime.strptime(match.group(1).decode(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= written <= datetime.now(UTC)
    assert re.search(r"skipped symlinks\s+4\b", result.stdout)  # the four *-latest.dump links
    # 8 keys, 3 dumps: each dump uploaded once, its hard links copied server-side
    assert re.search(r"transferred\s+3 files", result.stdout)
    assert re.search(r"copied in S3\s+5 files", result.stdout)
    assert_no_secret(s3server, result.stdout, result.stderr)


def test_second_run_refreshes_sentinel_and_mirrors_a_prune(docker_client, s3server, bucket,
                                                           pg_volume, dumps, write_config,
                                                           tmp_path) -> None:
    fill_tree(docker_client, pg_volume, dumps)
    cfg = write_config(tmp_path, s3server, bucket, db_volume=pg_volume)
    assert_ok(run_cli("run-once", "db-upload", config=cfg))
    s3server.put(bucket, SENTINEL, b"2000-01-01T00:00:00Z OK\n")
    # postgres-backup-local's retention removes the oldest dump and its daily link.
    root = volume_mountpoint(docker_client, pg_volume)
    (root / "last/ardua-20251215-010000.dump").unlink()
    (root / "daily/ardua-20251215.dump").unlink()

    result = run_cli("run-once", "db-upload", config=cfg)

    assert_ok(result)
    assert re.search(r"deleted in S3\s+2\b", result.stdout)
    objects = mirror(s3server, bucket)
    assert "postgres/last/ardua-20251215-010000.dump" not in objects
    assert "postgres/daily/ardua-20251215.dump" not in objects
    assert "postgres/last/ardua-20251218-011504.dump" in objects
    assert objects[SENTINEL] != b"2000-01-01T00:00:00Z OK\n"
    assert SENTINEL_RE.fullmatch(objects[SENTINEL])


def test_receipts_with_spaces_and_unicode_round_trip(s3server, bucket, write_config,
                                                     tmp_path) -> None:
    receipts = tmp_path / "receipts"
    names = [
        "2025/12/Invoice 0001 (copy).pdf",
        "clients/Zoë Ångström/reçu №7.jpg",
        "日本語/領収書 2025.png",
        "a b/c  d/e.txt",
        "top-level.csv",
    ]
    expected = {}
    for name in names:
        path = receipts / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = os.urandom(2048) + name.encode()
        path.write_bytes(body)
        expected[f"receipts/{name}"] = body
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=settle(receipts))

    assert_ok(run_cli("run-once", "receipts-upload", config=cfg))

    objects = mirror(s3server, bucket, "receipts/")
    assert SENTINEL_RE.fullmatch(objects.pop("receipts/.last_success"))
    assert objects == expected


def test_empty_source_is_refused_and_s3_untouched(docker_client, s3server, bucket, pg_volume,
                                                  dumps, write_config, tmp_path) -> None:
    fill_tree(docker_client, pg_volume, dumps)
    cfg = write_config(tmp_path, s3server, bucket, db_volume=pg_volume)
    assert_ok(run_cli("run-once", "db-upload", config=cfg))
    before = mirror(s3server, bucket)
    # Every regular file gone; only the dangling *-latest symlinks remain, which rclone skips.
    root = volume_mountpoint(docker_client, pg_volume)
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.unlink()

    result = run_cli("run-once", "db-upload", config=cfg)

    assert result.returncode == 1
    assert "REFUSED" in result.stdout
    assert "the source is empty and the sync would delete the whole mirror" in result.stdout
    assert "mirror 8 object(s)" in result.stdout
    assert "run once with --force-deletes" in result.stdout
    assert mirror(s3server, bucket) == before


def test_force_deletes_really_empties_the_mirror(s3server, bucket, write_config, tmp_path) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "old.pdf").write_bytes(b"old")
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=settle(receipts))
    assert_ok(run_cli("run-once", "receipts-upload", config=cfg))
    (receipts / "old.pdf").unlink()

    assert_ok(run_cli("run-once", "receipts-upload", "--force-deletes", config=cfg))

    assert list(mirror(s3server, bucket, "receipts/")) == ["receipts/.last_success"]


@pytest.fixture
def own_s3() -> Iterator[S3Server]:
    """A private S3 server this test may stop, pause and restart."""
    with S3Server() as server:
        yield server


def _sentinel_of(server: S3Server, bucket: str) -> bytes:
    return server.get(bucket, SENTINEL)


@pytest.mark.parametrize("fault", ["s3-down", "wrong-secret", "missing-bucket"])
def test_s3_faults_fail_fast_and_leave_sentinel(fault, docker_client, own_s3, pg_volume, dumps,
                                                write_config, tmp_path) -> None:
    bucket = own_s3.create_bucket(f"ardua-test-{secrets.token_hex(4)}")
    fill_tree(docker_client, pg_volume, dumps)
    cfg = write_config(tmp_path, own_s3, bucket, db_volume=pg_volume)
    assert_ok(run_cli("run-once", "db-upload", config=cfg))
    sentinel = _sentinel_of(own_s3, bucket)
    expected = {
        "s3-down": f"S3 endpoint {own_s3.endpoint_url} is unreachable",
        "wrong-secret": "refused the credentials for bucket",
        "missing-bucket": "S3 bucket 'ardua-nope-",
    }[fault]
    if fault == "s3-down":
        own_s3.stop()
    elif fault == "wrong-secret":
        creds = tmp_path / "aws-credentials"
        creds.write_text(creds.read_text().replace(own_s3.secret_key, "not-the-secret"))
    else:
        cfg = write_config(tmp_path, own_s3, f"ardua-nope-{secrets.token_hex(4)}",
                           db_volume=pg_volume)

    started = time.monotonic()
    result = run_cli("run-once", "db-upload", config=cfg)
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert "FAILED" in result.stdout
    assert expected in result.stdout
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert_no_secret(own_s3, result.stdout, result.stderr)
    own_s3.start()
    assert _sentinel_of(own_s3, bucket) == sentinel
    if fault == "missing-bucket":
        assert [b["Name"] for b in own_s3.client().list_buckets()["Buckets"]] == [bucket]


def test_bad_sources_and_images_are_one_line_errors(docker_client, s3server, bucket,
                                                    write_config, tmp_path) -> None:
    volume = f"ardua-test-missing-{secrets.token_hex(3)}"
    cases = [
        (dict(db_volume=volume), "db-upload", f"Docker volume '{volume}' does not exist"),
        (dict(receipts_dir=tmp_path / "nowhere"), "receipts-upload",
         f"source directory {tmp_path / 'nowhere'} does not exist"),
        (dict(rclone={"image": "ardua-test/missing:0"}), "db-upload",
         "image 'ardua-test/missing:0' is not on this Docker host"),
    ]
    for overrides, job, expected in cases:
        cfg = write_config(tmp_path, s3server, bucket, **overrides)
        result = run_cli("run-once", job, config=cfg)
        assert result.returncode == 1, result.stdout
        assert expected in result.stdout
    # Docker silently creates what it is asked to mount; the checks must come first.
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(volume)
    assert s3server.list_keys(bucket) == {}


def test_broken_config_is_exit_78_naming_file_and_key(tmp_path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text('[s3]\nbucket = "b-b-b"\n[jobs.db-upload]\nschedule = "15 * * * *"\n'
                   'source = "volume:pg_backups"\nprefix = "postgres"\ntimout = "5m"\n')
    result = run_cli("run-once", "db-upload", config=cfg)
    assert result.returncode == 78  # EX_CONFIG, as for every command but `status`
    assert result.stderr.strip() == (
        f"ardua-backup: {cfg}: jobs.db-upload.timout: unknown key "
        f"(see config.example.toml for the valid ones)"
    )


def test_hung_sync_is_killed_at_timeout_and_inspect_holds_no_secret(
    docker_client, own_s3, pg_volume, dumps, write_config, tmp_path
) -> None:
    bucket = own_s3.create_bucket(f"ardua-test-{secrets.token_hex(4)}")
    fill_tree(docker_client, pg_volume, dumps)
    cfg = write_config(tmp_path, own_s3, bucket, db_volume=pg_volume,
                       jobs={"db-upload": {"timeout": "6s"}})
    assert_ok(run_cli("run-once", "db-upload", config=cfg))
    sentinel = _sentinel_of(own_s3, bucket)

    freezer = SyncFreezer(docker_client, own_s3)
    try:
        started = time.monotonic()
        result = run_cli("run-once", "db-upload", config=cfg, timeout=120)
        elapsed = time.monotonic() - started
    finally:
        freezer.close()

    assert freezer.sync_attrs is not None, "the sync container was never seen running"
    assert result.returncode == 1
    assert "the job timeout was reached; the container was killed" in result.stdout
    assert 6 <= elapsed < 30, f"{elapsed:.1f} s"
    assert docker_client.containers.list(all=True, filters={"label": [  # this test's only
        f"{docker_runner.LABEL_JOB}=db-upload",
        f"{docker_runner.LABEL_INSTANCE}={instance_of(config.load(cfg))}"]}) == []
    assert _sentinel_of(own_s3, bucket) == sentinel
    # What `docker inspect` showed while it ran: hardened, labelled, and no secret anywhere.
    attrs = freezer.sync_attrs
    assert_no_secret(own_s3, json.dumps(attrs), result.stdout, result.stderr)
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges", seccomp.security_opt()]
    assert host["NetworkMode"] == "host"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/source"]["RW"] is False
    assert mounts["/run/secrets/aws-credentials"]["RW"] is False
    labels = attrs["Config"]["Labels"]
    assert labels[docker_runner.LABEL_JOB] == "db-upload"
    assert labels[docker_runner.LABEL_RUN]
    cmd = attrs["Config"]["Cmd"]
    assert cmd[:3] == ["sync", "/source/", f":s3:{bucket}/postgres/"]


def test_credentials_file_readable_by_others_is_refused(s3server, bucket, write_config,
                                                        tmp_path) -> None:
    receipts = tmp_path / "r"
    receipts.mkdir()
    (receipts / "a.pdf").write_bytes(b"a")
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts)
    (tmp_path / "aws-credentials").chmod(0o644)
    result = run_cli("run-once", "receipts-upload", config=cfg)
    assert result.returncode == 78  # the file-mode rule of config.load (tests/test_file_modes.py)
    assert f"chmod 600 {tmp_path / 'aws-credentials'}" in result.stderr
    assert s3server.list_keys(bucket) == {}


def test_ctrl_c_mid_sync_removes_the_container(docker_client, own_s3, pg_volume, dumps,
                                               write_config, tmp_path) -> None:
    bucket = own_s3.create_bucket(f"ardua-test-{secrets.token_hex(4)}")
    fill_tree(docker_client, pg_volume, dumps)
    cfg = write_config(tmp_path, own_s3, bucket, db_volume=pg_volume)
    freezer = SyncFreezer(docker_client, own_s3)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--config", str(cfg), "run-once", "db-upload"],
            env={**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 60
        while freezer.sync_attrs is None:  # the sync container is up and hung
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        freezer.close()
    assert proc.returncode == 130
    assert "interrupted; containers removed" in err
    assert docker_client.containers.list(
        all=True, filters={"label": f"{docker_runner.LABEL_RUN}="
                           f"{freezer.sync_attrs['Config']['Labels'][docker_runner.LABEL_RUN]}"}
    ) == []
    assert "postgres/.last_success" not in own_s3.list_sizes(bucket)
    history = json.loads(run_cli("history", "db-upload", "--json", config=cfg).stdout)
    assert (history[0]["result"], history[0]["message"]) == ("interrupted", "interrupted by Ctrl-C")
