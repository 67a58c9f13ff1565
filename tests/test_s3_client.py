"""s3.client is cached, but never past a change of the credentials file (rotated keys)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.storage import s3
from supervisor.storage.destination import Destination


def test_client_cached_until_credentials_file_changes(tmp_path: Path) -> None:
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = OLD\naws_secret_access_key = s1\n")
    creds.chmod(0o600)
    cfg = Destination("ardua-backups", "us-west-2", "http://127.0.0.1:9", creds, "default")
    first = s3.client(cfg)
    assert s3.client(cfg) is first
    assert s3.client(cfg, fast=True) is not first  # other timeouts, other client

    creds.write_text("[default]\naws_access_key_id = NEW\naws_secret_access_key = s2\n")
    os.utime(creds, ns=(1, 1))  # same inode and size: only the mtime tells (coarse clocks)
    rotated = s3.client(cfg)
    assert rotated is not first
    assert rotated._request_signer._credentials.access_key == "NEW"


def test_clients_share_one_loader_but_not_credentials(tmp_path: Path) -> None:
    """Every client's session loads botocore's S3 model through one loader (12 MB per copy),
    and still reads its own credentials file."""
    configs = []
    for name, key in (("a", "KEY-A"), ("b", "KEY-B")):
        creds = tmp_path / f"creds-{name}"
        creds.write_text(f"[{name}]\naws_access_key_id = {key}\naws_secret_access_key = s\n")
        creds.chmod(0o600)
        configs.append(Destination(f"bucket-{name}", "us-west-2", "http://127.0.0.1:9", creds,
                                   name))
    a, b = (s3.client(cfg) for cfg in configs)
    fast = s3.client(configs[0], fast=True)
    assert a is not b
    assert a._loader is b._loader is fast._loader
    assert a._request_signer._credentials.access_key == "KEY-A"
    assert b._request_signer._credentials.access_key == "KEY-B"
    # boto3.Session appends its data folder to the loader's path each time: once is kept
    assert len(a._loader.search_paths) == len(set(a._loader.search_paths))


def test_missing_profile_is_an_s3_error(tmp_path: Path) -> None:
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = K\naws_secret_access_key = s\n")
    creds.chmod(0o600)
    cfg = Destination("ardua-backups", "us-west-2", "http://127.0.0.1:9", creds, "nope")
    with pytest.raises(s3.S3Error, match=r"profile 'nope' is not in s3\.credentials_file"):
        s3.client(cfg)
