"""The run's source listing (rclone_containers.list_source): `rclone lsf --csv` in a real rclone
container, read back as the files, sizes and mtimes the folder holds, names with commas, quotes
and line breaks included, and the same as `rclone lsjson` (what the run read before) says."""

from __future__ import annotations

import json
import os
from pathlib import Path

from supervisor.config import load as config_mod
from supervisor.containers import rclone
from supervisor.containers.jobs import LIST_STEP, JobContainers, list_source

# Go's encoding/csv quotes a field holding the separator, a quote, \r or \n, or a leading space
# (fieldNeedsQuotes in encoding/csv/writer.go); each of those is here. rclone names control
# characters by their Unicode pictures (\n as U+240A; its docs, "Encoding", Ctl), in lsf, lsjson
# and the keys a sync writes alike, so no raw line break reaches the CSV from a real folder.
AWKWARD = [
    "plain.pdf", "comma, here.pdf", 'quote".pdf', "new\nline.pdf", "cr\rname.pdf",
    " leading space.pdf", "trailing space .pdf", "tab\there.pdf", "ünïcødé €.pdf",
    "sub dir/x,y/z.pdf", "2026/03/receipt-1.pdf", "empty.pdf",
]


_CONTROL_PICTURES = {c: 0x2400 + c for c in range(0x20)}


def _folder(root: Path) -> None:
    for i, name in enumerate(AWKWARD):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (0 if name == "empty.pdf" else 100 + i))
        # whole seconds for one, nanoseconds for the others: both print with 9 digits
        ns = 1_760_000_000_000_000_000 + (0 if i == 0 else i * 123_456_789)
        os.utime(path, ns=(ns, ns))
    (root / "link.pdf").symlink_to(root / "plain.pdf")  # rclone skips it, as a sync does


def _truth(root: Path) -> set[tuple[str, int, int]]:
    """What the folder holds: path (as rclone names it), size, mtime in microseconds."""
    found = set()
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not path.is_symlink():
                st = path.stat()
                name = str(path.relative_to(root)).translate(_CONTROL_PICTURES)
                found.add((name, st.st_size, st.st_mtime_ns // 1000))
    return found


def test_lists_awkward_names_as_they_are(docker_client, s3server, bucket, write_config,
                                         tmp_path) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    _folder(receipts)
    cfg = config_mod.load(write_config(tmp_path, s3server, bucket, receipts_dir=receipts))
    run = JobContainers(cfg, cfg.job("receipts-upload"), "listing-test", docker_client)

    listing = list_source(run)

    listed = {(f.path, f.size, int(f.modified.timestamp() * 1_000_000)) for f in listing.files}
    assert listed == _truth(receipts)
    assert len(listing.files) == len(AWKWARD)
    assert listing.skipped_symlinks == 1
    assert all(len(f.mod_time) == len("2025-10-09T08:53:20.123456789Z") for f in listing.files)

    # Byte for byte what lsjson printed for the same folder (the run's listing until now).
    result = run.container(LIST_STEP, ["lsjson", "--recursive", "--files-only", "--no-mimetype",
                                       f"{rclone.SOURCE_MOUNT}/"], 60)
    assert result.exit_code == 0, result.stderr
    lsjson = {(e["Path"], e["Size"], e["ModTime"]) for e in json.loads(result.stdout)}
    assert {(f.path, f.size, f.mod_time) for f in listing.files} == lsjson


def test_empty_folder_lists_nothing(docker_client, s3server, bucket, write_config,
                                    tmp_path) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    cfg = config_mod.load(write_config(tmp_path, s3server, bucket, receipts_dir=receipts))
    listing = list_source(JobContainers(cfg, cfg.job("receipts-upload"), "empty", docker_client))
    assert listing.files == []
    assert listing.skipped_symlinks == 0
