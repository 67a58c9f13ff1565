"""One job, two destinations (issue 20): the run copies to each of two real SeaweedFS servers,
each with its own guard, server-side copies, sync, post-sync check and sentinel; one destination
failing (stopped mid-run, wrong credentials, refused by its guard) never stops the other, and
the summary, the ledger and the metrics name it. Real dockerd, rclone containers, S3 servers."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.config import load as config_mod
from supervisor.containers import engine as docker_runner
from supervisor.daemon.service import DockerContainers
from tests.conftest import two_destinations, write_credentials
from tests.harness import dockerd
from tests.harness.cli import run_cli
from tests.harness.freeze import SyncFreezer
from tests.harness.pgtree import make_backups_tree, volume_mountpoint
from tests.harness.poll import poll
from tests.harness.s3server import S3Server

DUMP_TIMES = [datetime(2025, 12, 15, 1, 0, 0, tzinfo=UTC),
              datetime(2025, 12, 16, 1, 0, 0, tzinfo=UTC),
              datetime(2025, 12, 18, 1, 15, 4, tzinfo=UTC)]
SENTINEL = "postgres/.last_success"
SENTINEL_RE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ OK\n")


@pytest.fixture
def tree(docker_client: docker.DockerClient, pg_volume: str) -> dict[str, bytes]:
    """postgres-backup-local's layout (3 dumps, their daily/weekly/monthly hard links, the
    -latest symlinks) in the volume: relative path -> bytes. The dumps' content is not read by
    anything under test, so random bytes stand in for pg_dump's."""
    root = volume_mountpoint(docker_client, pg_volume)
    dumps = [(when, b"PGDMP" + secrets.token_bytes(96 * 1024)) for when in DUMP_TIMES]
    files = make_backups_tree(root, dumps)
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.fixture
def config(tmp_path: Path, write_config, s3server: S3Server, bucket: str,
           offsite_s3server: S3Server, offsite_bucket: str, pg_volume: str) -> Path:
    return write_config(tmp_path, s3server, bucket, db_volume=pg_volume,
                        overrides=two_destinations(tmp_path, s3server, bucket, offsite_s3server,
                                                   offsite_bucket),
                        metrics={"textfile": str(tmp_path / "ardua.prom")},
                        jobs={"db-upload": {"timeout": "60s"}})


def mirror(server: S3Server, bucket: str) -> dict[str, bytes]:
    objects = server.list_keys(bucket, "postgres/")
    objects.pop(SENTINEL, None)
    return objects


def expected(tree: dict[str, bytes]) -> dict[str, bytes]:
    return {f"postgres/{rel}": body for rel, body in tree.items()}


def history(config: Path) -> list[dict[str, Any]]:
    result = run_cli("history", "db-upload", "--json", config=config)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["destination"]: d for d in run["destinations"]}


def test_one_run_copies_to_both_destinations(tree, config, tmp_path, s3server, bucket,
                                             offsite_s3server, offsite_bucket) -> None:
    result = run_cli("run-once", "db-upload", config=config)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    for server, name in ((s3server, bucket), (offsite_s3server, offsite_bucket)):
        assert mirror(server, name) == expected(tree)  # keys and bytes
        assert SENTINEL_RE.fullmatch(server.get(name, SENTINEL))
    assert re.search(r"primary  SUCCESS  s3://" + bucket, result.stdout)
    assert re.search(r"offsite  SUCCESS  s3://" + offsite_bucket, result.stdout)
    run = history(config)[0]
    assert run["result"] == "success"
    rows = by_name(run)
    assert list(rows) == ["primary", "offsite"]
    dump_bytes = sum(len(body) for rel, body in tree.items() if rel.startswith("last/"))
    for row in rows.values():
        assert row["result"] == "success" and row["sentinel_written"]
        # Each dump crossed the uplink once per destination; its links were copied in S3.
        assert dump_bytes <= row["bytes"] <= 1.05 * dump_bytes
    assert re.search(r"copied in S3    5 files", result.stdout)  # in each block
    assert len(re.findall(r"copied in S3    5 files", result.stdout)) == 2
    families = {f.name: f for f in text_string_to_metric_families(
        (tmp_path / "ardua.prom").read_text())}
    success = {s.labels["destination"]: s.value for s in families[
        "ardua_backup_destination_last_success_timestamp_seconds"].samples
        if s.labels["job"] == "db-upload"}
    assert set(success) == {"primary", "offsite"}
    results = {(s.labels["destination"], s.labels["result"]) for s in families[
        "ardua_backup_destination_last_run_result"].samples if s.value == 1.0}
    assert results == {("primary", "success"), ("offsite", "success")}
    sent = {s.labels["destination"]: s.value for s in families[
        "ardua_backup_destination_last_run_bytes"].samples}
    assert sent == {"primary": rows["primary"]["bytes"], "offsite": rows["offsite"]["bytes"]}
    # Each destination's steps log with its name (journald's DESTINATION), as stderr shows it.
    lines = result.stderr.splitlines()
    for name in ("primary", "offsite"):
        mine = [x for x in lines if f"DESTINATION={name}" in x]
        assert any("deletion guard passed" in x for x in mine), lines
        assert any("post-sync check" in x for x in mine), lines
        assert any(f"{name} (s3://" in x and "DESTINATION_RESULT=success" in x for x in mine)


class StopOnSync:
    """Stops `server` the moment Docker creates a sync container that talks to it: the run is
    under way (listed, guarded, copies made) and that destination's sync cannot have started
    before its create call returned. SIGSTOP first (instant), then the process is ended."""

    def __init__(self, client: docker.DockerClient, server: S3Server) -> None:
        self.client, self.server = client, server
        self.stopped = threading.Event()
        self.stream = client.events(decode=True, filters={
            "type": "container", "event": "create",
            "label": f"{docker_runner.LABEL_STEP}=sync"})
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        for event in self.stream:
            try:
                env = self.client.containers.get(event["id"]).attrs["Config"].get("Env") or []
            except docker.errors.NotFound:
                continue
            if f"RCLONE_S3_ENDPOINT={self.server.endpoint_url}" in env:
                self.server.pause()
                self.server.stop(timeout=0.5)  # SIGTERM waits on the stopped process: SIGKILL
                self.stopped.set()
                return

    def close(self) -> None:
        self.stream.close()


def test_offsite_stopped_mid_run_fails_alone_and_the_next_run_heals_it(
        tree, config, docker_client, s3server, bucket, offsite_s3server,
        offsite_bucket) -> None:
    watcher = StopOnSync(docker_client, offsite_s3server)
    began = time.monotonic()
    try:
        result = run_cli("run-once", "db-upload", config=config)
    finally:
        watcher.close()
    took = time.monotonic() - began

    assert watcher.stopped.is_set()
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < 60, took  # the offsite's bounded timeouts, not the job's
    assert re.search(r"primary  SUCCESS", result.stdout)
    assert re.search(r"offsite  FAILED", result.stdout)
    assert re.search(r"=> offsite failed: ", result.stdout)
    assert mirror(s3server, bucket) == expected(tree)
    assert SENTINEL_RE.fullmatch(s3server.get(bucket, SENTINEL))
    run = history(config)[0]
    assert run["result"] == "failed" and "offsite failed" in run["message"]
    rows = by_name(run)
    assert rows["primary"]["result"] == "success" and rows["primary"]["sentinel_written"]
    assert rows["offsite"]["result"] == "failed" and not rows["offsite"]["sentinel_written"]

    offsite_s3server.start()
    assert SENTINEL not in offsite_s3server.list_sizes(offsite_bucket, "postgres/")
    healed = run_cli("run-once", "db-upload", config=config)

    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert mirror(offsite_s3server, offsite_bucket) == expected(tree)
    assert SENTINEL_RE.fullmatch(offsite_s3server.get(offsite_bucket, SENTINEL))
    assert {r["result"] for r in history(config)[0]["destinations"]} == {"success"}


def test_offsite_with_wrong_credentials_is_named_and_primary_goes_on(
        tree, config, tmp_path, s3server, bucket, offsite_s3server) -> None:
    write_credentials(tmp_path / "offsite-credentials", offsite_s3server.access_key,
                      "not-the-secret")

    result = run_cli("run-once", "db-upload", config=config)

    assert result.returncode == 1, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("  => "))
    assert "offsite failed: " in line and "refused the credentials" in line
    assert "destinations.offsite.credentials_file" in line
    assert "not-the-secret" not in result.stdout + result.stderr
    assert mirror(s3server, bucket) == expected(tree)
    assert by_name(history(config)[0])["primary"]["result"] == "success"


def test_guard_refusal_at_one_destination_only(tree, config, s3server, bucket,
                                               offsite_s3server, offsite_bucket) -> None:
    # The offsite mirror holds many objects the source does not: syncing would delete them.
    s3 = offsite_s3server.client()
    for i in range(4):
        s3.put_object(Bucket=offsite_bucket, Key=f"postgres/old/stray-{i}.dump", Body=b"x" * 100)
    plan = run_cli("run-once", "db-upload", "--dry-run", config=config)
    assert plan.returncode == 1, plan.stdout + plan.stderr  # the worst plan's code
    primary_plan, offsite_plan = plan.stdout.split("\n\n")
    assert f"s3://{bucket}/postgres/  (primary)" in primary_plan
    assert "=> a run would sync as listed" in primary_plan
    assert f"s3://{offsite_bucket}/postgres/  (offsite)" in offsite_plan
    assert "=> a run would be REFUSED by the deletion guard" in offsite_plan
    assert "would delete      4 objects" in offsite_plan

    result = run_cli("run-once", "db-upload", config=config)

    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"offsite  REFUSED", result.stdout)
    assert "offsite refused: deletion guard: " in result.stdout
    assert mirror(s3server, bucket) == expected(tree)
    assert SENTINEL_RE.fullmatch(s3server.get(bucket, SENTINEL))
    left = offsite_s3server.list_sizes(offsite_bucket, "postgres/")
    assert sorted(left) == sorted(f"postgres/old/stray-{i}.dump" for i in range(4))
    run = history(config)[0]
    assert run["result"] == "refused"
    assert {k: v["result"] for k, v in by_name(run).items()} == {"primary": "success",
                                                                 "offsite": "refused"}


def test_ctrl_c_with_destinations_in_threads_removes_every_container(
        tree, config, docker_client, offsite_s3server, offsite_bucket) -> None:
    """Only the main thread hears SIGINT: the run stops its containers (the offsite's sync hung
    on a frozen server and rclone frozen in it) and each thread ends as its container does."""
    freezer = SyncFreezer(docker_client, offsite_s3server)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--config", str(config), "run-once",
             "db-upload"], env={**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        poll(lambda: freezer.sync_attrs is not None or proc.poll() is not None,
             "the offsite sync to hang", 60)
        assert proc.poll() is None, proc.communicate()
        # The daemon's busy check covers every destination: with the primary's sync over, the
        # offsite's alone makes the job busy.
        loaded = config_mod.load(config)
        poll(lambda: not docker_runner.target_containers(
            docker_client, loaded.destination("primary").url("postgres")),
            "the primary's sync to end", 60)
        assert DockerContainers().running(loaded, "db-upload") is True
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        freezer.close()
    assert proc.returncode == 130, err
    assert "interrupted; containers removed" in err
    run_id = freezer.sync_attrs["Config"]["Labels"][docker_runner.LABEL_RUN]
    assert docker_client.containers.list(
        all=True, filters={"label": f"{docker_runner.LABEL_RUN}={run_id}"}) == []
    assert SENTINEL not in offsite_s3server.list_sizes(offsite_bucket, "postgres/")
    assert history(config)[0]["result"] == "interrupted"
