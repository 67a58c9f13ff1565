"""Hard links cross the uplink once: real pg_dump dumps in a postgres-backup-local tree in a
Docker volume, real rclone containers, real SeaweedFS. The mirror stays exact (every key, same
bytes, same MD5 by ETag or rclone's md5chksum, same mtime metadata) while only one copy of each
dump is uploaded and the other keys are made server-side."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from supervisor.config import load as config_mod
from supervisor.containers import engine as docker_runner
from supervisor.containers import jobs as rclone_containers
from supervisor.core.states import SUCCESS
from supervisor.storage import s3
from supervisor.upload import run as pipeline
from supervisor.upload import servercopy
from tests.harness.cli import run_cli
from tests.harness.pgtree import make_backups_tree, volume_mountpoint
from tests.harness.sourcedb import DAYS, dumps_fixture  # noqa: F401 (the dumps fixture)


def local_tree(root: Path) -> dict[str, Path]:
    """What rclone uploads: regular files (symlinks skipped), relative path -> path."""
    return {str(p.relative_to(root)): p for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()}


def distinct_bytes(files: dict[str, Path]) -> int:
    """Bytes of distinct inodes: what must cross the uplink at least once."""
    return sum({(p.stat().st_dev, p.stat().st_ino): p.stat().st_size
                for p in files.values()}.values())


def assert_exact_mirror(s3server, bucket: str, root: Path, prefix: str = "postgres") -> None:
    """Every key, same bytes, an MD5 rclone can compare, and rclone's mtime metadata."""
    files = local_tree(root)
    client = s3server.client()
    keys = {k for k in s3server.list_sizes(bucket, f"{prefix}/") if not k.endswith(".last_success")}
    assert keys == {f"{prefix}/{rel}" for rel in files}
    for rel, path in files.items():
        body = path.read_bytes()
        head = client.head_object(Bucket=bucket, Key=f"{prefix}/{rel}")
        assert client.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")["Body"].read() == body
        assert servercopy.object_md5(head) == hashlib.md5(body).hexdigest(), rel
        assert abs(float(head["Metadata"]["mtime"]) - path.stat().st_mtime) < 1e-3, rel


def test_each_dump_crosses_the_uplink_once(docker_client, s3server, bucket, pg_volume, dumps,
                                           write_config, tmp_path) -> None:
    root = volume_mountpoint(docker_client, pg_volume)
    make_backups_tree(root, dumps[:2])  # last/ x2, daily x2, weekly x2, monthly x1
    cfg = write_config(tmp_path, s3server, bucket, db_volume=pg_volume)

    first = run_cli("run-once", "db-upload", config=cfg)

    assert first.returncode == 0, first.stdout + first.stderr
    files = local_tree(root)
    assert len(files) == 7
    sizes = [len(body) for _, body in dumps[:2]]
    assert re.search(rf"transferred\s+2 files, {sum(sizes) / 1024:.1f} KiB", first.stdout)
    assert re.search(r"copied in S3\s+5 files", first.stdout), first.stdout
    assert "5 key(s) copied server-side" in first.stderr
    assert_exact_mirror(s3server, bucket, root)

    unchanged = run_cli("run-once", "db-upload", config=cfg)  # nothing to hash, copy or upload
    assert re.search(r"transferred\s+0 files", unchanged.stdout), unchanged.stdout
    assert re.search(r"copied in S3\s+0 files", unchanged.stdout)
    assert "copied server-side" not in unchanged.stderr  # no candidates: no hash container

    # Day 3: a new dump, new daily link, and weekly + monthly re-linked to it (S3 holds older
    # dumps under those keys).
    make_backups_tree(root, dumps)
    third = run_cli("run-once", "db-upload", config=cfg)
    assert third.returncode == 0, third.stdout + third.stderr
    assert re.search(rf"transferred\s+1 files, {len(dumps[2][1]) / 1024:.1f} KiB", third.stdout)
    assert re.search(r"copied in S3\s+3 files", third.stdout), third.stdout
    assert_exact_mirror(s3server, bucket, root)
    assert distinct_bytes(local_tree(root)) == sum(len(b) for _, b in dumps)


def _in_process(write_config, tmp_path, s3server, bucket, pg_volume):
    return config_mod.load(write_config(tmp_path, s3server, bucket, db_volume=pg_volume))


def test_a_failed_copy_is_uploaded_by_the_sync(docker_client, s3server, bucket, pg_volume, dumps,
                                               write_config, tmp_path, monkeypatch) -> None:
    root = volume_mountpoint(docker_client, pg_volume)
    make_backups_tree(root, dumps[:1])  # last, daily, weekly, monthly: one inode
    cfg = _in_process(write_config, tmp_path, s3server, bucket, pg_volume)
    real_copy = servercopy.copy

    def failing_copy(config, source_key, target_key, md5, head):
        if "weekly/" in target_key:
            raise s3.S3Error(f"server-side copy {source_key} -> {target_key} failed: injected")
        return real_copy(config, source_key, target_key, md5, head)

    monkeypatch.setattr(servercopy, "copy", failing_copy)
    report = pipeline.run_job(cfg, "db-upload", client=docker_client)

    assert report.result == SUCCESS, report.message
    assert report.copied_server_side == 2
    assert report.bytes_saved == 2 * len(dumps[0][1])
    assert report.files == 2  # the seed, and weekly/ uploaded by the sync instead
    assert report.bytes == 2 * len(dumps[0][1])
    assert_exact_mirror(s3server, bucket, root)


def test_multipart_objects_are_copied_with_their_md5(docker_client, s3server, bucket, pg_volume,
                                                     write_config, tmp_path, monkeypatch) -> None:
    """A dump over rclone's upload cutoff is uploaded in parts (ETag "…-N", MD5 in md5chksum
    metadata); a copy over COPY_PART_BYTES is a multipart copy. Both keep an MD5 rclone reads,
    so the sync afterwards transfers nothing."""
    root = volume_mountpoint(docker_client, pg_volume)
    (root / "last").mkdir()
    (root / "daily").mkdir()
    big = root / "last" / "db-20260301-010000.dump"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    os.link(big, root / "daily" / "db-20260301.dump")
    ts = DAYS[0].timestamp()
    os.utime(big, (ts, ts))
    cfg = _in_process(write_config, tmp_path, s3server, bucket, pg_volume)
    # rclone uploads last/ alone, in 5 MiB parts, as it would a dump over 200 MiB
    spec = rclone_containers.rclone_spec(
        cfg, cfg.destination(),
        ["copy", "/source/", cfg.destination().remote("postgres"), "--config", "",
              "--include", "/last/**", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"],
        docker_runner.source_mount(docker_client, cfg.jobs["db-upload"].source, "/source"),
        {docker_runner.LABEL_JOB: "db-upload"})
    assert docker_runner.run_oneshot(docker_client, spec, 120).exit_code == 0
    head = s3server.client().head_object(Bucket=bucket, Key=f"postgres/last/{big.name}")
    assert head["ETag"].strip('"').endswith("-3")
    monkeypatch.setattr(servercopy, "COPY_PART_BYTES", 5 * 1024 * 1024)

    report = pipeline.run_job(cfg, "db-upload", client=docker_client)

    assert report.result == SUCCESS, report.message
    assert (report.copied_server_side, report.files, report.bytes) == (1, 0, 0)
    copied = s3server.client().head_object(Bucket=bucket, Key="postgres/daily/db-20260301.dump")
    assert re.fullmatch(r"[0-9a-f]{32}-\d+", copied["ETag"].strip('"'))  # a multipart copy
    assert_exact_mirror(s3server, bucket, root)
