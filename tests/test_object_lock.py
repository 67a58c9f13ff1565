"""Object Lock: with a destination's object_lock_mode set, every object ardua-backup writes there
(rclone uploads, server-side copies of hard links, the sentinel, the drill marker) carries the
mode and a retain-until date of now + object_lock_days, proved by a HEAD against moto's S3
server (tests/harness/motoserver.py says which of moto's behaviours this relies on); `doctor`
says CRITICAL when a destination locks and its bucket cannot, a section per destination."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from supervisor import cli
from supervisor.config import load as config_mod
from supervisor.containers import rclone
from supervisor.core.states import CRITICAL, OK, WARNING
from supervisor.health import doctor
from supervisor.storage import markers, s3
from supervisor.storage.destination import Destination
from tests.conftest import destination_table, write_credentials
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.motoserver import MotoServer
from tests.harness.pgtree import make_backups_tree, volume_mountpoint

DAYS = 3
NOW = datetime(2026, 3, 2, 1, 15, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def _bucket(moto: MotoServer, *, lock: bool = True) -> str:
    return moto.create_bucket(f"ardua-lock-{secrets.token_hex(4)}", lock=lock)


def _dest(moto: MotoServer, bucket: str, tmp_path: Path, mode: str = "GOVERNANCE",
          name: str = "primary") -> Destination:
    creds = write_credentials(tmp_path / f"{name}-credentials", moto.access_key, moto.secret_key)
    return Destination(bucket, moto.region, moto.endpoint_url, creds, object_lock_mode=mode,
                       object_lock_days=DAYS if mode else 0, table=f"destinations.{name}")


def _locked_table(moto: MotoServer, bucket: str, creds: Path, mode: str = "GOVERNANCE") -> dict:
    return {**destination_table(moto, bucket, creds), "object_lock_mode": mode,
            "object_lock_days": DAYS}


def assert_locked(head: dict, mode: str, written_from: datetime, written_to: datetime,
                  what: str) -> None:
    """Locked in `mode` until now + DAYS, `now` being when it was written (a second of slack:
    a date travels as whole seconds or milliseconds)."""
    assert head.get("ObjectLockMode") == mode, what
    until = head["ObjectLockRetainUntilDate"]
    low = written_from + timedelta(days=DAYS, seconds=-1)
    high = written_to + timedelta(days=DAYS, seconds=1)
    assert low <= until <= high, f"{what}: retain until {until}, not within [{low}, {high}]"


# -- pure -------------------------------------------------------------------------------------


def test_rclone_environment_carries_the_lock_only_when_asked() -> None:
    locked = Destination("b", object_lock_mode="COMPLIANCE", object_lock_days=30)
    env = rclone.environment(locked, NOW)
    assert env["RCLONE_S3_OBJECT_LOCK_MODE"] == "COMPLIANCE"
    assert env["RCLONE_S3_OBJECT_LOCK_RETAIN_UNTIL_DATE"] == "2026-04-01T01:15:04Z"
    plain = rclone.environment(Destination("b"), NOW)
    assert not [k for k in plain if "LOCK" in k]
    assert s3.lock_args(Destination("b"), NOW) == {}
    assert s3.lock_args(locked, NOW) == {"ObjectLockMode": "COMPLIANCE",
                                         "ObjectLockRetainUntilDate": NOW + timedelta(days=30)}


def test_iam_policy_adds_what_locking_needs_and_notes_the_offsite_key() -> None:
    plain = doctor.iam_policy("b", ["postgres"])
    locked = doctor.iam_policy("b", ["postgres"], lock=True)
    actions = {a for s in locked["Statement"] for a in s["Action"]}
    assert actions - {a for s in plain["Statement"] for a in s["Action"]} == {
        "s3:PutObjectRetention", "s3:GetObjectRetention", "s3:GetBucketObjectLockConfiguration"}
    for never in ("s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"):
        assert never not in actions
    dest = Destination("off", object_lock_mode="GOVERNANCE", object_lock_days=1,
                       table="destinations.offsite")
    notes = " ".join(doctor.policy_notes(dest, offsite=True))
    assert "never have s3:DeleteObjectVersion" in notes
    assert "never grant s3:BypassGovernanceRetention" in notes
    assert "DeleteObjectVersion" not in " ".join(doctor.policy_notes(dest, offsite=False))


def test_judge_object_lock_and_retention() -> None:
    dest = Destination("b", object_lock_mode="GOVERNANCE", object_lock_days=DAYS,
                       table="destinations.offsite")
    cannot = doctor.judge_object_lock(None, dest)
    assert cannot.state == CRITICAL
    assert "destinations.offsite.object_lock_mode is GOVERNANCE but bucket b cannot lock" in (
        cannot.detail)
    assert "enabled when a bucket is created" in cannot.detail
    assert doctor.judge_object_lock(None).state == OK  # no mode asked: optional
    can = doctor.judge_object_lock({"ObjectLockEnabled": "Enabled"}, dest)
    assert can.state == OK and "locked GOVERNANCE for 3 days" in can.detail

    until = NOW + timedelta(days=DAYS)
    good = {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until}
    assert doctor.judge_retention(dest, {"p/.last_success": good}, NOW).state == OK
    assert doctor.judge_retention(dest, {"p/.last_success": None}, NOW).state == OK
    bare = doctor.judge_retention(dest, {"p/.last_success": {}, "r/.last_success": good}, NOW)
    assert bare.state == WARNING and bare.detail.startswith("p/.last_success carries no retention")
    expired = doctor.judge_retention(dest, {"p/.last_success": good}, until)
    assert expired.state == WARNING


# -- against moto's S3 server ------------------------------------------------------------------


def test_sentinel_and_drill_marker_are_locked(moto: MotoServer, tmp_path: Path,
                                              monkeypatch) -> None:
    # botocore then adds no checksum of its own: the Content-MD5 ardua-backup sends is what
    # lets a locked PUT through (moto, as AWS, refuses one with neither).
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    bucket = _bucket(moto)
    dest = _dest(moto, bucket, tmp_path, "COMPLIANCE")
    before = datetime.now(UTC)
    s3.write_sentinel(dest, "postgres", before)
    s3.put_text(dest, markers.drill_marker_key("postgres"), "drill", "drill marker")
    after = datetime.now(UTC)
    for key in (markers.sentinel_key("postgres"), markers.drill_marker_key("postgres")):
        assert_locked(moto.client().head_object(Bucket=bucket, Key=key), "COMPLIANCE", before,
                      after, key)

    # A bucket without Object Lock refuses a locked write: one line, the write fails.
    plain = _dest(moto, _bucket(moto, lock=False), tmp_path)
    with pytest.raises(s3.S3Error, match=r"^writing the sentinel failed: .*InvalidRequest"):
        s3.write_sentinel(plain, "postgres", before)


def test_doctor_checks_every_destination(moto: MotoServer, tmp_path: Path, capsys) -> None:
    locked, plain = _bucket(moto), _bucket(moto, lock=False)
    creds = write_credentials(tmp_path / "aws-credentials", moto.access_key, moto.secret_key)
    path = tmp_path / "ardua-backup.toml"
    path.write_text(f"""
state_dir = "{tmp_path / 'state'}"
[destinations.primary]
{_toml(_locked_table(moto, locked, creds))}
[destinations.offsite]
{_toml(_locked_table(moto, plain, creds, "COMPLIANCE"))}
[jobs.db-upload]
schedule = "15 * * * *"
source = "volume:pg_backups"
prefix = "postgres"
""")
    cfg = config_mod.load(path)
    primary = cfg.destination("primary")
    s3.write_sentinel(primary, "postgres", datetime.now(UTC))

    assert cli.main(["--config", str(path), "doctor"]) == 2
    out = capsys.readouterr().out
    assert f"primary: s3://{locked} at {moto.endpoint_url}" in out
    assert f"offsite: s3://{plain} at {moto.endpoint_url}" in out
    offsite_lock = re.search(r"^object lock\s+CRITICAL\s+(.*)$", out, re.M)
    assert offsite_lock and "Object Lock is enabled when a bucket is created" in offsite_lock[1]
    assert re.search(r"^retention\s+OK\s+the last runs' writes are locked: "
                     r"postgres/\.last_success GOVERNANCE until", out, re.M), out
    assert "offsite object lock" in out.splitlines()[-1]

    assert cli.main(["--config", str(path), "doctor", "--destination", "primary", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data["destinations"]] == ["primary"]
    assert {c["destination"] for c in data["checks"]} == {"primary"}
    rows = {c["name"]: c["state"] for c in data["checks"]}
    assert rows["object lock"] == rows["retention"] == rows["versioning"] == OK

    assert cli.main(["--config", str(path), "doctor", "--iam-policy"]) == 0
    captured = capsys.readouterr()
    policies = [json.loads(block) for block in re.split(r"\n(?=\{)", captured.out.strip())]
    assert [p["Statement"][0]["Resource"] for p in policies] == [
        f"arn:aws:s3:::{locked}", f"arn:aws:s3:::{plain}"]
    assert "offsite: an off-site copy: its key must never have s3:DeleteObjectVersion" in (
        captured.err)

    assert cli.main(["--config", str(path), "doctor", "--destination", "nowhere"]) == 78
    assert "no destination named 'nowhere' (configured: primary, offsite)" in (
        capsys.readouterr().err)


def _toml(table: dict) -> str:
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items())


@pytest.mark.docker
def test_every_object_a_run_writes_is_locked(moto: MotoServer, docker_client, pg_volume,
                                             write_config, tmp_path: Path) -> None:
    """run-once of the db job (a postgres-backup-local tree: hard links, copied server-side)
    and of the receipts job: HEAD every version in the bucket."""
    bucket = _bucket(moto)
    root = volume_mountpoint(docker_client, pg_volume)
    dumps = [(datetime(2026, 3, day, 1, 0), b"PGDMP" + os.urandom(3000 + day))
             for day in (1, 2)]
    make_backups_tree(root, dumps)  # last/ x2, daily x2, weekly x2, monthly: 2 inodes
    receipts = tmp_path / "receipts"
    for i in range(3):
        (receipts / f"2026/03/{i:02d}").mkdir(parents=True)
        (receipts / f"2026/03/{i:02d}/r{i}.pdf").write_bytes(os.urandom(1000 + i))
    cfg = write_config(tmp_path, moto, bucket, db_volume=pg_volume,
                       receipts_dir=settle(receipts),
                       s3={"object_lock_mode": "GOVERNANCE", "object_lock_days": DAYS})

    before = datetime.now(UTC)
    db = run_cli("run-once", "db-upload", config=cfg)
    assert db.returncode == 0, db.stdout + db.stderr
    assert re.search(r"copied in S3\s+5 files", db.stdout), db.stdout  # 2 uploaded, 5 copied
    receipts_run = run_cli("run-once", "receipts-upload", config=cfg)
    assert receipts_run.returncode == 0, receipts_run.stdout + receipts_run.stderr
    after = datetime.now(UTC)

    client = moto.client()
    versions = client.list_object_versions(Bucket=bucket)
    written = [(v["Key"], v["VersionId"]) for v in versions.get("Versions", [])]
    assert not versions.get("DeleteMarkers")
    uploaded = [f"postgres/{p.relative_to(root)}" for p in root.rglob("*")
                if p.is_file() and not p.is_symlink()]  # what rclone uploads: symlinks skipped
    assert len(uploaded) == 7
    assert sorted(k for k, _ in written) == sorted([
        *uploaded, "postgres/.last_success", "receipts/.last_success",
        *(f"receipts/2026/03/{i:02d}/r{i}.pdf" for i in range(3))])
    for key, version in written:
        head = client.head_object(Bucket=bucket, Key=key, VersionId=version)
        assert_locked(head, "GOVERNANCE", before, after, key)

    # pbl drops day 1: the sync's deletions succeed as delete markers; the versions they hide
    # stay, locked: a DeleteObject naming one is refused until its date.
    gone = ["last/ardua-20260301-010000.dump", "daily/ardua-20260301.dump"]
    for rel in gone:
        (root / rel).unlink()
    pruned = run_cli("run-once", "db-upload", config=cfg)
    assert pruned.returncode == 0 and re.search(r"deleted in S3\s+2\b", pruned.stdout), (
        pruned.stdout + pruned.stderr)
    versions = client.list_object_versions(Bucket=bucket, Prefix="postgres/")
    assert sorted(m["Key"] for m in versions["DeleteMarkers"]) == sorted(
        f"postgres/{rel}" for rel in gone)
    hidden = {v["Key"]: v["VersionId"] for v in versions["Versions"]
              if v["Key"] in {f"postgres/{rel}" for rel in gone}}
    assert len(hidden) == 2
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=f"postgres/{gone[0]}",
                             VersionId=hidden[f"postgres/{gone[0]}"])

