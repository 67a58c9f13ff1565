"""The whole cycle (upload, status, restore, drill, doctor) with a key that holds only what
`doctor --iam-policy` grants: every other real test runs with an Admin identity, so a call the
policy forgot would pass them all and fail the first install that follows the docs.

SeaweedFS has no IAM policies on its static identities; its s3.json grants actions, scoped as
"Action:BUCKET/KEY-GLOB" (weed/s3api/auth_credentials.go, Identity.CanDo: an action without a
glob matches the whole bucket, one with `*`/`?` is matched, anchored, against "Action:BUCKET/KEY";
authRequestWithAuthType checks a listing's `prefix` as its KEY). Which action each S3 call needs
is its route in weed/s3api/s3api_server.go (seaweedfs/seaweedfs, read at cc8364a0; the wheel
here is 4.48): ListObjectsV2 and ListObjectVersions `List`; GetObject, HeadObject and
GetBucketVersioning `Read`; PutObject, CopyObject, multipart and DeleteObject `Write`;
GetBucketEncryption and GetPublicAccessBlock `Admin`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.conftest import write_credentials
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.images import ensure_debian_pg_image
from tests.harness.pgimage import ensure_postgres_image
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server
from tests.harness.server import free_port
from tests.harness.sourcedb import NEW_ORDERS, counts, dumps_and_receipts

pytestmark = pytest.mark.docker

# Each IAM action of the policy as the SeaweedFS action that guards its calls (see above).
SEAWEED_ACTION = {
    "s3:ListBucket": "List", "s3:ListBucketVersions": "List",
    "s3:GetBucketVersioning": "Read",
    "s3:GetObject": "Read", "s3:GetObjectVersion": "Read",
    "s3:PutObject": "Write", "s3:DeleteObject": "Write",
}


def seaweed_actions(policy: dict[str, Any]) -> list[str]:
    """The s3.json actions that grant what `policy` grants, and no more where SeaweedFS can say
    so: object ARNs become "Action:BUCKET/PREFIX/*"; a listing conditioned on s3:prefix
    "Action:BUCKET/PREFIX/*" (SeaweedFS checks the listing's prefix as its key); a bucket-level
    ARN a glob that matches the bucket itself and none of its keys ("Read:BUCKET" without a glob
    would match every key: GetObject anywhere in the bucket). SeaweedFS's bucket-level Read
    also reads the bucket's other settings (lifecycle, object lock): settings, not data."""
    granted = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", statement
        resources = statement["Resource"]
        prefixes = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        for action in statement["Action"]:
            word = SEAWEED_ACTION[action]  # KeyError: a new action to map here first
            for arn in resources if isinstance(resources, list) else [resources]:
                path = arn.removeprefix("arn:aws:s3:::")
                if prefixes:
                    granted |= {f"{word}:{path}/{p}" for p in prefixes}
                elif "/" in path:
                    granted.add(f"{word}:{path}")
                else:
                    granted.add(f"{word}:{path[:-1]}?")
    return sorted(granted)


@pytest.fixture
def server() -> Iterator[S3Server]:
    """A SeaweedFS of its own, not started: it reads its identities (s3.json) at start only."""
    own = S3Server()
    try:
        yield own
    finally:
        own.close()


def test_the_whole_cycle_needs_no_more_than_the_iam_policy(
    server: S3Server, tmp_path: Path, pg: PgServer, pg_volume: str, docker_client,
    write_config,
) -> None:
    bucket = f"ardua-lp-{secrets.token_hex(4)}"
    _, receipts = dumps_and_receipts(pg, tmp_path, docker_client, pg_volume)
    image = ensure_postgres_image(docker_client, ensure_debian_pg_image(docker_client))
    cfg = write_config(
        tmp_path, server, bucket, db_volume=pg_volume, receipts_dir=settle(receipts),
        health={"db_container": ""},
        drill={"image": image, "network_mode": "host", "port": free_port(), "timeout": "5m",
               "receipts_sample": 3,
               "checks": [{"name": "orders", "sql": "SELECT count(*) FROM orders",
                           "min": NEW_ORDERS}]},
    )
    printed = run_cli("doctor", "--iam-policy", config=cfg)
    assert printed.returncode == 0, printed.stderr
    actions = seaweed_actions(json.loads(printed.stdout))
    assert actions == sorted([
        f"List:{bucket}/postgres/*", f"List:{bucket}/receipts/*", f"Read:{bucket[:-1]}?",
        f"Read:{bucket}/postgres/*", f"Read:{bucket}/receipts/*",
        f"Write:{bucket}/postgres/*", f"Write:{bucket}/receipts/*"])
    key, secret = server.grant("backup-host", actions)
    server.start()
    admin = server.client()
    admin.create_bucket(Bucket=bucket)  # the bucket is the admin's: the host key cannot
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    admin.put_object(Bucket=bucket, Key="elsewhere/other.txt", Body=b"not the backups'")
    write_credentials(tmp_path / "aws-credentials", key, secret)

    # The key is as narrow as the policy: nothing outside the two prefixes, no bucket settings.
    host = server.client(access_key=key, secret_key=secret, retries=0)
    denied = [
        lambda: host.get_object(Bucket=bucket, Key="elsewhere/other.txt"),
        lambda: host.put_object(Bucket=bucket, Key="elsewhere/new.txt", Body=b"x"),
        lambda: host.list_objects_v2(Bucket=bucket, Prefix="elsewhere/"),
        lambda: host.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}),
    ]
    for call in denied:
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            call()

    for job in ("db-upload", "receipts-upload"):
        done = run_cli("run-once", job, config=cfg)
        assert done.returncode == 0, done.stdout + done.stderr
    assert server.get(bucket, "postgres/.last_success").endswith(b"Z OK\n")
    assert len([k for k in server.list_sizes(bucket, "receipts/")
                if k.endswith(".pdf")]) == 12
    (receipts / "2026/03/00/r0.pdf").unlink()  # a deletion mirrored: s3:DeleteObject
    done = run_cli("run-once", "receipts-upload", config=cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "receipts/2026/03/00/r0.pdf" not in server.list_sizes(bucket, "receipts/")

    status = run_cli("status", "--json", config=cfg)
    verdict = json.loads(status.stdout)
    # The dumps are from March 2026 (sourcedb's dates): stale; and no drill is scheduled. That
    # is all status finds: nothing it reads is denied.
    assert [d.split(":")[0] for d in verdict["diagnoses"]] == [
        "DB backup not producing new data", "Restores are never drilled"]
    rows = {c["name"]: c["state"] for c in verdict["checks"]}
    read_from_s3 = ("S3 has ardua's dump", "bucket versioning", "last success postgres/",
                    "last success receipts/")
    assert {name: rows.get(name) for name in read_from_s3} == dict.fromkeys(read_from_s3, "OK")

    listed = run_cli("restore", "list", config=cfg)
    assert listed.returncode == 0, listed.stderr
    newest = "postgres/last/ardua-20260302-010000.dump"
    assert listed.stdout.splitlines()[1].split()[-1] == newest
    target = f"lp_{secrets.token_hex(4)}"
    pg.createdb(target)
    restored = run_cli("restore", "db", newest, "--target", pg.dsn(target), config=cfg)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert counts(pg, target)[0] == NEW_ORDERS
    into = tmp_path / "restored"
    into.mkdir()
    back = run_cli("restore", "receipts", str(into), "--as-root", config=cfg)
    assert back.returncode == 0, back.stdout + back.stderr
    one = "2026/03/05/r5.pdf"
    assert (into / one).read_bytes() == (receipts / one).read_bytes()

    drill = run_cli("drill", config=cfg)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert server.get(bucket, "postgres/.last_restore_drill").startswith(b"20")

    doctor = run_cli("doctor", "--json", config=cfg)
    rows = {row["name"]: (row["state"], row["detail"])
            for row in json.loads(doctor.stdout)["checks"]}
    assert rows["access"][0] == "OK" and rows["version listing"][0] == "OK", rows
    assert rows["versioning"][0] == "OK", rows
    # The settings the policy leaves out are named as unreadable, not as missing.
    assert rows["encryption"] == ("UNKNOWN", "these credentials may not call GetBucketEncryption "
                                             "(AccessDenied); run doctor with a key that may "
                                             "read the bucket's settings"), rows
    for text in (printed, status, listed, restored, back, drill, doctor):
        assert secret not in text.stdout + text.stderr
