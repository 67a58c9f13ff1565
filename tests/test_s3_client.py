"""s3.client is cached, but never past a change of the credentials file (rotated keys)."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor import s3
from supervisor.config import S3Config


def test_client_cached_until_credentials_file_changes(tmp_path: Path) -> None:
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = OLD\naws_secret_access_key = s1\n")
    creds.chmod(0o600)
    cfg = S3Config("ardua-backups", "us-west-2", "http://127.0.0.1:9", creds, "default")
    first = s3.client(cfg)
    assert s3.client(cfg) is first
    assert s3.client(cfg, fast=True) is not first  # other timeouts, other client

    creds.write_text("[default]\naws_access_key_id = NEW\naws_secret_access_key = s2\n")
    os.utime(creds, ns=(1, 1))  # same inode and size: only the mtime tells (coarse clocks)
    rotated = s3.client(cfg)
    assert rotated is not first
    assert rotated._request_signer._credentials.access_key == "NEW"
