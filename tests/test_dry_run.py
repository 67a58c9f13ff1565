"""`run-once JOB --dry-run`: the plan (uploads, server-side copies, deletes, the guard's numbers and
verdict) with S3, the sentinel and the ledger untouched, and a real run then doing exactly
that. Real pg_dump tree in a Docker volume, real rclone, real SeaweedFS, through the CLI."""

from __future__ import annotations

import json
import re

from supervisor.upload import dryrun
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.pgtree import make_backups_tree, volume_mountpoint
from tests.harness.sourcedb import dumps_fixture  # noqa: F401 (the dumps fixture)

SENTINEL = "postgres/.last_success"


def _count(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in:\n{text}"
    return int(m.group(1))


def _history(cfg) -> list[dict]:
    return json.loads(run_cli("history", "db-upload", "--json", config=cfg).stdout)


def test_dry_run_shows_what_the_run_then_does(docker_client, s3server, bucket, pg_volume,
                                               dumps, write_config, tmp_path) -> None:
    root = volume_mountpoint(docker_client, pg_volume)
    make_backups_tree(root, dumps[:2])
    cfg = write_config(tmp_path, s3server, bucket, db_volume=pg_volume)
    assert run_cli("run-once", "db-upload", config=cfg).returncode == 0
    # Day 3; and retention removes day 1's dump from last/ and daily/.
    make_backups_tree(root, dumps)
    (root / "last/ardua-20260301-010000.dump").unlink()
    (root / "daily/ardua-20260301.dump").unlink()
    before = s3server.list_keys(bucket, "postgres/")
    runs = _history(cfg)

    plan = run_cli("run-once", "db-upload", "--dry-run", config=cfg)

    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "DRY RUN" in plan.stdout and "a run would sync as listed" in plan.stdout
    assert s3server.list_keys(bucket, "postgres/") == before  # nothing changed, sentinel too
    assert _history(cfg) == runs  # not recorded
    assert _count(r"would upload\s+(\d+) files", plan.stdout) == 1  # the new dump, once
    assert _count(r"copy in S3\s+(\d+) keys", plan.stdout) == 3  # daily, weekly, monthly
    assert _count(r"would delete\s+(\d+) objects", plan.stdout) == 2
    assert re.search(r"upload\s+\w+/ardua-20260303", plan.stdout)  # one name of the new dump
    assert re.search(r"delete\s+last/ardua-20260301-010000.dump", plan.stdout)
    assert "would delete 2 (" in plan.stdout  # the guard's own numbers

    real = run_cli("run-once", "db-upload", config=cfg)
    assert real.returncode == 0, real.stdout + real.stderr
    assert _count(r"transferred\s+(\d+) files", real.stdout) == 1
    assert _count(r"copied in S3\s+(\d+) files", real.stdout) == 3
    assert _count(r"deleted in S3\s+(\d+)", real.stdout) == 2


def test_dry_run_before_force_deletes(docker_client, s3server, bucket, pg_volume, dumps,
                                      write_config, tmp_path) -> None:
    root = volume_mountpoint(docker_client, pg_volume)
    make_backups_tree(root, dumps)
    cfg = write_config(tmp_path, s3server, bucket, db_volume=pg_volume)
    assert run_cli("run-once", "db-upload", config=cfg).returncode == 0
    for path in [*root.glob("daily/*"), *root.glob("weekly/*"), *root.glob("monthly/*")]:
        path.unlink()  # a wrong retention setting wiped most of the tree
    before = s3server.list_keys(bucket, "postgres/")

    refused = run_cli("run-once", "db-upload", "--dry-run", config=cfg)
    forced = run_cli("run-once", "db-upload", "--dry-run", "--force-deletes", config=cfg)

    assert refused.returncode == 1
    assert "would be REFUSED by the deletion guard" in refused.stdout
    assert _count(r"would delete\s+(\d+) objects", refused.stdout) == 6  # of 9
    assert forced.returncode == 0
    assert "overridden by --force-deletes" in forced.stdout
    assert s3server.list_keys(bucket, "postgres/") == before
    assert SENTINEL in before


def test_skipped_lines_are_read() -> None:
    stderr = "\n".join([
        json.dumps({"level": "notice", "msg": "Skipped copy as --dry-run is set (size 3)",
                    "skipped": "copy", "size": 3, "object": "a b.pdf"}),
        json.dumps({"level": "notice", "msg": "Skipped delete as --dry-run is set (size 2)",
                    "skipped": "delete", "size": 2, "object": "old"}),
        json.dumps({"level": "notice", "msg": "Skipped make directory", "skipped": "make "
                    "directory", "object": "d"}),
        "not json",
    ])
    assert dryrun.parse_skipped(stderr) == [dryrun.Skipped("copy", "a b.pdf", 3),
                                            dryrun.Skipped("delete", "old", 2)]


def test_dry_run_leaves_young_receipts_out_like_the_run(s3server, bucket, write_config,
                                                        tmp_path) -> None:
    """A busy receipts folder: the dry run applies the run's young-files rule (pipeline's own
    code), so it lists neither a new receipt still being written nor one rewritten in place as
    uploads, says they are left for the next run, and the real run then does just that."""
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    for i in range(4):
        (receipts / f"old-{i}.pdf").write_bytes(b"settled receipt %d" % i)
    settle(receipts)
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts)
    assert run_cli("run-once", "receipts-upload", config=cfg).returncode == 0
    (receipts / "new-a.pdf").write_bytes(b"written an hour ago")
    (receipts / "new-b.pdf").write_bytes(b"also settled")
    settle(receipts)
    (receipts / "fresh.pdf").write_bytes(b"still being written")  # young
    (receipts / "old-0.pdf").write_bytes(b"rewritten in place, young")  # young

    plan = run_cli("run-once", "receipts-upload", "--dry-run", config=cfg)

    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert _count(r"skipped young\s+(\d+)", plan.stdout) == 2
    assert _count(r"would upload\s+(\d+) files", plan.stdout) == 2
    assert _count(r"would delete\s+(\d+) objects", plan.stdout) == 0
    assert re.search(r"young\s+fresh\.pdf", plan.stdout), plan.stdout
    assert not re.search(r"upload\s+(fresh|old-0)\.pdf", plan.stdout), plan.stdout
    assert ("a run would sync as listed; 2 file(s) changed within guard.quiet_period left for "
            "the next run") in plan.stdout

    real = run_cli("run-once", "receipts-upload", config=cfg)
    assert real.returncode == 0, real.stdout + real.stderr
    assert _count(r"transferred\s+(\d+) files", real.stdout) == 2
    assert _count(r"skipped young\s+(\d+)", real.stdout) == 2
    assert _count(r"deleted in S3\s+(\d+)", real.stdout) == 0
    assert s3server.get(bucket, "receipts/old-0.pdf") == b"settled receipt 0"
    assert "receipts/fresh.pdf" not in s3server.list_keys(bucket, "receipts/")


def test_dry_run_defers_a_dump_being_written_like_the_run(docker_client, s3server, bucket,
                                                          pg_volume, write_config,
                                                          tmp_path) -> None:
    """The dump job defers on one young file (half a set in S3 is wrong): so does its dry run."""
    root = volume_mountpoint(docker_client, pg_volume)
    (root / "last").mkdir(parents=True, exist_ok=True)
    (root / "last" / "ardua-20260303-010000.dump").write_bytes(b"half a dump")
    cfg = write_config(tmp_path, s3server, bucket, db_volume=pg_volume)

    plan = run_cli("run-once", "db-upload", "--dry-run", config=cfg)
    real = run_cli("run-once", "db-upload", config=cfg)

    assert plan.returncode == real.returncode == 75, plan.stdout + real.stdout
    assert "a run would be deferred: 1 source file(s) changed within guard.quiet_period" \
        in plan.stdout
    assert "DEFERRED" in real.stdout
    assert s3server.list_keys(bucket, "postgres/") == {}
