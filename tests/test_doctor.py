"""`doctor`: the bucket's protections judged (pure), then against SeaweedFS: a bare bucket names
what is missing and passes once it is set; the least-privilege IAM policy."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from loguru import logger

from supervisor import cli
from supervisor.config import load as config
from supervisor.core.states import CRITICAL, OK, UNKNOWN, WARNING
from supervisor.health import doctor
from supervisor.storage import s3
from supervisor.storage.destination import Destination
from tests.harness.s3server import S3Server

PREFIXES = ("postgres", "receipts")


# -- judges (pure) --------------------------------------------------------------------------------


def _rule(prefix: str = "", *, noncurrent: int | None = 30, abort: int | None = 7,
          **more) -> dict:
    rule = {"ID": f"r-{prefix or 'all'}", "Status": "Enabled", "Filter": {"Prefix": prefix}}
    if noncurrent is not None:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": noncurrent}
    if abort is not None:
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort}
    return {**rule, **more}


def test_judge_lifecycle() -> None:
    row = doctor.judge_lifecycle(None, PREFIXES)
    assert row.state == WARNING
    assert "NoncurrentVersionExpiration" in row.detail
    assert "AbortIncompleteMultipartUpload" in row.detail
    assert "postgres/, receipts/" in row.detail

    row = doctor.judge_lifecycle([_rule(noncurrent=90), _rule("receipts/", noncurrent=30)],
                                 PREFIXES)
    assert row == doctor.Row("lifecycle", OK, row.detail) and "after 30 days" in row.detail

    only_db = doctor.judge_lifecycle([_rule("postgres/")], PREFIXES)
    assert only_db.state == WARNING and "under receipts/ (" in only_db.detail
    assert "postgres/" not in only_db.detail.split("(")[0]
    split = doctor.judge_lifecycle([_rule(abort=None), _rule("post", noncurrent=None)], PREFIXES)
    assert split.state == WARNING and "multipart uploads under receipts/" in split.detail

    disabled = {**_rule(), "Status": "Disabled"}
    tagged = {**_rule(), "Filter": {"And": {"Prefix": "", "Tags": [{"Key": "k", "Value": "v"}]}}}
    legacy = {k: v for k, v in _rule().items() if k != "Filter"} | {"Prefix": ""}
    assert doctor.judge_lifecycle([disabled], PREFIXES).state == WARNING
    assert doctor.judge_lifecycle([tagged], PREFIXES).state == WARNING
    assert doctor.judge_lifecycle([legacy], PREFIXES).state == OK

    deletes_live = doctor.judge_lifecycle([_rule(Expiration={"Days": 30})], PREFIXES)
    assert deletes_live.state == WARNING and "expires current objects" in deletes_live.detail
    markers_only = doctor.judge_lifecycle([_rule(Expiration={"ExpiredObjectDeleteMarker": True})],
                                          PREFIXES)
    assert markers_only.state == OK
    archive = doctor.judge_lifecycle(
        [_rule(Transitions=[{"Days": 30, "StorageClass": "DEEP_ARCHIVE"}])], PREFIXES)
    assert archive.state == WARNING and "archive class" in archive.detail


def test_judge_versioning_object_lock_encryption_public_access() -> None:
    assert doctor.judge_versioning("b", "Enabled").state == OK
    off = doctor.judge_versioning("b", "")
    assert off.state == CRITICAL and "cannot be undone" in off.detail
    assert ("aws s3api put-bucket-versioning --bucket b --versioning-configuration "
            "Status=Enabled") in off.detail
    assert doctor.judge_versioning("b", "Suspended").state == CRITICAL

    assert doctor.judge_object_lock(None).state == OK
    locked = doctor.judge_object_lock({"ObjectLockEnabled": "Enabled", "Rule": {
        "DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}})
    assert locked.state == OK and "GOVERNANCE 30 days" in locked.detail
    assert "delete markers" in locked.detail

    assert doctor.judge_encryption(None).state == WARNING
    assert doctor.judge_encryption(None, sse="AES256").state == OK
    kms = doctor.judge_encryption({"Rules": [{"ApplyServerSideEncryptionByDefault": {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k1"}}]})
    assert kms == doctor.Row("encryption", OK, "default encryption aws:kms with key k1")

    assert doctor.judge_public_access(None).state == WARNING
    half = doctor.judge_public_access({"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                       "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    assert half.detail == "off: BlockPublicPolicy, RestrictPublicBuckets"
    assert doctor.judge_public_access(dict.fromkeys(doctor._PAB_FLAGS, True)).state == OK


def test_overall_render_json() -> None:
    rows = [doctor.Row("a", OK, "fine"), doctor.Row("bb", UNKNOWN, "?"),
            doctor.Row("c", WARNING, "hm")]
    assert doctor.overall(rows) == UNKNOWN and doctor.exit_code(rows) == 3
    assert doctor.exit_code([*rows, doctor.Row("d", CRITICAL, "!")]) == 2
    assert doctor.exit_code([doctor.Row("a", OK, "")]) == 0
    assert doctor.exit_code([doctor.Row("a", WARNING, "")]) == 1
    text = doctor.render(rows)
    assert text.splitlines()[0].split() == ["CHECK", "STATE", "DETAIL"]
    assert text.splitlines()[-1] == "UNKNOWN: check bb, c"
    data = doctor.to_json(rows, datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC))
    assert json.loads(json.dumps(data)) == {
        "schema": 1, "checked_at": "2026-03-02T09:00:01Z", "state": "UNKNOWN", "exit_code": 3,
        "checks": [{"name": "a", "state": "OK", "detail": "fine"},
                   {"name": "bb", "state": "UNKNOWN", "detail": "?"},
                   {"name": "c", "state": "WARNING", "detail": "hm"}]}


def test_iam_policy_is_least_privilege() -> None:
    text = json.dumps(doctor.iam_policy("ardua-books", PREFIXES), indent=2)
    policy = json.loads(text)
    assert policy["Version"] == "2012-10-17"
    granted = {(action, res) for s in policy["Statement"] if s["Effect"] == "Allow"
               for action in s["Action"]
               for res in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
    bucket, objects = "arn:aws:s3:::ardua-books", "arn:aws:s3:::ardua-books/{}/*"
    assert granted == {
        ("s3:ListBucket", bucket), ("s3:ListBucketVersions", bucket),
        ("s3:GetBucketVersioning", bucket),
        *((a, objects.format(p)) for p in PREFIXES
          for a in ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject")),
    }
    listing = next(s for s in policy["Statement"] if "s3:ListBucket" in s["Action"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["postgres/*", "receipts/*"]}}
    actions = {a for a, _ in granted}
    for never in ("s3:DeleteObjectVersion", "s3:PutLifecycleConfiguration",
                  "s3:PutBucketVersioning", "s3:PutBucketPolicy"):
        assert never not in actions and never not in text
    assert not [a for a in actions if "*" in a]
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])


def test_diagnose_maps_what_the_server_cannot_or_may_not_answer(monkeypatch) -> None:
    """Codes as servers and IAM answer them (stubbed: SeaweedFS answers only NotImplemented):
    a missing API is UNKNOWN, a setting the key may not read is UNKNOWN, a key that may not
    list versions is a WARNING (restore --at would fail), never an exception."""
    client = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="k", aws_secret_access_key="s")
    stub = Stubber(client)
    for prefix in PREFIXES:
        stub.add_response("list_objects_v2", {"KeyCount": 0},
                          {"Bucket": "b", "Prefix": f"{prefix}/", "MaxKeys": 1})
    for method, code, http in (
        ("get_bucket_versioning", "AccessDenied", 403),
        ("list_object_versions", "AccessDenied", 403),
        ("get_bucket_lifecycle_configuration", "MethodNotAllowed", 405),
        ("get_object_lock_configuration", "XNotImplemented", 501),
        ("get_bucket_encryption", "NotImplemented", 501),
        ("get_public_access_block", "NoSuchPublicAccessBlockConfiguration", 404),
    ):
        stub.add_client_error(method, service_error_code=code, http_status_code=http)
    monkeypatch.setattr(doctor.s3, "client", lambda s3cfg, fast=False: client)
    cfg = Destination("b", "us-east-1", "http://127.0.0.1:9", None, "default")
    with stub:
        rows = {r.name: r for r in doctor.diagnose(cfg, PREFIXES)}
    stub.assert_no_pending_responses()
    assert {n: r.state for n, r in rows.items()} == {
        "access": OK, "versioning": UNKNOWN, "version listing": WARNING, "lifecycle": UNKNOWN,
        "object lock": UNKNOWN, "encryption": UNKNOWN, "client-side encryption": OK,
        "public access block": WARNING}
    assert "may not call GetBucketVersioning (AccessDenied)" in rows["versioning"].detail
    assert "s3:ListBucketVersions" in rows["version listing"].detail
    assert rows["lifecycle"].detail == ("the server does not implement "
                                        "GetBucketLifecycleConfiguration (MethodNotAllowed)")
    assert "(XNotImplemented)" in rows["object lock"].detail

    denied = Stubber(client)
    denied.add_response("list_objects_v2", {"KeyCount": 0})
    denied.add_client_error("list_objects_v2", service_error_code="AccessDenied",
                            http_status_code=403)
    with denied:
        rows_denied = doctor.diagnose(cfg, PREFIXES)[:1]
    assert rows_denied == [doctor.Row("access", CRITICAL, "these credentials may not list "
                                      "receipts/: uploads, status and restores fail there")]


# -- against SeaweedFS ----------------------------------------------------------------------------


@pytest.mark.docker
def test_doctor_names_missing_protections_then_passes(
    tmp_path: Path, bucket: str, s3server: S3Server, write_config
) -> None:
    cfg = config.load(write_config(tmp_path, s3server, bucket))
    assert cli.main(["--config", str(cfg.path), "doctor", "--json"]) == 2  # versioning off
    logger.remove()
    rows = {r.name: r for r in doctor.diagnose(cfg.destination(), PREFIXES)}
    assert rows["access"].state == OK
    assert rows["versioning"].state == CRITICAL and "cannot be undone" in rows["versioning"].detail
    assert rows["lifecycle"].state == WARNING
    assert "NoncurrentVersionExpiration" in rows["lifecycle"].detail
    assert "AbortIncompleteMultipartUpload" in rows["lifecycle"].detail
    assert rows["encryption"].state == WARNING
    assert rows["object lock"].state == OK
    # SeaweedFS 4.48 answers GetPublicAccessBlock with 501 NotImplemented: UNKNOWN, not an error.
    assert rows["public access block"] == doctor.Row(
        "public access block", UNKNOWN,
        "the server does not implement GetPublicAccessBlock (NotImplemented)")
    assert rows["version listing"].state == OK
    assert doctor.exit_code(list(rows.values())) == 2

    admin = s3server.client()
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    admin.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "db", "Status": "Enabled", "Filter": {"Prefix": "postgres/"},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 35},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}]})
    rows = {r.name: r for r in doctor.diagnose(cfg.destination(), PREFIXES)}
    assert rows["versioning"].state == OK
    assert rows["lifecycle"].state == WARNING and "under receipts/ (" in rows["lifecycle"].detail

    admin.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "all", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 90},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]})
    # SeaweedFS keeps a default encryption configuration (AES256) and reports it back.
    admin.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    final = doctor.diagnose(cfg.destination(), PREFIXES)
    assert {r.name: r.state for r in final} == {
        "access": OK, "versioning": OK, "version listing": OK, "lifecycle": OK,
        "object lock": OK, "encryption": OK, "client-side encryption": OK,
        "public access block": UNKNOWN}
    assert "after 90 days" in {r.name: r for r in final}["lifecycle"].detail
    assert doctor.exit_code(final) == 3  # only what SeaweedFS cannot answer is left
    assert doctor.render(final).splitlines()[-1] == "UNKNOWN: check public access block"


@pytest.mark.docker
def test_doctor_object_lock_and_dead_endpoint(
    tmp_path: Path, s3server: S3Server, write_config
) -> None:
    locked = f"ardua-test-lock-{secrets.token_hex(4)}"
    admin = s3server.client()
    admin.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    admin.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    cfg = config.load(write_config(tmp_path, s3server, locked))
    rows = {r.name: r for r in doctor.diagnose(cfg.destination(), PREFIXES)}
    assert rows["object lock"].state == OK
    assert "GOVERNANCE 1 days" in rows["object lock"].detail
    assert "delete markers" in rows["object lock"].detail
    assert rows["versioning"].state == OK  # object lock turns versioning on

    dead = tmp_path / "dead"
    dead.mkdir()
    with refused_port() as port:
        cfg = config.load(write_config(dead, s3server, locked,
                                       s3={"endpoint_url": f"http://127.0.0.1:{port}"}))
        rows = doctor.diagnose(cfg.destination(), PREFIXES)
    assert [(r.name, r.state) for r in rows] == [("access", UNKNOWN)]
    assert "unreachable" in rows[0].detail and doctor.exit_code(rows) == 3


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, not listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]




@pytest.mark.docker
def test_preflight_by_prefix(tmp_path: Path, bucket: str, s3server: S3Server,
                             write_config) -> None:
    """The preflight the least-privilege policy allows (a listing under the prefix instead of
    a HEAD of the bucket) still tells a missing bucket and wrong credentials apart."""
    cfg = config.load(write_config(tmp_path, s3server, bucket))
    s3.preflight(cfg.destination(), "postgres")
    missing = tmp_path / "missing"
    missing.mkdir()
    cfg = config.load(write_config(missing, s3server, f"{bucket}-gone"))
    with pytest.raises(s3.S3Error, match=f"bucket '{bucket}-gone' does not exist"):
        s3.preflight(cfg.destination(), "postgres")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    path = write_config(wrong, s3server, bucket)
    creds = wrong / "aws-credentials"
    creds.write_text(creds.read_text().replace(s3server.secret_key, "not-the-secret"))
    with pytest.raises(s3.S3Error, match="refused the credentials"):
        s3.preflight(config.load(path).destination(), "postgres")
