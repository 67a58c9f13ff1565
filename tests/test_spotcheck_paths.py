"""The drill's receipts spot check reads only regular files inside the receipts folder: S3 keys
that name a path outside it (absolute, empty, `.`/`..` segments, NUL) are refused by name and
never read, and a local symlink (to a file or a directory) or FIFO under a sampled name counts
as missing, never followed or waited on."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

import pytest

from supervisor.config import load as config_mod
from supervisor.core import paths
from supervisor.restore import spotcheck
from supervisor.storage import s3

# What SeaweedFS cannot hold (it folds `//` and refuses `..`), AWS S3 keeps as written.
PLANTED = ["/dev/zero", "../outside/secret", "a/./b.pdf", "a//b.pdf", "nul\0.pdf", ""]


@pytest.mark.parametrize("name", PLANTED)
def test_planted_names_are_not_plain(name: str) -> None:
    assert not paths.plain_relative(name)


def test_plain_names_are_plain() -> None:
    assert all(map(paths.plain_relative, ["a.pdf", "2026/03/01/r .pdf", "..a/b..", ".hidden"]))


def _spot_check(cfg) -> spotcheck.SpotCheck:
    """Run in a thread with a deadline: a read of /dev/zero or a FIFO would never end."""
    done: list[spotcheck.SpotCheck] = []
    thread = threading.Thread(target=lambda: done.append(spotcheck.spot_check_receipts(cfg)),
                              daemon=True)
    thread.start()
    thread.join(60)
    assert done, "the spot check did not end within 60 s"
    return done[0]


def test_spot_check_refuses_outside_keys_and_follows_no_symlink(
        tmp_path, s3server, bucket, write_config, monkeypatch) -> None:
    receipts, outside = tmp_path / "receipts", tmp_path / "outside"
    receipts.mkdir()
    outside.mkdir()
    secret = b"outside the receipts folder"
    (outside / "secret").write_bytes(secret)
    (outside / "x.pdf").write_bytes(secret)
    (receipts / "good.pdf").write_bytes(b"good receipt")
    (receipts / "link.pdf").symlink_to(outside / "secret")  # a file symlink
    (receipts / "sub").symlink_to(outside)  # a directory symlink
    os.mkfifo(receipts / "fifo.pdf")
    # The bucket holds each name with the bytes the symlink's target has: followed, it matches.
    for rel, body in [("good.pdf", b"good receipt"), ("link.pdf", secret),
                      ("sub/x.pdf", secret), ("fifo.pdf", b"")]:
        s3server.put(bucket, f"receipts/{rel}", body)
    cfg = config_mod.load(write_config(
        tmp_path, s3server, bucket, receipts_dir=receipts,
        drill={"receipts_job": "receipts-upload", "receipts_sample": 100}))

    # The names SeaweedFS cannot hold, added to what the real server lists.
    real_listing = s3.list_objects

    def with_planted(dest, prefix):
        found = real_listing(dest, prefix)
        for rel in PLANTED:
            found[rel] = s3.S3Object(f"{prefix}/{rel}", len(secret), "0",
                                     datetime.now(UTC))
        return found

    monkeypatch.setattr(spotcheck.s3, "list_objects", with_planted)

    result = _spot_check(cfg)

    assert result.checked == 4
    assert result.mismatched == ()
    assert sorted(result.missing) == ["fifo.pdf", "link.pdf", "sub/x.pdf"]
    assert sorted(result.refused) == sorted(repr(rel) for rel in PLANTED)
    assert not result.ok and "6 S3 key(s) name no path inside the folder" in result.note
