"""`restore receipts DEST` resolves DEST once and holds it open: a DEST swapped for a symlink to
an /etc-like directory between the checks and the container start fails the restore in one line
and leaves that directory untouched; a symlink DEST, a DEST under a directory other users can
write, and a root-owned DEST without --as-root are refused before any container runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.config import load as config_mod
from supervisor.restore.db import RestoreError
from supervisor.restore.receipts import restore_receipts

OTHER_UID = 4242


@pytest.fixture
def cfg(tmp_path, s3server, bucket, write_config):
    s3server.put(bucket, "receipts/2026/a.pdf", b"receipt a")
    s3server.put(bucket, "receipts/b.pdf", b"receipt b")
    return config_mod.load(write_config(tmp_path, s3server, bucket,
                                        receipts_dir=tmp_path / "receipts"))


@pytest.fixture
def etc(tmp_path) -> Path:
    """Stands for /etc: root's, holding a file S3 lacks (a sync into it would delete it)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0\n")
    return etc


def _base(tmp_path: Path, mode: int = 0o755) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    base.chmod(mode)
    return base


def _refused(cfg, dest: Path, docker_client, **kwargs) -> str:
    with pytest.raises(RestoreError) as raised:
        restore_receipts(cfg, dest, client=docker_client, on_line=lambda _: None, **kwargs)
    assert "\n" not in str(raised.value)
    return str(raised.value)


def test_restores_into_a_held_directory(cfg, tmp_path, docker_client) -> None:
    dest = _base(tmp_path) / "r"
    said = restore_receipts(cfg, dest, as_root=True, client=docker_client,
                            on_line=lambda _: None)
    assert said.startswith("restored 2 file(s)")
    assert (dest / "2026/a.pdf").read_bytes() == b"receipt a"


def test_swap_for_a_symlink_after_the_check_is_refused(cfg, tmp_path, etc,
                                                        docker_client) -> None:
    dest = _base(tmp_path) / "r"
    dest.mkdir()
    (dest / "old.pdf").write_text("old")  # not empty: --force, so a sync would delete

    def swap(step: str) -> None:
        if step == "checked":  # between the checks and the container start
            dest.rename(dest.parent / "r-moved")
            dest.symlink_to(etc)

    message = _refused(cfg, dest, docker_client, force=True, as_root=True, on_step=swap)
    assert message == f"{dest} was replaced while the restore prepared; nothing synced"
    assert sorted(p.name for p in etc.iterdir()) == ["passwd"]
    assert (etc / "passwd").read_text() == "root:x:0:0\n"
    assert (dest.parent / "r-moved" / "old.pdf").exists()


def test_symlink_dest_is_refused(cfg, tmp_path, etc, docker_client) -> None:
    dest = _base(tmp_path) / "r"
    dest.symlink_to(etc)
    message = _refused(cfg, dest, docker_client, force=True, as_root=True)
    assert message == f"{dest}: r is a symlink; give the real path"
    assert sorted(p.name for p in etc.iterdir()) == ["passwd"]


def test_root_owned_dest_needs_as_root(cfg, tmp_path, docker_client) -> None:
    dest = _base(tmp_path) / "r"
    message = _refused(cfg, dest, docker_client)
    assert message.startswith(f"{dest} is owned by root, so the sync")
    assert "--as-root" in message


def test_dest_under_a_directory_others_can_write(cfg, tmp_path, docker_client) -> None:
    # World-writable, not sticky: anyone can rename DEST away, whoever owns it.
    dest = _base(tmp_path, 0o777) / "r"
    assert "other users can change" in _refused(cfg, dest, docker_client, as_root=True)

    # Sticky (/tmp): another user's DEST is theirs to swap; the operator's own is not.
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    theirs = sticky / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER_UID, OTHER_UID)
    # The sync would run as its owner (no escalation), but its parent is not theirs to trust.
    os.chown(sticky, OTHER_UID + 1, OTHER_UID + 1)
    assert "other users can change" in _refused(cfg, theirs, docker_client)
    os.chown(sticky, 0, 0)
    mine = sticky / "mine"
    said = restore_receipts(cfg, mine, as_root=True, client=docker_client,
                            on_line=lambda _: None)
    assert said.startswith("restored 2 file(s)")
