"""`status` against two real S3 servers (SeaweedFS): each destination's rows and diagnoses on
their own, one stopped or frozen destination UNKNOWN by name while the other stays OK; a
state_dir on a real read-only bind mount or a real full tmpfs is its own CRITICAL row.

The marker objects are written directly with boto3 in the formats storage/markers.py defines
(`.last_success`: `<UTC ts> OK`, `.last_restore_drill`: `<UTC ts> OK|FAIL <key> <s>s`), and
the dumps as the keys an upload leaves (`postgres/last/<name>`, same bytes), so no upload run
is needed where the test is about what status reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from supervisor import cli
from supervisor.alerts.alerter import Alerter
from supervisor.config import load as config
from supervisor.health import gather
from supervisor.storage import markers
from tests.conftest import two_destinations
from tests.harness.pgtree import fill_volume, make_backups_tree

pytestmark = pytest.mark.docker
NOW = datetime.now(UTC)


@dataclass
class World:
    cfg: config.Config
    primary: object  # S3Server
    offsite: object
    buckets: dict[str, str]
    newest: str  # the newest dump's key under postgres/


def put(world: World, dest: str, key: str, body: bytes) -> None:
    server = world.primary if dest == "primary" else world.offsite
    server.client().put_object(Bucket=world.buckets[dest], Key=key, Body=body)  # type: ignore[attr-defined]


def sentinel(world: World, dest: str, prefix: str, hours_ago: float) -> None:
    put(world, dest, f"{prefix}/.last_success",
        markers.format_sentinel(NOW - timedelta(hours=hours_ago)).encode())


def dumps_in(tree: Path) -> list[Path]:
    """The dumps of last/ an upload leaves in S3 (rclone skips the *-latest symlinks)."""
    return [p for p in (tree / "last").iterdir() if not p.is_symlink()]


@pytest.fixture
def world(tmp_path, s3server, bucket, offsite_s3server, offsite_bucket, pg_volume,
          docker_client, write_config) -> World:
    """Fresh dumps in the volume and in both buckets, fresh sentinels everywhere, versioning on,
    a good drill yesterday in primary; receipts-upload copies to primary only."""
    dumps = [(NOW - timedelta(hours=h), os.urandom(2000)) for h in (27, 3)]
    fill_volume(docker_client, pg_volume, lambda root: make_backups_tree(root, dumps))
    local = tmp_path / "tree"
    make_backups_tree(local, dumps)
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    path = write_config(
        tmp_path, s3server, bucket, db_volume=pg_volume, receipts_dir=receipts,
        overrides=two_destinations(tmp_path, s3server, bucket, offsite_s3server, offsite_bucket),
        jobs={"receipts-upload": {"destinations": ["primary"]}}, health={"db_container": ""},
        metrics={"textfile": str(tmp_path / "ardua.prom")})
    w = World(config.load(path), s3server, offsite_s3server,
              {"primary": bucket, "offsite": offsite_bucket},
              f"last/{sorted(p.name for p in dumps_in(local))[-1]}")
    for dest in ("primary", "offsite"):
        server = s3server if dest == "primary" else offsite_s3server
        server.client().put_bucket_versioning(
            Bucket=w.buckets[dest], VersioningConfiguration={"Status": "Enabled"})
        for dump in dumps_in(local):
            put(w, dest, f"postgres/last/{dump.name}", dump.read_bytes())
        sentinel(w, dest, "postgres", 0.5)
    sentinel(w, "primary", "receipts", 0.5)
    put(w, "primary", "postgres/.last_restore_drill", markers.format_marker(
        NOW - timedelta(days=1), True, w.newest, 40).encode())
    return w


def status(cfg: config.Config, capsys) -> tuple[int, dict, dict[str, tuple[str, str]]]:
    code = cli.main(["--config", str(cfg.path), "status", "--json"])
    logger.remove()  # cli.main logs to the stderr pytest captured for this call only
    data = json.loads(capsys.readouterr().out)
    return code, data, {c["name"]: (c["state"], c["detail"]) for c in data["checks"]}


PRIMARY_ROWS = ("primary: S3 has ardua's dump", "primary: last success postgres/",
                "primary: last success receipts/", "primary: bucket versioning")


def test_offsite_stale_missing_stopped_frozen_is_named_and_primary_stays_ok(world,
                                                                           capsys) -> None:
    code, data, rows = status(world.cfg, capsys)
    assert (code, data["diagnoses"]) == (0, [])
    assert rows["offsite: S3 has ardua's dump"] == ("OK", "same key, same size")
    assert "offsite: last success receipts/" not in rows  # receipts-upload: primary only
    assert rows["restore drill"][0] == "OK" and "in primary" in rows["restore drill"][1]
    prom = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in
            text_string_to_metric_families(world.cfg.metrics.textfile.read_text())  # type: ignore[union-attr]
            for s in family.samples}
    assert prom[("ardua_backup_destination_has_latest_dump", (("destination", "offsite"),))] == 1
    assert prom[("ardua_backup_s3_has_latest_dump", ())] == 1
    offsite_age = data["destinations"][1]["sentinels"]["db-upload"]["age_s"]
    assert offsite_age >= 1800 and prom[("ardua_backup_destination_sentinel_age_seconds", (
        ("destination", "offsite"), ("job", "db-upload")))] == offsite_age

    # offsite's upload stopped 5 hours ago and missed the newest dump
    sentinel(world, "offsite", "postgres", 5)
    world.offsite.client().delete_object(Bucket=world.buckets["offsite"],  # type: ignore[attr-defined]
                                         Key=f"postgres/{world.newest}")
    code, data, rows = status(world.cfg, capsys)
    assert (code, data["diagnoses"]) == (
        2, ["offsite: Upload failing: db-upload has no verified upload within 2h 00m"])
    assert rows["offsite: S3 has ardua's dump"] == ("CRITICAL", "missing or different size")
    assert rows["offsite: last success postgres/"][0] == "CRITICAL"
    assert all(rows[name][0] == "OK" for name in PRIMARY_ROWS), rows
    assert data["sentinels"]["db-upload"]["age_s"] > 5 * 3600  # the worst of the two
    assert data["dump"]["in_s3"] is False  # not in every destination

    # offsite's sentinel is fresh again, the dump still missing: the upload missed it
    sentinel(world, "offsite", "postgres", 0.2)
    code, data, rows = status(world.cfg, capsys)
    assert data["diagnoses"] == [
        f"offsite: Upload ran but missed the newest dump of ardua: {world.newest}"]

    # Stopped, then frozen: only offsite's rows are unknown, named
    _offsite_stopped_then_frozen(world, capsys)


def _offsite_stopped_then_frozen(world: World, capsys) -> None:  # type: ignore[no-untyped-def]
    offsite = world.offsite
    offsite.stop()  # type: ignore[attr-defined]
    try:
        code, data, rows = status(world.cfg, capsys)
    finally:
        offsite.start()  # type: ignore[attr-defined]
    assert (code, data["state"]) == (3, "UNKNOWN")
    assert data["diagnoses"] == [
        f"S3 unreachable (offsite): S3 endpoint {offsite.endpoint_url} is unreachable; check "  # type: ignore[attr-defined]
        f"destinations.offsite.endpoint_url and the network"]
    assert rows["offsite: S3 has ardua's dump"] == ("UNKNOWN", "S3 not readable")
    assert rows["offsite: last success postgres/"] == ("UNKNOWN", "S3 not readable")
    assert "offsite: bucket versioning" not in rows
    assert all(rows[name][0] == "OK" for name in PRIMARY_ROWS), rows
    assert rows["restore drill"][0] == "OK"  # read from primary

    # Frozen (SIGSTOP: connections accepted, never answered).
    offsite.pause()  # type: ignore[attr-defined]
    try:
        started = time.monotonic()
        code, data, rows = status(world.cfg, capsys)
        took = time.monotonic() - started
    finally:
        offsite.resume()  # type: ignore[attr-defined]
    assert (code, data["diagnoses"][0].startswith("S3 unreachable (offsite)")) == (3, True)
    assert all(rows[name][0] == "OK" for name in PRIMARY_ROWS), rows
    # Its own bound once, the primary read beside it; not one bound per read of each
    # destination. The bound is the retry policy's (core.retry: 4 tries of a 5 s read, no new
    # try after 15 s): measured 20.3 s; two destinations read one after the other: 40 s.
    assert took < 30, took


@pytest.fixture
def broken_state_dir(request, tmp_path) -> Iterator[tuple[str, Path]]:
    """state_dir on a real read-only bind mount, or on a real 1 MiB tmpfs filled up."""
    state = tmp_path / "state"
    state.mkdir()
    kind = request.param
    if kind == "read-only":
        subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
    else:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(state)], check=True)
        subprocess.run(["dd", "if=/dev/zero", f"of={state}/fill", "bs=64k"], capture_output=True,
                       check=False)  # ends with ENOSPC: the filesystem is full
    try:
        yield kind, state
    finally:
        subprocess.run(["umount", str(state)], check=True)


@pytest.mark.parametrize("broken_state_dir", ["read-only", "full"], indirect=True)
def test_a_state_dir_that_cannot_record_runs_is_named_after_a_verified_upload(
        broken_state_dir, tmp_path, s3server, bucket, pg_volume, docker_client, write_config,
        capsys) -> None:
    kind, state = broken_state_dir
    dumps = [(NOW - timedelta(hours=h), os.urandom(2000)) for h in (27, 3)]
    fill_volume(docker_client, pg_volume, lambda root: make_backups_tree(root, dumps))
    s3server.client().put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    path = write_config(tmp_path, s3server, bucket, db_volume=pg_volume, receipts_dir=tmp_path,
                        jobs={"receipts-upload": None}, health={"db_container": ""},
                        drill={"schedule": "0 3 * * 6"})
    cfg = config.load(path)
    assert cli.main(["--config", str(path), "run-once", "db-upload"]) == 0  # verified upload
    capsys.readouterr()
    code, data, rows = status(cfg, capsys)
    problem = (f"state_dir {state} is read-only: runs are not being recorded" if kind ==
               "read-only" else f"state_dir {state} is full (0 KiB free): runs are not being "
                                f"recorded")
    assert (code, data["diagnoses"][0]) == (2, problem)
    assert rows["state_dir"] == ("CRITICAL", problem)
    assert rows["last success postgres/"][0] == "OK"  # the upload that just ran is seen
    assert not [d for d in data["diagnoses"] if "Upload failing" in d], data["diagnoses"]
    # No drill yet, and the ledger cannot be read: the first drill is counted from now.
    assert rows["restore drill"][0] == "UNKNOWN"
    assert rows["restore drill"][1].startswith("no drill yet, first at ")
    assert rows["restore drill"][1].endswith("Z")

    # The daemon's alert sink (an Alerter; its memory cannot be saved here, so it is kept in
    # the process): told once, not again while the verdict stays the same.
    verdict = gather.evaluate_status(cfg)
    alerter = Alerter(cfg.alerts, [], cfg.state_dir, host="h")
    told = [alerter.on_verdict(verdict.state, *verdict.alert_rows(), verdict.checked_at)
            for _ in range(3)]
    assert told[0] is not None and problem in told[0].body
    assert told[1:] == [None, None]
