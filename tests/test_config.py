"""Config validation: every error names the file, the key and the problem."""

from pathlib import Path

import pytest

from supervisor.config import load as config
from supervisor.config.load import ConfigError, Source
from tests.harness.configs import MINIMAL

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def parse(text: str) -> config.Config:
    return config.parse(text, Path("/etc/ab.toml"))


def test_example_config_loads_with_documented_values() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.timezone == "America/Los_Angeles"
    assert cfg.rclone.image == "rclone/rclone:1.75.2"
    assert cfg.destination().provider == "AWS"
    db = cfg.job("db-upload")
    assert db.source == Source("volume", "pg_backups")
    assert db.timeout_s == 45 * 60
    assert cfg.job("receipts-upload").source == Source("path", "/data/receipts")


def test_defaults_of_a_minimal_config() -> None:
    cfg = parse(MINIMAL)
    assert cfg.timezone == "UTC"
    assert cfg.state_dir == Path("/var/lib/ardua-backup")
    assert cfg.destination().credentials_file is None  # IAM role / default chain
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
    assert cfg.destination().endpoint_url == "http://127.0.0.1:9000"
    assert cfg.destination().provider == "Other"


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


EXAMPLE_TEXT = EXAMPLE.read_text()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # Issue 8 item 6: a list where a duration belongs killed the daemon with AttributeError.
        ('timeout = "45m"', 'timeout = ["45m"]',
         "jobs.db-upload.timeout: must be a duration like '45m', got an array ['45m']"),
        ('timeout = "45m"', "timeout = 2026-01-02", "got a date 2026-01-02"),
        ('timeout = "45m"', "timeout = {m = 45}", "jobs.db-upload.timeout: must be a duration"),
        ('quiet_period = "2m"', "quiet_period = 03:04:05",
         "guard.quiet_period: must be a duration like '45m', got a time 03:04:05"),
        ('timeout = "45m"', "timeout = nan", "jobs.db-upload.timeout: must be a duration"),
        ('timeout = "45m"', "timeout = inf", "jobs.db-upload.timeout: must be a duration"),
        ('timeout = "45m"', 'timeout = "99999999999d"', "is longer than ten years"),
        ('timeout = "45m"', "timeout = 1" + "0" * 40, "is longer than ten years"),
        ('state_dir = "/var/lib/ardua-backup"', "state_dir = 1979-05-27T07:32:00Z",
         "state_dir: must be an absolute path, got a datetime 1979-05-27T07:32:00+00:00"),
        ('state_dir = "/var/lib/ardua-backup"', 'state_dir = "/var/\\u0000lib"',
         r"state_dir: '/var/\x00lib' contains a control character"),
        ('timezone = "America/Los_Angeles"', "timezone = 1979-05-27",
         "timezone: must be a string like 'America/Los_Angeles', got a date"),
        ('schedule = "15 * * * *"', 'schedule = ["15 * * * *"]',
         "jobs.db-upload.schedule: must be a 5-field cron expression string, got an array"),
        ('source = "volume:pg_backups"', "source = {volume = 'pg_backups'}",
         "jobs.db-upload.source: must be 'volume:NAME' or an absolute host path, got a table"),
        ('prefix = "postgres"', "prefix = 5", "jobs.db-upload.prefix: must be a string, got 5"),
        ("catch_up = true", "catch_up = 1", "jobs.db-upload.catch_up: must be a bool, got 1"),
        ('bucket = "ardua-backups"', "bucket = ['ardua-backups']",
         "destinations.primary.bucket: must be a string, got an array"),
        ('region = "us-west-2"', 'region = ""',
         "destinations.primary.region: '' is not an S3 region name"),
        ('endpoint_url = ""', 'endpoint_url = "http://"',
         "destinations.primary.endpoint_url: 'http://' is not a"),
        ('endpoint_url = ""', 'endpoint_url = "http://h:99999"', "Port out of range"),
        ('image = "rclone/rclone:1.75.2"', 'image = ""', "rclone.image: '' is not a Docker image"),
        ('"http://127.0.0.1:8080/"', '"http://[::1"', "health.db_health_url: 'http://[::1' is not"),
        ("port = 0", "port = 99999999999999999999999", "metrics.port: 99999999999999999999999 is"),
        ("port = 0", "port = true", "metrics.port: must be an integer, got true"),
        ("port = 55432", "port = 55432.0", "drill.port: must be an integer, got 55432.0"),
        ("min = 1", "min = nan", "drill.checks[0].min: must be a finite number, got nan"),
        ("min = 1", "min = 1" + "0" * 400, "drill.checks[0].min: an integer of 401 digits is too"),
        ("min = 1", 'min = "1"', "drill.checks[0].min: must be a number, got '1'"),
        ("max = 100000000", "max = 0.5", "drill.checks[0].max: 0.5 is below min 1"),
        ('max_age = "3d"', "max_age = [3]", "drill.checks[1].max_age: must be a duration"),
        ("[jobs.receipts-upload]", '[jobs."bad\\nname"]',
         r"[jobs.'bad\nname']: job names use a-z, 0-9, '-' and '_'"),
        ("receipts_sample = 20", '"odd\\tkey" = 1', r"drill.'odd\tkey': unknown key"),
        ('schedule = "15 * * * *"', 'schedule = "61 * * * *\\n"',
         r"jobs.db-upload.schedule: '61 * * * *\n' is not a valid cron expression"),
    ],
)
def test_every_wrong_type_or_value_is_a_config_error_naming_the_key(
    old: str, new: str, expected: str
) -> None:
    assert old in EXAMPLE_TEXT
    with pytest.raises(ConfigError) as err:
        parse(EXAMPLE_TEXT.replace(old, new, 1))
    message = str(err.value)
    assert message.startswith("/etc/ab.toml: ") and expected in message, message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jobs = 3\n[s3]\nbucket = 'ardua-backups'\n", "[jobs] must be a table, got 3"),
        ('health = "x"\n' + MINIMAL, "[health] must be a table, got 'x'"),
        ("s3 = [1]\n[jobs.a]\nschedule='* * * * *'\n", "[s3] must be a table, got an array [1]"),
        (MINIMAL + "[jobs.other]\n", "jobs.other.schedule: is required"),
        (MINIMAL.replace("[jobs.db-upload]", "[jobs]\ndb-upload = 5\n[jobs.x]"),
         "[jobs.db-upload] must be a table, got 5"),
        (MINIMAL + "[drill]\nchecks = 'x'\n",
         "drill.checks: must be an array of tables: [[drill.checks]], got 'x'"),
        (MINIMAL + "[drill]\nchecks = [{sql = 'SELECT 1', min = 1}, 7]\n",
         "[drill.checks[1]] must be a table, got 7"),
        (MINIMAL + "[drill]\nschedule = 0\n", "drill.schedule: must be a 5-field cron"),
        ("x = " + "[" * 600 + "]" * 600 + "\n", "not valid TOML: arrays or tables nested too"),
        ("x = " + "1" * 5000 + "\n", "not valid TOML: Exceeds the limit (4300 digits)"),
    ],
)
def test_wrong_shapes_are_config_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert str(err.value).startswith("/etc/ab.toml: ") and expected in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_schedule_whitespace_is_normalised_to_one_line() -> None:
    cfg = parse(MINIMAL.replace('"15 * * * *"', '"15\\t*  * * *"'))
    assert cfg.job("db-upload").schedule == "15 * * * *"
