"""Config validation: every error names the file, the key and the problem."""

from pathlib import Path

import pytest

from supervisor import config
from supervisor.config import ConfigError, Source

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
MINIMAL = """
[s3]
bucket = "ardua-backups"
[jobs.db-upload]
schedule = "15 * * * *"
source = "volume:pg_backups"
prefix = "postgres"
"""


def parse(text: str) -> config.Config:
    return config.parse(text, Path("/etc/ab.toml"))


def test_example_config_loads_with_documented_values() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.timezone == "America/Los_Angeles"
    assert cfg.rclone.image == "rclone/rclone:1.75.2"
    assert cfg.s3.provider == "AWS"
    db = cfg.job("db-upload")
    assert db.source == Source("volume", "pg_backups")
    assert db.timeout_s == 45 * 60
    assert cfg.job("receipts-upload").source == Source("path", "/data/receipts")


def test_defaults_of_a_minimal_config() -> None:
    cfg = parse(MINIMAL)
    assert cfg.timezone == "UTC"
    assert cfg.state_dir == Path("/var/lib/ardua-backup")
    assert cfg.s3.credentials_file is None  # IAM role / default chain
    assert cfg.rclone.network_mode == "bridge"
    assert cfg.job("db-upload").timeout_s == 3600
    assert cfg.job("db-upload").catch_up is True


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[rclone]\nimgae = 'x'\n", "/etc/ab.toml: rclone.imgae: unknown key"),
        ("[s3]\nbucket = 'b'\n", "not valid TOML"),
        ("[jobs.x]\nschedule = '61 * * * *'\nsource='/a'\nprefix='x'\n",
         "jobs.x.schedule: '61 * * * *' is not a valid cron expression"),
        ("[jobs.x]\nschedule = '* * * *'\nsource='/a'\nprefix='x'\n",
         "jobs.x.schedule: '* * * *' is not a 5-field cron expression"),
        ("[jobs.x]\nschedule = '* * * * *'\nsource='rel/path'\nprefix='x'\n",
         "jobs.x.source: 'rel/path' must be 'volume:NAME' or an absolute host path"),
        ("[jobs.x]\nschedule = '* * * * *'\nsource='/a'\nprefix='x'\ntimeout='soon'\n",
         "jobs.x.timeout: 'soon' is not a duration"),
        ("[jobs.x]\nschedule = '* * * * *'\nsource='/a'\nprefix='postgres/sub'\n",
         "overlap; a sync would delete the other job's objects"),
        ("[jobs.x]\nschedule = '* * * * *'\nsource='/a'\nprefix='../x'\n",
         "jobs.x.prefix: '../x' is not a usable S3 prefix"),
        ("[jobs.x]\nsource='/a'\nprefix='x'\n", "jobs.x.schedule: is required"),
    ],
)
def test_errors_name_file_key_and_problem(extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(MINIMAL + extra)
    assert expected in str(err.value)
    assert str(err.value).startswith("/etc/ab.toml")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ('timezone = "Mars/Base"\n', "timezone: unknown time zone 'Mars/Base'"),
        ('state_dir = "var/lib"\n', "state_dir: 'var/lib' must be an absolute path"),
        ('timezone = 5\n', "timezone: must be a string"),
        ('colour = "blue"\n', "colour: unknown key"),
    ],
)
def test_top_level_errors(top: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse(top + MINIMAL)


def test_s3_errors() -> None:
    with pytest.raises(ConfigError, match=r"s3.bucket: 'Bad_Bucket' is not a valid S3 bucket"):
        parse(MINIMAL.replace('"ardua-backups"', '"Bad_Bucket"'))
    with pytest.raises(ConfigError, match=r"s3.credentials_file: 'creds' must be an absolute"):
        parse(MINIMAL.replace("[s3]\n", "[s3]\ncredentials_file = 'creds'\n"))
    with pytest.raises(ConfigError, match=r"s3.endpoint_url: .* must start with http"):
        parse(MINIMAL.replace("[s3]\n", "[s3]\nendpoint_url = '127.0.0.1:9000'\n"))


def test_wrong_types_are_named() -> None:
    with pytest.raises(ConfigError, match=r"jobs.db-upload.catch_up: must be a bool, got 'yes'"):
        parse(MINIMAL + 'catch_up = "yes"\n')


def test_missing_file_and_unknown_job(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="no job named 'db' \\(configured: db-upload\\)"):
        parse(MINIMAL).job("db")


def test_custom_endpoint_selects_generic_provider() -> None:
    cfg = parse(MINIMAL.replace("[s3]\n", "[s3]\nendpoint_url = 'http://127.0.0.1:9000/'\n"))
    assert cfg.s3.endpoint_url == "http://127.0.0.1:9000"
    assert cfg.s3.provider == "Other"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("45m", 2700), ("2h", 7200), ("1h30m", 5400), (30, 30), ("1.5h", 5400)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "-5m", "0s", "5 minutes"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_duration(text)


def test_resolve_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_VAR, "/from/env.toml")
    assert config.resolve_path("/cli.toml") == Path("/cli.toml")
    assert config.resolve_path(None) == Path("/from/env.toml")
    monkeypatch.delenv(config.ENV_VAR)
    assert config.resolve_path(None) == config.DEFAULT_PATH
