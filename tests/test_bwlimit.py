"""rclone.bwlimit / jobs.NAME.bwlimit: validation (checked against the real rclone), the timetable
handed to rclone in UTC, and a real limit on loopback (a transfer takes at least size/limit)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from supervisor.config import bwlimit
from supervisor.config import load as config_mod
from supervisor.config.load import ConfigError
from supervisor.containers import engine as docker_runner
from supervisor.core.states import SUCCESS
from supervisor.upload import run as pipeline
from tests.harness.files import settle

VALID = ["off", "512k", "1.5M", "10Mi", "10MiB", "512", "0", "10M:100k", "08:00,1M 19:00,off",
         "Mon-08:00,1M Sun-19:00,off", "mon-08:00,1M", "08:00,1M Mon-19:00,off", "08:00,1M:2M"]
INVALID = ["10MB", "8:00,1M", "24:00,1M", "08:60,1M", "08:00,foo", "1M 08:00,2M", "-1M",
           "08:00,", "Xyz-08:00,1M", "08:00;1M"]
LA = "America/Los_Angeles"


@pytest.mark.parametrize("value", VALID)
def test_valid_values_pass(value: str) -> None:
    assert bwlimit.parse(value) == value


@pytest.mark.parametrize("value", INVALID)
def test_invalid_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        bwlimit.parse(value)


def test_whitespace_is_normalised_and_empty_means_none() -> None:
    assert bwlimit.parse("  08:00,1M   19:00,off ") == "08:00,1M 19:00,off"
    assert bwlimit.parse("") == ""
    assert bwlimit.flags("", LA, datetime.now(UTC)) == []
    assert bwlimit.flags("1M", LA, datetime.now(UTC)) == ["--bwlimit", "1M"]


def test_timetable_goes_to_rclone_in_utc_day_by_day() -> None:
    winter = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)  # PST, UTC-8
    got = bwlimit.for_rclone("08:00,1M 19:00,off", LA, winter).split()
    assert len(got) == 14
    assert "Mon-16:00,1M" in got and "Tue-03:00,off" in got  # Mon 19:00 PST = Tue 03:00 UTC
    assert "Mon-03:00,off" in got  # Sunday's 19:00
    # The week of the spring-forward Sunday (2026-03-08): Sunday runs on PDT (UTC-7).
    dst = bwlimit.for_rclone("08:00,1M", LA, datetime(2026, 3, 4, tzinfo=UTC)).split()
    assert "Sun-15:00,1M" in dst and "Sat-16:00,1M" in dst
    assert bwlimit.for_rclone("Fri-23:30,off", LA, winter) == "Sat-07:30,off"


def test_a_bad_limit_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    def load(rclone_limit: str, job_limit: str) -> None:
        path = tmp_path / "c.toml"
        path.write_text(f'[s3]\nbucket = "bkt"\n[rclone]\nbwlimit = "{rclone_limit}"\n'
                        '[jobs.r]\nschedule = "* * * * *"\nsource = "/x"\nprefix = "r"\n'
                        f'bwlimit = "{job_limit}"\n')
        config_mod.load(path)

    with pytest.raises(ConfigError, match=r"rclone\.bwlimit: timetable entry '8:00,1M'"):
        load("8:00,1M", "")
    with pytest.raises(ConfigError, match=r"jobs\.r\.bwlimit: rate: '10MB' is not a rate"):
        load("", "10MB")


def _rclone_run(docker_client, rclone_image: str, tmp_path: Path, args: list[str]):
    spec = docker_runner.Spec(
        image=rclone_image, command=["--config", "", *args, "lsf", "/source/"],
        mounts=[docker_runner.file_mount(str(tmp_path), "/source")], env={"HOME": "/tmp"},
        labels={docker_runner.LABEL_JOB: "bwlimit-test"}, network_mode="host")
    return docker_runner.run_oneshot(docker_client, spec, 60)


def test_the_real_rclone_takes_what_we_accept_and_what_we_convert(docker_client, rclone_image,
                                                                  tmp_path) -> None:
    now = datetime.now(UTC)
    values = [*VALID, *(bwlimit.for_rclone(v, LA, now) for v in VALID)]
    for value in values:
        result = _rclone_run(docker_client, rclone_image, tmp_path, ["--bwlimit", value])
        assert result.exit_code == 0, (value, result.stderr)


# -- a real limit ----------------------------------------------------------------------------

SIZE = 1536 * 1024  # 1.5 MiB at 512 KiB/s: at least 3 s (rclone starts with an empty bucket)


@pytest.fixture
def one_receipt(tmp_path: Path) -> Path:
    folder = tmp_path / "receipts"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(os.urandom(SIZE))
    return settle(folder)


def _sync_run(monkeypatch, cfg, docker_client):
    """run_job in-process; returns its report and the sync container's command and seconds."""
    seen = {}
    real = docker_runner.run_oneshot

    def watching(client, spec, timeout_s):
        result = real(client, spec, timeout_s)
        if spec.labels.get(docker_runner.LABEL_STEP) == "sync":
            seen["command"], seen["seconds"] = list(spec.command), result.duration_s
        return result

    monkeypatch.setattr(docker_runner, "run_oneshot", watching)
    report = pipeline.run_job(cfg, "receipts-upload", client=docker_client)
    assert report.result == SUCCESS, report.message
    assert report.bytes == SIZE
    return seen["command"], seen["seconds"]


def _limit(command: list[str]) -> str | None:
    return command[command.index("--bwlimit") + 1] if "--bwlimit" in command else None


def test_a_real_limit_slows_the_upload(docker_client, s3server, bucket, write_config, tmp_path,
                                       one_receipt, monkeypatch) -> None:
    cfg = config_mod.load(write_config(tmp_path, s3server, bucket, receipts_dir=one_receipt,
                                       rclone={"bwlimit": "512k"}))
    command, seconds = _sync_run(monkeypatch, cfg, docker_client)
    assert _limit(command) == "512k"
    assert seconds >= 0.95 * SIZE / (512 * 1024), f"{seconds:.2f} s"


def test_the_timetable_entry_in_force_applies_and_a_job_can_opt_out(
        docker_client, s3server, bucket, write_config, tmp_path, one_receipt,
        monkeypatch) -> None:
    local = datetime.now(ZoneInfo(LA))
    table = (f"{local - timedelta(hours=1):%H:%M},512k {local + timedelta(hours=1):%H:%M},off")
    cfg = config_mod.load(write_config(tmp_path, s3server, bucket, receipts_dir=one_receipt,
                                       timezone=LA, rclone={"bwlimit": table}))
    command, seconds = _sync_run(monkeypatch, cfg, docker_client)
    assert _limit(command) == bwlimit.for_rclone(table, LA, datetime.now(UTC))
    assert seconds >= 0.95 * SIZE / (512 * 1024), f"{seconds:.2f} s"

    (one_receipt / "scan.pdf").write_bytes(os.urandom(SIZE))  # changed: uploaded again
    settle(one_receipt)
    cfg = config_mod.load(write_config(tmp_path, s3server, bucket, receipts_dir=one_receipt,
                                       timezone=LA, rclone={"bwlimit": table},
                                       jobs={"receipts-upload": {"bwlimit": "off"}}))
    command, seconds = _sync_run(monkeypatch, cfg, docker_client)
    assert _limit(command) == "off"
    assert seconds < SIZE / (512 * 1024), f"{seconds:.2f} s"  # unlimited on loopback
