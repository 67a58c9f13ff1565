"""`ardua-backup verify` against real things: real pg_dump output of every postgres-backup-local
format laid out in last/, uploaded by the real pipeline (rclone in a container) to SeaweedFS,
proven with this host's pg_restore; receipts against their local files.

Local rot mirrored by a deep run: bytes of a dump flipped on disk with its size and mtime kept
(what bit rot does), then `run-once --deep` (checksum compare) uploads the rotted file, S3's
ETag matching the rotted bytes: only reading the archive whole finds it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor import cli
from supervisor.config import load as config_mod
from supervisor.containers import engine
from supervisor.record.ledger import Ledger
from supervisor.record.proofs import Proofs
from tests.harness.cli import (
    _detach_cli_logging,  # noqa: F401 - autouse fixture
    service,
)
from tests.harness.poll import poll
from tests.harness.postgres import PgServer

STAMP = "20260101-000000"
# database -> (file name in last/, how pg_dump makes it: options, or None for pg_dumpall | gzip)
FORMATS = {
    "vfcustom": (f"vfcustom-{STAMP}.dump", ("-Fc",)),
    "vfdir": (f"vfdir-{STAMP}", ("-Fd",)),
    "vfgz": (f"vfgz-{STAMP}.sql.gz", ("-Z1",)),
    "vfsql": (f"vfsql-{STAMP}.sql", ("-Fp",)),
    "vfcluster": (f"vfcluster-{STAMP}.sql.gz", None),
}


@pytest.fixture(scope="module")
def dumps_made(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny real dump of each format, made once for the module."""
    out = tmp_path_factory.mktemp("verify-dumps")
    for db, (name, opts) in FORMATS.items():
        pg.createdb(db)
        # Enough rows that the custom archive has a compressed data block to rot.
        pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v "
                "FROM generate_series(1, 2000) g", db)
        if opts is None:
            pg.pg_dumpall_gz(db, out / name)
        else:
            pg.pg_dump(db, out / name, *opts)
    return out


def _tree(tmp_path: Path, dumps_made: Path) -> tuple[Path, Path]:
    backups, receipts = tmp_path / "backups", tmp_path / "receipts"
    (backups / "last").mkdir(parents=True)
    shutil.copytree(dumps_made, backups / "last", dirs_exist_ok=True)
    receipts.mkdir()
    for n in range(3):
        (receipts / f"r{n}.pdf").write_bytes(os.urandom(2048))
    hour_ago = os.path.getmtime(receipts) - 3600
    for p in [*backups.rglob("*"), *receipts.rglob("*")]:
        os.utime(p, (hour_ago, hour_ago))  # modified before any upload, as a settled file
    return backups, receipts


def _config(write_config, tmp_path, s3server, bucket, backups, receipts, **verify) -> Path:
    return write_config(tmp_path, s3server, bucket, receipts_dir=receipts, overrides={
        "jobs": {"db-upload": {"source": str(backups)}},
        "guard": {"quiet_period": "1ms"},
        "verify": {"max_age": "30d", **verify},
    })


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(args)
    return code, out.getvalue(), err.getvalue()


def _verify(path: Path, *args: str) -> tuple[int, dict]:
    code, out, _ = run_cli(["--config", str(path), "verify", "--json", *args])
    return code, json.loads(out)


def _upload(path: Path, *jobs: str, deep: bool = False) -> None:
    for job in jobs:
        code, out, err = run_cli(["--config", str(path), "run-once", job,
                                  *(["--deep"] if deep else [])])
        assert code == 0, out + err


def _status_row(path: Path) -> dict:
    _, out, _ = run_cli(["--config", str(path), "status", "--json"])
    return next(c for c in json.loads(out)["checks"] if c["name"] == "verified")


def test_every_format_proven_remembered_rot_caught_and_repaired(
        write_config, tmp_path, s3server, bucket, dumps_made):
    backups, receipts = _tree(tmp_path, dumps_made)
    path = _config(write_config, tmp_path, s3server, bucket, backups, receipts)
    _upload(path, "db-upload", "receipts-upload")
    code, first = _verify(path)
    assert (code, first["failed"], first["coverage"]) == (0, [], 1.0), first
    objects = sum(1 for p in backups.rglob("*") if p.is_file()) + 3
    assert first["checked"] == objects and first["bytes_read"] > 0 and first["oldest_proof"]
    # Remembered: nothing is due right after a complete run.
    code, second = _verify(path)
    assert (code, second["checked"], second["bytes_read"]) == (0, 0, 0)
    assert _status_row(path)["state"] == "OK"

    # Local rot, mirrored by a deep run: same size, same mtime, other bytes.
    dump = backups / "last" / FORMATS["vfcustom"][0]
    st = dump.stat()
    good = dump.read_bytes()
    rotted = bytearray(good)
    for i in range(len(good) // 2, len(good) // 2 + 64):
        rotted[i] ^= 0xFF
    dump.write_bytes(bytes(rotted))
    os.utime(dump, ns=(st.st_atime_ns, st.st_mtime_ns))
    _upload(path, "db-upload", deep=True)
    code, caught = _verify(path)
    key = f"postgres/last/{FORMATS['vfcustom'][0]}"
    assert code == 2 and [f["key"] for f in caught["failed"]] == [key], caught
    assert caught["checked"] == 1  # only the changed object was due
    row = _status_row(path)
    assert row["state"] == "CRITICAL" and key in row["detail"]
    # Without --json: one line per failure naming the key and why, then the summary.
    code, out, _ = run_cli(["--config", str(path), "verify"])
    lines = out.splitlines()
    assert code == 2 and lines[0].startswith(f"FAILED  {key}: pg_restore cannot read it whole")
    assert "0 object(s) proven" in lines[-1] and "1 failed" in lines[-1]

    # Repaired: the good bytes again (a re-upload) are proven again at once.
    dump.write_bytes(good)
    _upload(path, "db-upload", deep=True)
    code, repaired = _verify(path)
    assert (code, repaired["failed"], repaired["checked"]) == (0, [], 1), repaired


def test_s3_overwrite_budget_and_exit_codes(write_config, tmp_path, s3server, bucket,
                                            dumps_made):
    backups, receipts = _tree(tmp_path, dumps_made)
    path = _config(write_config, tmp_path, s3server, bucket, backups, receipts,
                   max_bytes_per_run="1K")
    _upload(path, "db-upload", "receipts-upload")
    # The budget (1 KiB, below any item): each run proves the first due item, whatever its
    # size, and nothing more; the next run the next one.
    config = config_mod.load(path)
    for n in (1, 2):
        code, one = _verify(path)
        assert code == 1 and 0 < one["coverage"] < 1 and one["failed"] == []
        runs = {}
        for p in Proofs(config.state_dir).all().values():
            runs.setdefault(p.at, p.bytes)
        assert len(runs) == n and one["bytes_read"] == runs[max(runs)]
    code, rest = _verify(path, "--all")
    assert (code, rest["coverage"]) == (0, 1.0)

    # An S3 object overwritten with same-size bytes (not by our upload): caught, named.
    client = s3server.client()
    client.put_object(Bucket=bucket, Key="receipts/r1.pdf", Body=os.urandom(2048))
    code, caught = _verify(path)
    assert code == 2 and caught["failed"][0]["key"] == "receipts/r1.pdf"
    assert "sha256" in caught["failed"][0]["reason"]

    # A config problem: 78, nothing run.
    code, _, err = run_cli(["--config", str(path), "verify", "--destination", "nowhere"])
    assert code == 78 and "nowhere" in err


def test_the_daemon_runs_verify_on_its_schedule(write_config, tmp_path, s3server, bucket):
    """A verify missed since the last one (the ledger says 2 minutes ago, the schedule is every
    minute) is caught up at start, through the daemon's sinks: ledger, metrics, proofs."""
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r.pdf").write_bytes(b"receipt")
    os.utime(receipts / "r.pdf", (1, 1))
    s3server.client().put_object(Bucket=bucket, Key="receipts/r.pdf", Body=b"receipt")
    prom = tmp_path / "ardua.prom"
    # This daemon runs verify alone: the upload jobs fire once a year and do not catch up (a
    # fire within core.schedule.GRACE still would: an upload it started would be killed with it).
    yearly = {"schedule": "0 0 1 1 *", "catch_up": False}
    path = write_config(tmp_path, s3server, bucket, receipts_dir=receipts, overrides={
        "verify": {"schedule": "* * * * *"}, "metrics": {"textfile": str(prom)},
        "jobs": {"db-upload": yearly, "receipts-upload": yearly}})
    config = config_mod.load(path)
    earlier = datetime.now(UTC) - timedelta(minutes=2)
    ledger = Ledger(config.state_dir)
    ledger.start(config_mod.VERIFY_JOB, "earlier", earlier)
    ledger.close("earlier", "success", "", earlier)
    with service(path, tmp_path) as (_proc, notify):
        notify.expect("READY", "1")
        run = poll(lambda: (r := ledger.last_run(config_mod.VERIFY_JOB)).run_id != "earlier"
                   and r.result != "running" and r, lambda: (tmp_path / "daemon.log").read_text(),
                   60, 0.2)
    assert run.result == "success", run
    proven = Proofs(config.state_dir).all()
    assert [(k, p.ok) for (_, k, _), p in proven.items()] == [("receipts/r.pdf", True)]
    text = poll(lambda: prom.is_file() and prom.read_text(), "metrics textfile", 10)
    assert "ardua_backup_verify_coverage_ratio 1.0" in text


def test_a_prefix_whose_upload_is_running_is_deferred_not_failed(
        write_config, tmp_path, s3server, bucket, docker_client, rclone_image) -> None:
    """A sync writing to the prefix (a running container with the writer label, whoever
    started it: containers.engine.target_containers) leaves it unread: the run is deferred, as
    an upload meeting a dump being written, so no failure alert; the next run proves it."""
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r.pdf").write_bytes(b"receipt")
    s3server.client().put_object(Bucket=bucket, Key="receipts/r.pdf", Body=b"receipt")
    path = write_config(tmp_path, s3server, bucket, receipts_dir=receipts)
    config = config_mod.load(path)
    syncing = docker_client.containers.run(  # blocks until removed; host network, loopback only
        rclone_image, ["serve", "http", str(tmp_path), "--addr", "127.0.0.1:0"],
        detach=True, network_mode="host", labels={
            engine.LABEL_JOB: "receipts-upload",
            engine.LABEL_TARGET: config.destination().url("receipts")})
    try:
        poll(lambda: syncing.reload() or syncing.status == "running", "the stand-in sync", 30)
        code, out = _verify(path, "--all")
        assert (code, out["checked"], out["failed"]) == (1, 0, []), out
        run = Ledger(config.state_dir).last_run(config_mod.VERIFY_JOB)
        assert run is not None and run.result == "deferred", run
        assert "an upload of receipts/ is running" in run.message
    finally:
        syncing.remove(force=True)
    code, out = _verify(path, "--all")
    assert (code, out["checked"], out["coverage"]) == (0, 1, 1.0), out
