"""A cheap pass (compare = size | mtime) that the two listings prove has nothing to do starts no
sync container (guard.first_difference). The judgement must never be looser than rclone's: for
every case below, when it says "nothing to do", the real rclone's `sync --dry-run` with the
same flags and excludes would copy and delete nothing either."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from supervisor.config import load as config_mod
from supervisor.containers import rclone
from supervisor.containers.engine import LABEL_RUN, LABEL_STEP
from supervisor.containers.rclone import ListedFile
from supervisor.storage import markers, s3
from supervisor.storage.s3 import S3Object
from supervisor.upload import compare, guard
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.images import rclone_binary

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _listed(path: str, size: int, at: datetime) -> ListedFile:
    return ListedFile(path, size, at.isoformat())


def _obj(rel: str, size: int, at: datetime) -> S3Object:
    return S3Object(f"p/{rel}", size, "etag", at)


@pytest.mark.parametrize(("mode", "source", "mirror", "left_out", "expected"), [
    ("size", [("a", 1, T0)], {"a": (1, T0)}, (), None),
    ("size", [("a", 1, T0)], {"a": (2, T0)}, (), "a is 1 B, in S3 2 B"),
    ("size", [("a", 1, T0), ("b", 1, T0)], {"a": (1, T0)}, (), "b is not in S3"),
    ("size", [("a", 1, T0)], {"a": (1, T0), "x": (1, T0)}, (), "x is in S3, not in the source"),
    ("size", [("a", 1, T0 + timedelta(hours=1))], {"a": (1, T0)}, (), None),  # size misses it
    ("mtime", [("a", 1, T0 + timedelta(hours=1))], {"a": (1, T0)}, (),
     "a was modified after its upload"),
    ("mtime", [("a", 1, T0)], {"a": (1, T0)}, (), None),  # as old: --update skips it
    ("mtime", [("a", 1, T0 - timedelta(days=9))], {"a": (1, T0)}, (), None),  # older: skipped
    # A young file is excluded on both sides: new, or gone from S3, it is no difference.
    ("size", [("a", 1, T0), ("y", 5, T0)], {"a": (1, T0)}, ("y",), None),
    ("size", [("a", 1, T0)], {"a": (1, T0), "y": (5, T0)}, ("y",), None),
    # The markers are excluded from every sync.
    ("size", [("a", 1, T0)], {"a": (1, T0), markers.SENTINEL_NAME: (9, T0)}, (), None),
    ("checksum", [("a", 1, T0)], {"a": (1, T0)}, (), "a checksum pass compares content"),
])
def test_first_difference(mode, source, mirror, left_out, expected) -> None:
    listed = [_listed(*f) for f in source]
    objects = {rel: _obj(rel, size, at) for rel, (size, at) in mirror.items()}
    assert guard.first_difference(mode, listed, objects, left_out) == expected


# -- against the real rclone ------------------------------------------------------------------


def _rclone_dry_run(cfg: config_mod.Config, folder: Path, mode: str, exclude: list[str],
                    creds: Path) -> list[tuple[str, str]]:
    """What the real rclone's `sync --dry-run` would copy and delete, with the flags and
    excludes a run gives it (rclone.sync_command, only the source is this host folder)."""
    command = rclone.sync_command(cfg.destination(), "receipts", 60, compare.FLAGS[mode],
                                  ["--dry-run"], exclude=exclude)
    command[1] = f"{folder}/"
    env = {**os.environ, **rclone.environment(cfg.destination()),
           "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    result = subprocess.run([str(rclone_binary()), *command], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return sorted((e["skipped"], e["object"]) for e in map(json.loads, result.stderr.splitlines())
                  if e.get("skipped") in ("copy", "delete"))


def _mutations(folder: Path, cfg: config_mod.Config, uploaded: datetime) -> dict[str, object]:
    """Changes made after an upload, each undone before the next (name -> undo)."""
    later = (uploaded + timedelta(seconds=5)).timestamp()
    older = (uploaded - timedelta(days=30)).timestamp()
    bucket = cfg.destination().bucket
    client = s3.client(cfg.destination())

    def rewrite(name: str, body: bytes, when: float):
        path = folder / name
        before, stat = path.read_bytes(), path.stat()
        path.write_bytes(body)
        os.utime(path, (when, when))
        return lambda: (path.write_bytes(before), os.utime(path, (stat.st_mtime,) * 2))

    def add(name: str, when: float):
        path = folder / name
        path.write_bytes(b"new receipt")
        os.utime(path, (when, when))
        return path.unlink

    def remove(name: str):
        path = folder / name
        before, stat = path.read_bytes(), path.stat()
        path.unlink()
        return lambda: (path.write_bytes(before), os.utime(path, (stat.st_mtime,) * 2))

    def extra_object(key: str):
        client.put_object(Bucket=bucket, Key=f"receipts/{key}", Body=b"stray")
        return lambda: client.delete_object(Bucket=bucket, Key=f"receipts/{key}")

    same_size = b"receipt 2 total 99"
    return {
        "unchanged": lambda: (lambda: None),
        "new file": lambda: add("2026/r-new.pdf", older),
        "removed file": lambda: remove("2026/r1.pdf"),
        "same-size rewrite, later mtime": lambda: rewrite("2026/r2.pdf", same_size, later),
        "same-size rewrite, older mtime": lambda: rewrite("2026/r2.pdf", same_size, older),
        "longer rewrite, later mtime": lambda: rewrite("2026/r3.pdf", b"receipt 3 total 100",
                                                       later),
        "shorter rewrite, older mtime": lambda: rewrite("2026/r3.pdf", b"r3", older),
        "touched only": lambda: rewrite("2026/r4.pdf", b"receipt 4 total 14", later),
        "stray object in S3": lambda: extra_object("2026/stray.pdf"),
        "stray marker-named object": lambda: extra_object(markers.SENTINEL_NAME),
        "name with glob characters": lambda: add("2026/r[1]*.pdf", older),
    }


def test_never_looser_than_rclone(s3server, bucket, write_config, tmp_path) -> None:
    folder = tmp_path / "receipts"
    (folder / "2026").mkdir(parents=True)
    for i in range(6):
        (folder / "2026" / f"r{i}.pdf").write_bytes(f"receipt {i} total 1{i}".encode())
    settle(folder)
    path = write_config(tmp_path, s3server, bucket, receipts_dir=folder)
    cfg = config_mod.load(path)
    creds = tmp_path / "aws-credentials"
    assert _rclone_dry_run(cfg, folder, "checksum", [], creds)  # the oracle sees uploads
    up = rclone.sync_command(cfg.destination(), "receipts", 60)
    up[1] = f"{folder}/"
    env = {**os.environ, **rclone.environment(cfg.destination()),
           "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    subprocess.run([str(rclone_binary()), *up], check=True, capture_output=True, env=env)
    uploaded = min(o.last_modified for o in s3.list_objects(cfg.destination(), "receipts").values())

    verdicts = []
    for name, mutate in _mutations(folder, cfg, uploaded).items():
        undo = mutate()
        try:
            listed = [ListedFile(str(p.relative_to(folder)), p.stat().st_size,
                                 datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat())
                      for p in folder.rglob("*") if p.is_file()]
            mirror = s3.list_objects(cfg.destination(), "receipts")
            for mode in (compare.SIZE, compare.MTIME):
                ours = guard.first_difference(mode, listed, mirror)
                theirs = _rclone_dry_run(cfg, folder, mode, [], creds)
                verdicts.append((name, mode, ours is None, not theirs))
                if ours is None:
                    assert not theirs, (name, mode, theirs)
        finally:
            undo()
    quiet = {(name, mode) for name, mode, ours_quiet, _ in verdicts if ours_quiet}
    # The cases a cheap pass does not act on are exactly the documented misses, and never a
    # new, removed or stray file.
    assert quiet == {
        ("unchanged", "size"), ("unchanged", "mtime"),
        ("same-size rewrite, later mtime", "size"),
        ("same-size rewrite, older mtime", "size"), ("same-size rewrite, older mtime", "mtime"),
        ("touched only", "size"),
        ("stray marker-named object", "size"), ("stray marker-named object", "mtime"),
    }


def _sync_containers(client: docker.DockerClient, run_id: str, since: float) -> list[str]:
    """The steps of the containers the run created, from the engine's own event stream."""
    events = client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                           filters={"event": "create", "label": f"{LABEL_RUN}={run_id}"})
    return [e["Actor"]["Attributes"].get(LABEL_STEP, "") for e in events]


def test_unchanged_cheap_pass_starts_no_sync(s3server, bucket, write_config, tmp_path,
                                             docker_client) -> None:
    folder = tmp_path / "receipts"
    folder.mkdir()
    for i in range(5):
        (folder / f"r{i}.pdf").write_bytes(f"receipt {i}".encode())
    (folder / "link.pdf").symlink_to("r0.pdf")
    settle(folder)
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=folder,
                       jobs={"receipts-upload": {"compare": "size", "deep_every": "7d"}})
    first = run_cli("run-once", "receipts-upload", config=cfg)
    assert re.search(r"transferred\s+5 files", first.stdout), first.stdout
    sentinel = s3server.get(bucket, "receipts/.last_success")

    plan = run_cli("run-once", "receipts-upload", "--dry-run", config=cfg)
    assert "a run would start no sync: S3 already matches the source (size pass)" in plan.stdout

    since = time.time() - 1
    again = run_cli("run-once", "receipts-upload", config=cfg)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "S3 already matched the source (size pass), no sync was needed" in again.stdout
    assert re.search(r"skipped symlinks\s+1", again.stdout), again.stdout  # from the listing
    assert re.search(r"rclone exit code -", again.stdout)
    run_id = re.search(r"run (\S+)\s+SUCCESS", again.stdout).group(1)
    assert _sync_containers(docker_client, run_id, since) == ["list"]
    assert s3server.get(bucket, "receipts/.last_success") >= sentinel  # written again

    (folder / "r9.pdf").write_bytes(b"a new receipt")
    settle(folder)
    plan = run_cli("run-once", "receipts-upload", "--dry-run", config=cfg)
    assert "a run would sync as listed" in plan.stdout
    since = time.time() - 1
    changed = run_cli("run-once", "receipts-upload", config=cfg)
    assert re.search(r"transferred\s+1 files", changed.stdout), changed.stdout
    run_id = re.search(r"run (\S+)\s+SUCCESS", changed.stdout).group(1)
    assert "sync" in _sync_containers(docker_client, run_id, since)
    assert s3server.get(bucket, "receipts/r9.pdf") == b"a new receipt"
