"""Fire times across the 2026 America/Los_Angeles DST changes, checked against Debian cron."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from supervisor.cli import cmd_check_config, cmd_next
from supervisor.config.load import parse
from supervisor.core.schedule import missed_fire, next_fires

LA = ZoneInfo("America/Los_Angeles")


def iso(fires: list[datetime]) -> list[str]:
    return [f.isoformat() for f in fires]


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # Spring forward 2026-03-08: 02:00 PST jumps to 03:00 PDT.
        (
            "30 2 * * *",
            datetime(2026, 3, 7, 12, 0, tzinfo=LA),
            ["2026-03-08T03:00:00-07:00", "2026-03-09T02:30:00-07:00"],
        ),
        (
            "30 * * * *",
            datetime(2026, 3, 8, 0, 45, tzinfo=LA),
            ["2026-03-08T01:30:00-08:00", "2026-03-08T03:30:00-07:00", "2026-03-08T04:30:00-07:00"],
        ),
        (  # APScheduler's CronTrigger loses this one.
            "0 0 * * *",
            datetime(2026, 3, 8, 0, 0, tzinfo=LA),
            ["2026-03-09T00:00:00-07:00", "2026-03-10T00:00:00-07:00"],
        ),
        # Fall back 2026-11-01: 02:00 PDT goes back to 01:00 PST.
        (
            "30 1 * * *",
            datetime(2026, 10, 31, 12, 0, tzinfo=LA),
            ["2026-11-01T01:30:00-07:00", "2026-11-02T01:30:00-08:00"],
        ),
        (
            "30 * * * *",
            datetime(2026, 11, 1, 0, 45, tzinfo=LA),
            ["2026-11-01T01:30:00-07:00", "2026-11-01T01:30:00-08:00", "2026-11-01T02:30:00-08:00"],
        ),
        (
            "0 * * * *",
            datetime(2026, 11, 1, 0, 30, tzinfo=LA),
            ["2026-11-01T01:00:00-07:00", "2026-11-01T01:00:00-08:00", "2026-11-01T02:00:00-08:00"],
        ),
        (  # Starting inside the repeated hour must not yield the earlier 01:30 PDT again.
            "30 1 * * *",
            datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=LA),
            ["2026-11-02T01:30:00-08:00"],
        ),
    ],
)
def test_dst_fire_times(expr: str, after: datetime, expected: list[str]) -> None:
    assert iso(next_fires(expr, LA, after, len(expected))) == expected


def test_fall_back_daily_fires_once_in_the_repeated_hour() -> None:
    day = next_fires("30 1 * * *", LA, datetime(2026, 11, 1, 0, 0, tzinfo=LA), 3)
    assert [f.date().isoformat() for f in day] == ["2026-11-01", "2026-11-02", "2026-11-03"]


def test_after_is_exclusive_and_any_zone_accepted() -> None:
    fire = datetime(2026, 3, 9, 10, 30, tzinfo=UTC)  # 03:30 PDT
    assert iso(next_fires("30 3 * * *", LA, fire, 1)) == ["2026-03-10T03:30:00-07:00"]
    with pytest.raises(ValueError):
        next_fires("30 3 * * *", LA, datetime(2026, 3, 9), 1)


NOW = datetime(2026, 5, 4, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "catch_up", "expected"),
    [
        (NOW - timedelta(days=3), True, datetime(2026, 5, 1, 12, 15, tzinfo=UTC)),  # burst -> first
        (NOW - timedelta(minutes=20), True, None),  # ran after the 11:15 fire
        (NOW - timedelta(days=3), False, None),  # outage not made up for
        (None, True, None),  # no history: nothing was missed in the last 15 min
    ],
)
def test_missed_fire(since: datetime | None, catch_up: bool, expected: datetime | None) -> None:
    got = missed_fire("15 * * * *", UTC, since=since, now=NOW, catch_up=catch_up)
    assert got == expected


def test_missed_fire_within_grace_runs_even_without_catch_up() -> None:
    now = datetime(2026, 5, 4, 12, 20, tzinfo=UTC)
    for since, catch_up in [(None, False), (now - timedelta(days=3), False), (None, True)]:
        got = missed_fire("15 * * * *", UTC, since=since, now=now, catch_up=catch_up)
        assert got == datetime(2026, 5, 4, 12, 15, tzinfo=UTC)


CONFIG = """
timezone = "America/Los_Angeles"
state_dir = "/tmp/x"
[s3]
bucket = "ardua-test"
[jobs.db-upload]
schedule = "30 2 * * *"
source = "volume:pg_backups"
prefix = "postgres"
[jobs.receipts-upload]
schedule = "30 * * * *"
source = "/data/receipts"
prefix = "receipts"
"""


def test_cmd_next_single_and_all_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    config = parse(CONFIG, Path("t.toml"))
    after = datetime(2026, 3, 8, 0, 45)  # naive: wall time in the config's zone
    assert cmd_next(config, "db-upload", 2, after) == 0
    assert capsys.readouterr().out.split() == [
        "2026-03-08T03:00:00-07:00",
        "2026-03-09T02:30:00-07:00",
    ]
    assert cmd_next(config, None, 2, after) == 0
    assert capsys.readouterr().out.splitlines() == [
        "receipts-upload 2026-03-08T01:30:00-08:00",
        "db-upload 2026-03-08T03:00:00-07:00",
        "receipts-upload 2026-03-08T03:30:00-07:00",
        "db-upload 2026-03-09T02:30:00-07:00",
    ]


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(CONFIG)
    assert cmd_check_config(good, datetime(2026, 3, 8, 0, 45, tzinfo=LA)) == 0
    out = capsys.readouterr().out
    assert "db-upload: '30 2 * * *'" in out and "next 2026-03-08T03:00:00-07:00" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace("30 2 * * *", "61 2 * * *"))
    assert cmd_check_config(bad) == 78  # EX_CONFIG, like every command
    assert "jobs.db-upload.schedule" in capsys.readouterr().err
