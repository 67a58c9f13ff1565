"""rclone command lines, JSON log reading and the success verdict (pure logic)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.containers import rclone
from supervisor.containers.rclone import judge_sync
from supervisor.core import clock
from supervisor.storage.destination import Destination

STATS = {"bytes": 3, "checks": 0, "deletes": 1, "errors": 0, "fatalError": False,
         "transfers": 1, "lastError": None}


def line(level: str, msg: str, **extra: object) -> str:
    return json.dumps({"time": "2026-11-24T06:55:38Z", "level": level, "msg": msg, **extra})


CLEAN_RUN = "\n".join([
    line("notice", "Can't follow symlink without -L/--copy-links", object="last/DB-latest.dump"),
    line("notice", "Can't follow symlink without -L/--copy-links", object="daily/DB-latest.dump"),
    line("notice", "\nTransferred: 3 B / 3 B\n", stats=STATS),
])


def test_clean_run_counts_symlinks_as_expected_not_errors() -> None:
    log = rclone.parse_log(CLEAN_RUN)
    assert log.skipped_symlinks == 2
    assert log.error_count == 0
    assert log.stats == STATS
    assert judge_sync(0, False, log).ok


def test_exit_zero_with_error_lines_is_a_failure() -> None:
    text = CLEAN_RUN + "\n" + line("error", "Failed to copy: AccessDenied", object="a.dump")
    log = rclone.parse_log(text)
    assert log.error_count == 1
    assert log.last_error == "a.dump: Failed to copy: AccessDenied"
    verdict = judge_sync(0, False, log)
    assert not verdict.ok
    assert "1 error line(s) despite exit 0" in verdict.reason


def test_non_json_output_counts_as_error() -> None:
    log = rclone.parse_log("panic: runtime error: invalid memory address\n" + CLEAN_RUN)
    assert log.error_count == 1
    assert not judge_sync(0, False, log).ok


def test_missing_final_stats_cannot_pass() -> None:
    log = rclone.parse_log(line("notice", "Can't follow symlink without -L/--copy-links"))
    verdict = judge_sync(0, False, log)
    assert not verdict.ok
    assert "no final stats" in verdict.reason


@pytest.mark.parametrize(
    ("code", "timed_out", "reason"),
    [(1, False, "exited with code 1"), (10, False, "--max-duration"),
     (137, True, "timeout was reached")],
)
def test_failure_reasons(code: int, timed_out: bool, reason: str) -> None:
    verdict = judge_sync(code, timed_out, rclone.parse_log(CLEAN_RUN))
    assert not verdict.ok
    assert reason in verdict.reason


def test_stats_errors_fail_and_give_last_error() -> None:
    stats = {**STATS, "errors": 2, "lastError": "connection refused"}
    log = rclone.parse_log(line("notice", "x", stats=stats))
    assert not judge_sync(0, False, log).ok
    assert log.last_error == "connection refused"


def test_kept_error_lines_are_bounded() -> None:
    text = "\n".join(line("error", f"e{i}") for i in range(500))
    log = rclone.parse_log(text)
    assert log.error_count == 500
    assert len(log.error_lines) == rclone.MAX_KEPT_ERRORS


def test_sync_command_shape() -> None:
    cmd = rclone.sync_command(Destination("ardua-backups"), "postgres", 45 * 60)
    assert cmd[:3] == ["sync", "/source/", ":s3:ardua-backups/postgres/"]
    assert cmd[cmd.index("--max-duration") + 1] == "2430s"
    excludes = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--exclude"]
    assert excludes == ["/.last_success", "/.last_restore_drill"]
    assert "copy" not in cmd


def test_young_files_are_excluded_exactly_by_name() -> None:
    # rclone globs: * ? [ ] { } and \ are escaped; the leading / anchors at the sync root.
    assert rclone.exact_pattern("2026/a[1] {x,y}*?\\b.pdf") == \
        "/2026/a\\[1\\] \\{x,y\\}\\*\\?\\\\b.pdf"
    cmd = rclone.sync_command(Destination("b"), "receipts", 60, exclude=["new receipt.pdf"])
    excludes = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--exclude"]
    assert excludes == ["/.last_success", "/.last_restore_drill", "/new receipt.pdf"]


def test_environment_carries_no_secret() -> None:
    s3 = Destination("b", "us-west-2", "", Path("/etc/ardua-backup/aws-credentials"), "prod")
    env = rclone.environment(s3)
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == rclone.CREDENTIALS_MOUNT
    assert env["AWS_PROFILE"] == "prod"
    assert env["RCLONE_S3_PROVIDER"] == "AWS"
    assert "RCLONE_S3_ENDPOINT" not in env
    assert not any("SECRET" in k or "ACCESS_KEY" in k for k in env)


def test_iam_role_mode_mounts_no_file() -> None:
    env = rclone.environment(Destination("b", "us-west-2", "", None, "default"))
    assert "AWS_SHARED_CREDENTIALS_FILE" not in env
    assert env["RCLONE_S3_ENV_AUTH"] == "true"


def test_parse_listing() -> None:
    out = ('last/a.dump,5,2026-01-01T00:00:00.000000000Z\n'
           '"b, ""c""\nd",0,2026-01-01T00:00:00.123456789+01:00\n')
    assert rclone.parse_listing(out) == [
        rclone.ListedFile("last/a.dump", 5, "2026-01-01T00:00:00.000000000Z"),
        rclone.ListedFile('b, "c"\nd', 0, "2026-01-01T00:00:00.123456789+01:00"),
    ]
    assert rclone.parse_listing("") == []
    for bad in ("a,5\n", "a,five,2026-01-01T00:00:00Z\n", "a,5,yesterday\n",
                "a,5,2026-01-01T00:00:00\n"):
        with pytest.raises(ValueError):
            rclone.parse_listing(bad)


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-12-18T01:15:04.123456789-08:00", datetime(2025, 12, 18, 9, 15, 4, 123456, UTC)),
    ("2025-12-18T01:15:04Z", datetime(2025, 12, 18, 1, 15, 4, tzinfo=UTC)),
    ("2025-12-18T01:15:04.5Z", datetime(2025, 12, 18, 1, 15, 4, 500000, UTC)),
    (" 2025-12-18T01:15:04.000000000+00:00\n", datetime(2025, 12, 18, 1, 15, 4, tzinfo=UTC)),
])
def test_parse_time_reads_go_timestamps(text: str, expected: datetime) -> None:
    assert clock.parse_time(text) == expected
    assert clock.parse_time(text).utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2025-12-18T01:15:04", "yesterday", ""])
def test_parse_time_refuses_what_it_cannot_place(text: str) -> None:
    with pytest.raises(ValueError):
        rclone.parse_time(text)
