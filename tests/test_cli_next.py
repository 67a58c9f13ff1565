"""`ardua-backup next --after` through the real CLI: Vixie-cron semantics across DST."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.cli import run_cli

CONFIG = """
timezone = "America/Los_Angeles"
[s3]
bucket = "ardua-backups"
[jobs.nightly]
schedule = "{nightly}"
source = "/data/x"
prefix = "x"
[jobs.hourly]
schedule = "15 * * * *"
source = "/data/y"
prefix = "y"
"""


def fires(tmp_path: Path, nightly: str, *args: str) -> list[str]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(nightly=nightly))
    result = run_cli("next", *args, config=cfg)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize(
    ("nightly", "after", "expected"),
    [
        # spring forward 2026-03-08: 02:30 does not exist -> once, right after the jump
        ("30 2 * * *", "2026-03-08T00:00:00",
         ["2026-03-08T03:00:00-07:00", "2026-03-09T02:30:00-07:00"]),
        # fall back 2026-11-01: 01:30 happens twice -> runs once
        ("30 1 * * *", "2026-11-01T00:00:00",
         ["2026-11-01T01:30:00-07:00", "2026-11-02T01:30:00-08:00"]),
    ],
)
def test_fixed_times_across_dst(tmp_path, nightly, after, expected) -> None:
    assert fires(tmp_path, nightly, "nightly", "-n", "2", "--after", after) == expected


def test_hourly_runs_in_both_repeated_hours(tmp_path) -> None:
    out = fires(tmp_path, "30 1 * * *", "hourly", "-n", "3", "--after", "2026-11-01T00:30:00")
    assert out == ["2026-11-01T01:15:00-07:00", "2026-11-01T01:15:00-08:00",
                   "2026-11-01T02:15:00-08:00"]


def test_hourly_skips_the_missing_hour(tmp_path) -> None:
    out = fires(tmp_path, "30 1 * * *", "hourly", "-n", "2", "--after", "2026-03-08T01:30:00")
    assert out == ["2026-03-08T03:15:00-07:00", "2026-03-08T04:15:00-07:00"]


def test_all_jobs_are_listed_by_name_in_time_order(tmp_path) -> None:
    out = fires(tmp_path, "30 1 * * *", "-n", "1", "--after", "2026-11-01T00:00:00")
    assert out == ["hourly", "2026-11-01T00:15:00-07:00", "nightly", "2026-11-01T01:30:00-07:00"]


def test_invalid_file_is_exit_78_for_next_and_check_config(tmp_path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.format(nightly="30 25 * * *"))
    for command in ("next", "check-config"):
        result = run_cli(command, config=cfg)
        assert result.returncode == 78  # EX_CONFIG, as for every command but `status`
        assert "jobs.nightly.schedule" in result.stderr


def test_a_scheduled_drill_is_part_of_the_plan(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(nightly="30 1 * * *") + '[drill]\nschedule = "0 4 * * 0"\n')
    result = run_cli("next", "restore-drill", "-n", "2", "--after", "2026-11-01T00:00:00",
                     config=cfg)
    assert result.stdout.split() == ["2026-11-01T04:00:00-08:00", "2026-11-08T04:00:00-08:00"]
    plan = run_cli("check-config", config=cfg)
    assert plan.returncode == 0
    assert "restore-drill: '0 4 * * 0' newest dump of db-upload -> postgres:15" in plan.stdout


def test_config_option_before_or_after_the_command(tmp_path) -> None:
    """`ardua-backup run --config X` is how the unit (and operators) write it."""
    good, bad = tmp_path / "c.toml", tmp_path / "bad.toml"
    good.write_text(CONFIG.format(nightly="30 1 * * *"))
    bad.write_text(CONFIG.format(nightly="30 25 * * *"))
    args = ("next", "hourly", "-n", "1", "--after", "2026-11-01T00:00:00")
    before = run_cli(*args, config=good)
    after = run_cli(*args, "--config", str(good))
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout == "2026-11-01T00:15:00-07:00\n"
    # After the command wins over before it; without either, $ARDUA_BACKUP_CONFIG is used.
    assert run_cli(*args, "--config", str(good), config=bad).returncode == 0
    assert run_cli(*args, config=None, env={"ARDUA_BACKUP_CONFIG": str(good)}).returncode == 0
    restore = run_cli("restore", "list", "--config", str(bad))
    assert restore.returncode == 78 and "jobs.nightly.schedule" in restore.stderr


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """`ardua-backup next | head -1`: SIGPIPE ends it as it ends Unix tools, no traceback."""
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run(
        f"{sys.executable} -m supervisor --config config.example.toml next -n 500 | head -1",
        shell=True, cwd=root, capture_output=True, text=True, timeout=60)
    assert res.stdout.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
