"""Upload options (storage class, server-side encryption): validation, rclone's environment and
flags, boto3 ExtraArgs, and what SeaweedFS keeps of them; restore's verify with SSE-KMS ETags."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest

from supervisor.config import load as config
from supervisor.containers import rclone
from supervisor.restore import db as restore
from supervisor.storage import s3, upload_options
from supervisor.upload import run as pipeline
from tests.harness.files import settle
from tests.harness.s3server import S3Server


def test_validate_upload_options() -> None:
    assert upload_options.validate_upload_options("", "", "") == upload_options.UploadOptions()
    opts = upload_options.validate_upload_options("STANDARD_IA", "aws:kms",
                                                  "arn:aws:kms:eu:1:key/x")
    assert upload_options.rclone_env(opts) == {
        "RCLONE_S3_STORAGE_CLASS": "STANDARD_IA",
        "RCLONE_S3_SERVER_SIDE_ENCRYPTION": "aws:kms",
        "RCLONE_S3_SSE_KMS_KEY_ID": "arn:aws:kms:eu:1:key/x",
    }
    assert upload_options.boto_extra_args(opts) == {
        "StorageClass": "STANDARD_IA", "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "arn:aws:kms:eu:1:key/x"}
    assert upload_options.rclone_env(upload_options.UploadOptions()) == {}
    assert "aws/s3" in upload_options.describe(
        upload_options.validate_upload_options("", "aws:kms", ""))

    bad = {
        ("FAST", "", ""): r"s3.storage_class: 'FAST' is not an S3 storage class; use one of",
        ("standard_ia", "", ""): "write it in capitals: STANDARD_IA",
        ("DEEP_ARCHIVE", "", ""): "restore db, the drill",
        ("", "aes256", ""): "did you mean AES256",
        ("", "aws:kms:dsse", ""): "s3.server_side_encryption",
        ("", "AES256", "arn:aws:kms:eu:1:key/x"): "only applies with \"aws:kms\"",
        ("", "", "key"): "s3.sse_kms_key_id is set",
        ("", "aws:kms", "a key"): "not a KMS key id",
    }
    for args, message in bad.items():
        with pytest.raises(ValueError, match=message.replace("(", r"\(")) as err:
            upload_options.validate_upload_options(*args)
        assert "\n" not in str(err.value)


def test_verify_does_not_take_a_kms_etag_for_md5(tmp_path: Path) -> None:
    """An SSE-KMS object's ETag is no MD5 (AWS); rclone stores md5chksum for it instead."""
    path = tmp_path / "d"
    path.write_bytes(b"dump bytes")
    md5 = hashlib.md5(b"dump bytes")
    head = {"ContentLength": 10, "ETag": '"0123456789abcdef0123456789abcdef"',
            "ServerSideEncryption": "aws:kms",
            "Metadata": {"md5chksum": base64.b64encode(md5.digest()).decode()}}
    assert "md5chksum metadata (SSE-KMS/SSE-C object)" in restore.verify(path, head)
    assert "size 10 B only" in restore.verify(path, {**head, "Metadata": {}})
    with pytest.raises(restore.RestoreError, match="ETag"):
        restore.verify(path, {**head, "ServerSideEncryption": "AES256"})  # SSE-S3: ETag = MD5


# -- upload options against SeaweedFS -------------------------------------------------------------


@pytest.mark.docker
def test_upload_options_reach_the_objects(
    tmp_path: Path, bucket: str, s3server: S3Server, write_config,
    docker_client: docker.DockerClient,
) -> None:
    """s3.storage_class and s3.server_side_encryption reach rclone's uploads and the sentinel."""
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r.pdf").write_bytes(secrets.token_bytes(3000))
    options = {"storage_class": "STANDARD_IA", "server_side_encryption": "AES256"}
    cfg = config.load(write_config(tmp_path, s3server, bucket, receipts_dir=settle(receipts),
                                   s3=options))
    report = pipeline.run_job(cfg, "receipts-upload", client=docker_client)
    assert report.ok, report.summary()
    admin = s3server.client()
    for key in ("receipts/r.pdf", "receipts/.last_success"):
        head = admin.head_object(Bucket=bucket, Key=key)
        # SeaweedFS keeps both and reports them on HEAD, as AWS does.
        assert head["StorageClass"] == "STANDARD_IA", key
        assert head["ServerSideEncryption"] == "AES256", key
    plain = config.load(write_config(tmp_path, s3server, bucket, receipts_dir=receipts))
    s3.write_sentinel(plain.destination(), "postgres", datetime.now(UTC))
    plain_head = admin.head_object(Bucket=bucket, Key="postgres/.last_success")
    assert "StorageClass" not in plain_head and "ServerSideEncryption" not in plain_head

    # aws:kms: SeaweedFS here has no KMS configured and refuses the upload (HTTP 500
    # InternalError) instead of storing it unencrypted; on AWS the object would be stored with
    # SSE-KMS. Asserted as SeaweedFS does it, not faked.
    kms = config.load(write_config(tmp_path, s3server, bucket, receipts_dir=receipts, s3={
        "server_side_encryption": "aws:kms", "sse_kms_key_id": "arn:aws:kms:us-east-1:1:key/x"}))
    with pytest.raises(s3.S3Error, match=r"writing the sentinel failed.*InternalError"):
        s3.write_sentinel(kms.destination(), "receipts", datetime.now(UTC))


def test_upload_options_are_config_keys_checked_together(tmp_path: Path) -> None:
    from tests.harness.configs import MINIMAL
    text = MINIMAL.replace('bucket = "ardua-backups"', 'bucket = "ardua-backups"\n'
                           'sse_kms_key_id = "alias/backups"')
    with pytest.raises(config.ConfigError, match=r"/c.toml: s3.sse_kms_key_id is set but "
                                                 r"s3.server_side_encryption is ''"):
        config.parse(text, Path("/c.toml"))
    good = config.parse(text.replace('sse_kms_key_id', 'server_side_encryption = "aws:kms"\n'
                                                         'sse_kms_key_id'), Path("/c.toml"))
    assert rclone.environment(good.destination())["RCLONE_S3_SSE_KMS_KEY_ID"] == "alias/backups"
