"""Proofs that the test harness itself works (engine, images, S3, PostgreSQL, trees, configs)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import botocore.exceptions
import docker
import pytest

from tests.harness import dockerd
from tests.harness.images import DEBIAN_PG_IMAGE, ensure_debian_pg_image
from tests.harness.pgtree import fill_volume, make_backups_tree, volume_mountpoint
from tests.harness.s3server import MAX_VOLUMES

ROOT = Path(__file__).resolve().parent.parent
CREDS_IN_CONTAINER = "/run/secrets/aws-credentials"


def run(client: docker.DockerClient, image: str, args: list[str], timeout: float = 60, **kw):
    """Run a container to completion; return (exit code, stdout, stderr). Always removes it."""
    kw.setdefault("network_mode", "host")
    c = client.containers.run(image, args, detach=True, labels={"ardua-test": "1"}, **kw)
    try:
        code = c.wait(timeout=timeout)["StatusCode"]
        out = c.logs(stdout=True, stderr=False).decode()
        err = c.logs(stdout=False, stderr=True).decode()
        return code, out, err
    finally:
        c.remove(force=True)


def rclone_s3_env(s3server, creds_path: str = CREDS_IN_CONTAINER) -> dict[str, str]:
    return {
        "RCLONE_S3_PROVIDER": "Other",
        "RCLONE_S3_ENV_AUTH": "true",
        "RCLONE_S3_ENDPOINT": s3server.endpoint_url,
        "RCLONE_S3_REGION": s3server.region,
        "RCLONE_S3_FORCE_PATH_STYLE": "true",
        "AWS_SHARED_CREDENTIALS_FILE": creds_path,
        "AWS_PROFILE": "default",
    }


BOUNDED = ["--retries", "1", "--low-level-retries", "1", "--contimeout", "2s", "--timeout", "5s"]


# -- engine and images ---------------------------------------------------------------------


def test_dockerd_cli_status(docker_client):
    res = subprocess.run(
        [sys.executable, "-m", "tests.harness.dockerd", "status"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert dockerd.DOCKER_HOST in res.stdout
    assert os.environ["DOCKER_HOST"] == dockerd.DOCKER_HOST
    info = docker_client.info()
    assert info["DockerRootDir"] == str(dockerd.DATA_ROOT)
    assert {n.name for n in docker_client.networks.list()} <= {"host", "none"}


@pytest.mark.docker  # starts an engine of its own
def test_engine_starts_over_a_reboots_leftovers(tmp_path):
    """/run is on disk here, so a reboot leaves dockerd's pidfiles behind and their pids get
    reused: dockerd refuses a pidfile naming a live process, and trusts containerd.pid. The
    harness must start anyway (CI once failed on exactly this)."""
    run_dir = Path(tempfile.mkdtemp(prefix="ae-", dir="/run"))  # short: unix socket paths
    engine = dockerd.Engine(run_dir, tmp_path / "data", tmp_path / "dockerd.log")
    (engine.exec_root / "containerd").mkdir(parents=True)
    for pidfile in (engine.pidfile, engine.exec_root / "containerd" / "containerd.pid"):
        pidfile.write_text(f"{os.getpid()}\n")  # alive, and not a dockerd or containerd
    (engine.exec_root / "netns").mkdir()
    (engine.exec_root / "netns" / "0123456789ab").touch()  # a dead engine's netns file
    try:
        host = engine.ensure(timeout=30)
        assert engine.ping()
        client = docker.DockerClient(base_url=host, timeout=30)
        assert client.info()["DockerRootDir"] == str(engine.data_root)
        assert engine.pidfile.read_text().strip() == str(engine.pid())
        assert not (engine.exec_root / "netns" / "0123456789ab").exists()
        client.close()
    finally:
        engine.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    assert engine.pid() is None and not engine.ping()


def test_rclone_image_runs_with_host_network(docker_client, rclone_image):
    code, out, _ = run(docker_client, rclone_image, ["version"])
    assert code == 0
    assert out.startswith("rclone v1.75.2")
    attrs = docker_client.images.get(rclone_image).attrs["Config"]
    assert attrs["Entrypoint"] == ["/usr/local/bin/rclone"]
    assert "HOME=/tmp" in attrs["Env"]
    code, out, _ = run(docker_client, rclone_image, ["lsjson", "--stat", "-M", "/tmp"])
    assert code == 0 and json.loads(out)["IsDir"]


def test_bridge_container_gets_no_network(docker_client, rclone_image, s3server, bucket):
    """Default (bridge) networking: no bridge exists, so the container has only its own loopback
    and cannot reach the test S3 server on the host's 127.0.0.1."""
    c = docker_client.containers.run(
        rclone_image,
        ["lsjson", f":s3:{bucket}/", *BOUNDED],
        environment={"RCLONE_S3_PROVIDER": "Other", "RCLONE_S3_ENDPOINT": s3server.endpoint_url},
        detach=True,
    )
    try:
        code = c.wait(timeout=60)["StatusCode"]
        c.reload()
        assert c.attrs["NetworkSettings"]["IPAddress"] == ""
        assert code != 0
        assert "connection refused" in c.logs().decode().lower()
    finally:
        c.remove(force=True)


def test_rclone_container_lists_volume_and_syncs_to_s3(
    docker_client, rclone_image, s3server, bucket, pg_volume, tmp_path
):
    t0 = datetime(2026, 3, 7, 23, 15)
    dumps = [(t0 + timedelta(hours=h), f"dump {h}".encode()) for h in range(3)]
    files = fill_volume(docker_client, pg_volume, lambda root: make_backups_tree(root, dumps))
    root = volume_mountpoint(docker_client, pg_volume)
    assert all(f.is_relative_to(root) for f in files)

    creds = tmp_path / "aws-credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {s3server.access_key}\n"
        f"aws_secret_access_key = {s3server.secret_key}\n"
    )
    creds.chmod(0o600)
    mounts = {
        pg_volume: {"bind": "/data", "mode": "ro"},
        str(creds): {"bind": CREDS_IN_CONTAINER, "mode": "ro"},
    }

    code, out, err = run(docker_client, rclone_image, ["lsjson", "-R", "/data"], volumes=mounts)
    assert code == 0, err
    listed = {e["Path"] for e in json.loads(out) if not e["IsDir"]}
    assert {str(f.relative_to(root)) for f in files} <= listed

    code, _, err = run(
        docker_client,
        rclone_image,
        ["sync", "/data/", f":s3:{bucket}/postgres/", "--use-json-log", *BOUNDED],
        volumes=mounts,
        environment=rclone_s3_env(s3server),
    )
    assert code == 0, err
    got = s3server.list_keys(bucket, "postgres/")
    expected = {f"postgres/{f.relative_to(root)}": f.read_bytes() for f in files}
    assert got == expected  # DB-latest symlinks are skipped by rclone
    assert "symlink" in err.lower()


# -- S3 server -----------------------------------------------------------------------------


def test_s3server_enforces_credentials(s3server, bucket):
    bad = s3server.client(secret_key="not-the-secret", retries=0)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        bad.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert exc.value.response["Error"]["Code"] in {"AccessDenied", "SignatureDoesNotMatch"}
    unknown = s3server.client(access_key="AKNOBODY", retries=0)
    with pytest.raises(botocore.exceptions.ClientError):
        unknown.list_objects_v2(Bucket=bucket)
    assert s3server.list_keys(bucket) == {}


def test_s3server_volume_count_does_not_depend_on_free_disk(s3server, bucket):
    """Every bucket with data takes one volume; the suite makes over a hundred buckets."""
    s3server.client().put_object(Bucket=bucket, Key="k", Body=b"x")
    url = f"http://127.0.0.1:{s3server.port + 1}/dir/status"
    with urllib.request.urlopen(url, timeout=5) as resp:
        topology = json.load(resp)["Topology"]
    assert topology["Max"] == MAX_VOLUMES and topology["Free"] > MAX_VOLUMES // 2


def test_s3server_stop_start_keeps_data(s3server, bucket):
    s3server.put(bucket, "a/b.txt", b"kept")
    s3server.stop()
    try:
        assert not s3server.running
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            s3server.client(retries=0, timeout=2).list_buckets()
    finally:
        s3server.start()
    assert s3server.get(bucket, "a/b.txt") == b"kept"
    assert s3server.list_sizes(bucket) == {"a/b.txt": 4}


# -- PostgreSQL ----------------------------------------------------------------------------


def test_pg_dump_restores(pg, tmp_path):
    pg.createdb("harness_src")
    pg.psql(
        "CREATE TABLE receipts (id int PRIMARY KEY, total numeric);"
        "INSERT INTO receipts SELECT g, g * 1.5 FROM generate_series(1, 100) g;",
        db="harness_src",
    )
    dump = pg.pg_dump("harness_src", tmp_path / "src.dump")
    assert dump.read_bytes()[:5] == b"PGDMP"
    pg.createdb("harness_dst")
    pg.pg_restore(dump, "harness_dst")
    assert pg.psql("SELECT count(*), sum(total) FROM receipts", db="harness_dst").strip() == (
        "100|7575.0"
    )
    assert pg.dsn("x") == f"postgresql://postgres@127.0.0.1:{pg.port}/x"
    with pytest.raises(RuntimeError, match="does not exist"):
        pg.psql("SELECT * FROM nope")


# -- backup tree ---------------------------------------------------------------------------


def test_make_backups_tree_layout(tmp_path):
    # Sat 2026-03-07 22:15 .. Mon 2026-03-09 02:15, every 4 h: spans 3 days, 2 ISO weeks, 1 month
    t0 = datetime(2026, 3, 7, 22, 15)
    dumps = [(t0 + timedelta(hours=4 * i), f"d{i}".encode()) for i in range(8)]
    files = make_backups_tree(tmp_path, dumps, db="ardua", suffix=".dump")

    last = sorted(p.name for p in (tmp_path / "last").iterdir() if not p.is_symlink())
    assert last == [f"ardua-{d:%Y%m%d-%H%M%S}.dump" for d, _ in dumps]
    assert sorted(p.name for p in (tmp_path / "daily").iterdir()) == [
        "ardua-20260307.dump", "ardua-20260308.dump", "ardua-20260309.dump", "ardua-latest.dump",
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "weekly").iterdir()) == [
        "ardua-202610.dump", "ardua-202611.dump", "ardua-latest.dump",
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "monthly").iterdir()) == [
        "ardua-202603.dump", "ardua-latest.dump",
    ]  # fmt: skip
    assert len(files) == 8 + 3 + 2 + 1
    assert all(f.is_file() and not f.is_symlink() for f in files)

    newest = tmp_path / "last" / "ardua-20260309-021500.dump"
    # newest dump: last + daily + weekly + monthly
    assert newest.stat().st_nlink == 4
    assert (tmp_path / "monthly/ardua-202603.dump").samefile(newest)
    # Sat 7th has one dump: last + daily
    assert (tmp_path / "last/ardua-20260307-221500.dump").stat().st_nlink == 2
    # Sun 8th 22:15 is the newest of that day and of ISO week 10 (Mon 2nd .. Sun 8th)
    sun = tmp_path / "last/ardua-20260308-221500.dump"
    assert sun.stat().st_nlink == 3
    assert (tmp_path / "weekly/ardua-202610.dump").samefile(sun)
    # a dump that is not the newest of any period
    assert (tmp_path / "last/ardua-20260308-021500.dump").stat().st_nlink == 1
    assert newest.stat().st_mtime == dumps[-1][0].timestamp()

    for folder, target in {
        "last": "ardua-20260309-021500.dump",
        "daily": "ardua-20260309.dump",
        "weekly": "ardua-202611.dump",
        "monthly": "ardua-202603.dump",
    }.items():
        link = tmp_path / folder / "ardua-latest.dump"
        assert stat.S_ISLNK(link.lstat().st_mode)
        assert os.readlink(link) == target  # relative
        assert link.read_bytes() == b"d7"


# -- config writer -------------------------------------------------------------------------


def test_write_config(write_config, tmp_path, s3server, bucket, rclone_image):
    path = write_config(
        tmp_path, s3server, bucket,
        db_volume="vol1", receipts_dir=tmp_path / "receipts",
        jobs={"db-upload": {"timeout": "30s"}}, s3={"profile": None},
    )  # fmt: skip
    data = tomllib.loads(path.read_text())
    assert data["s3"]["endpoint_url"] == s3server.endpoint_url
    assert data["s3"]["bucket"] == bucket
    assert "profile" not in data["s3"]
    assert data["rclone"] == {"image": rclone_image, "network_mode": "host"}
    assert data["jobs"]["db-upload"]["source"] == "volume:vol1"
    assert data["jobs"]["db-upload"]["timeout"] == "30s"
    assert data["jobs"]["receipts-upload"]["source"] == str(tmp_path / "receipts")
    creds = Path(data["s3"]["credentials_file"])
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert s3server.secret_key in creds.read_text()


# -- slow: Debian + PostgreSQL 15 image (built once, then cached by tag) ---------------------


@pytest.mark.slow
def test_debian_pg_image(docker_client):
    tag = ensure_debian_pg_image(docker_client)
    assert tag == DEBIAN_PG_IMAGE
    code, out, err = run(docker_client, tag, ["bash", "-c", "pg_dump --version && id postgres"])
    assert code == 0, err
    assert "pg_dump (PostgreSQL) 15" in out
    assert "postgres" in out


# -- leftover-container check --------------------------------------------------------------


def test_leftover_check_only_claims_this_sessions_containers(s3server, tmp_path):
    from tests.conftest import _is_ours

    class Fake:
        def __init__(self, env=(), mounts=()):
            self.attrs = {"Config": {"Env": list(env), "Cmd": []}, "Args": [],
                          "Mounts": list(mounts)}  # fmt: skip

    assert _is_ours(Fake(env=[f"RCLONE_S3_ENDPOINT={s3server.endpoint_url}"]))
    assert _is_ours(Fake(mounts=[{"Type": "bind", "Source": str(tmp_path / "receipts")}]))
    assert not _is_ours(Fake(env=["RCLONE_S3_ENDPOINT=http://127.0.0.1:1"]))
    assert not _is_ours(Fake(mounts=[{"Type": "volume", "Name": "someone-elses", "Source": "/x"}]))
