"""Load and validate the TOML config file into immutable dataclasses.

Every error names the file, the key and what is wrong; unknown keys are errors so a typo can
never silently fall back to a default.
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

DEFAULT_PATH = Path("/etc/ardua-backup/config.toml")
ENV_VAR = "ARDUA_BACKUP_CONFIG"
DEFAULT_RCLONE_IMAGE = "rclone/rclone:1.75.2"
DRILL_JOB = "restore-drill"  # the drill's name in the schedule, ledger, logs and metrics
# The official image; its major must be >= the pg_dump that wrote the dumps.
DEFAULT_DRILL_IMAGE = "postgres:15"
DEFAULT_DB_JOB = "db-upload"
DEFAULT_RECEIPTS_JOB = "receipts-upload"

_JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(Exception):
    """A config problem, phrased as one line that names the file and the key."""


@dataclass(frozen=True)
class Source:
    """Where a job reads from: a Docker named volume or an absolute host directory."""

    kind: str  # "volume" or "path"
    location: str

    def __str__(self) -> str:
        return f"volume:{self.location}" if self.kind == "volume" else self.location


@dataclass(frozen=True)
class S3Config:
    bucket: str
    region: str
    endpoint_url: str
    credentials_file: Path | None
    profile: str

    @property
    def provider(self) -> str:
        """rclone's S3 provider: AWS unless a custom endpoint points elsewhere."""
        return "Other" if self.endpoint_url else "AWS"


@dataclass(frozen=True)
class RcloneConfig:
    image: str
    network_mode: str


@dataclass(frozen=True)
class JobConfig:
    name: str
    schedule: str
    source: Source
    prefix: str
    timeout_s: float
    catch_up: bool
    heartbeat_url: str = ""  # healthchecks.io-style ping URL; "" = no heartbeat


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds and sources of `status`. The defaults fit a daily dump and hourly uploads."""

    dump_job: str | None = None  # the job whose source is the postgres-backup-local volume
    dump_dir: str = "last"  # where in that source the timestamped dumps are written
    databases: tuple[str, ...] = ()  # must each have a fresh dump; () = every one seen in dump_dir
    min_size_share: float = 0.5  # a newest dump below this share of the previous one is shrunken
    dump_max_age_s: float = 26 * 3600.0
    sentinel_max_age_s: float = 2 * 3600.0
    drill_max_age_s: float = 8 * 86400.0
    db_container: str = "db-backup"  # "" = do not check the container
    db_health_url: str = ""  # go-cron endpoint of the dump container; "" = not checked


@dataclass(frozen=True)
class GuardConfig:
    """Limits a sync must stay within, checked before the sync container starts."""

    max_delete_share: float = 0.5  # of the objects in the mirror
    max_shrink_share: float = 0.5  # of the bytes in the mirror
    quiet_period_s: float = 120.0  # a source file younger than this may still be written


@dataclass(frozen=True)
class MetricsConfig:
    textfile: Path | None = None  # node_exporter textfile-collector file; None = not written
    port: int = 0  # loopback port of the daemon's /metrics; 0 = not served


@dataclass(frozen=True)
class DrillCheck:
    """One SQL check run against the restored database.

    The query returns one value: a number compared with min/max, or (with max_age_s) a
    timestamp that must be no older than max_age_s.
    """

    name: str
    sql: str
    min: float | None = None
    max: float | None = None
    max_age_s: float | None = None
    database: str = ""  # where it runs; "" = the one database the drill restored


@dataclass(frozen=True)
class DrillConfig:
    schedule: str  # "" = only on demand (`ardua-backup drill`)
    image: str
    network_mode: str
    port: int
    timeout_s: float
    db_job: str
    receipts_job: str  # "" = no receipts spot check
    receipts_sample: int
    checks: tuple[DrillCheck, ...] = ()


@dataclass(frozen=True)
class Scheduled:
    schedule: str
    catch_up: bool


@dataclass(frozen=True)
class Config:
    path: Path
    timezone: str
    state_dir: Path
    stop_grace_s: float
    s3: S3Config
    rclone: RcloneConfig
    drill: DrillConfig
    jobs: dict[str, JobConfig] = field(default_factory=dict)
    health: HealthConfig = field(default_factory=HealthConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def scheduled(self) -> dict[str, Scheduled]:
        """What the daemon fires: every upload job and, when it has a schedule, the drill."""
        plan = {name: Scheduled(job.schedule, job.catch_up) for name, job in self.jobs.items()}
        if self.drill.schedule:
            plan[DRILL_JOB] = Scheduled(self.drill.schedule, True)
        return plan

    def job(self, name: str) -> JobConfig:
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise ConfigError(f"{self.path}: no job named '{name}' (configured: {known})")
        return self.jobs[name]


def parse_duration(text: str | int | float) -> float:
    """'45m', '2h', '1h30m', '90s' or a number of seconds -> seconds (> 0)."""
    if isinstance(text, bool):
        raise ValueError("expected a duration like '45m'")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        spec = text.strip().replace(" ", "")
        parts = _DURATION.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise ValueError(f"'{text}' is not a duration like '90s', '45m', '2h' or '1h30m'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return seconds


class _Table:
    """One TOML table being read: remembers what was consumed so leftovers are reported."""

    def __init__(self, path: Path, name: str, data: Any):
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        self.path, self.name, self.data = path, name, dict(data)

    def where(self, key: str) -> str:
        return f"{self.path}: {self.name + '.' if self.name else ''}{key}"

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {problem}")

    def take(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is required")
            return default
        value = self.data.pop(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.error(key, f"must be a {kind.__name__}, got {value!r}")
        return value

    def take_parsed(self, key: str, parse: Any, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is required")
            return default
        raw = self.data.pop(key)
        try:
            return parse(raw)
        except (ValueError, TypeError) as exc:
            raise self.error(key, str(exc)) from None

    def table(self, key: str, required: bool = True) -> _Table:
        if key not in self.data and not required:
            return _Table(self.path, self._child(key), {})
        if key not in self.data:
            raise ConfigError(f"{self.path}: [{self._child(key)}] is required")
        return _Table(self.path, self._child(key), self.data.pop(key))

    def _child(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def done(self) -> None:
        for key in self.data:
            raise self.error(key, "unknown key (see config.example.toml for the valid ones)")


def _parse_timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string like 'America/Los_Angeles', got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{value}'") from None
    return value


def _parse_schedule(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a 5-field cron expression string, got {value!r}")
    if len(value.split()) != 5:
        raise ValueError(f"'{value}' is not a 5-field cron expression (min hour dom month dow)")
    try:
        CronSim(value, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"'{value}' is not a valid cron expression: {exc}") from None
    return value


def _parse_source(value: Any) -> Source:
    if not isinstance(value, str) or not value:
        raise ValueError("must be 'volume:NAME' or an absolute host path")
    if value.startswith("volume:"):
        name = value.removeprefix("volume:")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]+", name):
            raise ValueError(f"'{name}' is not a valid Docker volume name")
        return Source("volume", name)
    if not os.path.isabs(value):
        raise ValueError(f"'{value}' must be 'volume:NAME' or an absolute host path")
    return Source("path", os.path.normpath(value))


def _parse_prefix(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    prefix = value.strip("/")
    if not prefix or any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"'{value}' is not a usable S3 prefix (like 'postgres')")
    return prefix


def _parse_share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"must be a number above 0 and at most 1 (0.5 = 50 %), got {value!r}")
    return float(value)


def _parse_databases(value: Any) -> tuple[str, ...]:
    # postgres-backup-local's POSTGRES_DB names, as its dump file names start with them.
    if not isinstance(value, list) or not all(
            isinstance(v, str) and re.fullmatch(r"[^/\s]+", v) for v in value):
        raise ValueError(f"must be a list of database names like ['ardua', 'shop'], got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"names a database twice: {value!r}")
    return tuple(value)


def _parse_url(value: Any) -> str:
    if not isinstance(value, str) or (value and not re.match(r"^https?://[^\s]+$", value)):
        raise ValueError(f"must be an http:// or https:// URL or empty, got {value!r}")
    return value.rstrip("/")


def _read_s3(t: _Table) -> S3Config:
    creds = t.take("credentials_file", str, "")
    if creds and not os.path.isabs(creds):
        raise t.error("credentials_file", f"'{creds}' must be an absolute path")
    s3 = S3Config(
        bucket=t.take("bucket", str),
        region=t.take("region", str, "us-east-1"),
        endpoint_url=t.take("endpoint_url", str, "").rstrip("/"),
        credentials_file=Path(creds) if creds else None,
        profile=t.take("profile", str, "default"),
    )
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", s3.bucket):
        raise t.error("bucket", f"'{s3.bucket}' is not a valid S3 bucket name")
    if s3.endpoint_url and not re.match(r"^https?://", s3.endpoint_url):
        raise t.error("endpoint_url", f"'{s3.endpoint_url}' must start with http:// or https://")
    t.done()
    return s3


def _read_rclone(t: _Table) -> RcloneConfig:
    rc = RcloneConfig(
        image=t.take("image", str, DEFAULT_RCLONE_IMAGE),
        network_mode=t.take("network_mode", str, "bridge"),
    )
    t.done()
    return rc


def _read_job(t: _Table, name: str) -> JobConfig:
    if name == DRILL_JOB:
        raise ConfigError(f"{t.path}: [jobs.{name}]: '{DRILL_JOB}' is reserved for the drill")
    if not _JOB_NAME.match(name):
        raise ConfigError(f"{t.path}: [jobs.{name}]: job names use a-z, 0-9, '-' and '_'")
    job = JobConfig(
        name=name,
        schedule=t.take_parsed("schedule", _parse_schedule),
        source=t.take_parsed("source", _parse_source),
        prefix=t.take_parsed("prefix", _parse_prefix),
        timeout_s=t.take_parsed("timeout", parse_duration, 3600.0),
        catch_up=t.take("catch_up", bool, True),
        heartbeat_url=t.take_parsed("heartbeat_url", _parse_url, ""),
    )
    t.done()
    return job


def _read_health(t: _Table, jobs: dict[str, JobConfig]) -> HealthConfig:
    # Default: the job named like the design's, when there is one.
    dump_job = t.take("dump_job", str, "db-upload" if "db-upload" in jobs else "")
    if dump_job and dump_job not in jobs:
        raise t.error("dump_job", f"'{dump_job}' is not a configured job")
    dump_dir = t.take_parsed("dump_dir", _parse_prefix, "last")
    health = HealthConfig(
        dump_job=dump_job or None,
        dump_dir=dump_dir,
        databases=t.take_parsed("databases", _parse_databases, ()),
        min_size_share=t.take_parsed("min_size_share", _parse_share, 0.5),
        dump_max_age_s=t.take_parsed("dump_max_age", parse_duration, 26 * 3600.0),
        sentinel_max_age_s=t.take_parsed("sentinel_max_age", parse_duration, 2 * 3600.0),
        drill_max_age_s=t.take_parsed("drill_max_age", parse_duration, 8 * 86400.0),
        db_container=t.take("db_container", str, "db-backup"),
        db_health_url=t.take_parsed("db_health_url", _parse_url, ""),
    )
    t.done()
    return health


def _read_guard(t: _Table) -> GuardConfig:
    guard = GuardConfig(
        max_delete_share=t.take_parsed("max_delete_share", _parse_share, 0.5),
        max_shrink_share=t.take_parsed("max_shrink_share", _parse_share, 0.5),
        quiet_period_s=t.take_parsed("quiet_period", parse_duration, 120.0),
    )
    t.done()
    return guard


def _read_metrics(t: _Table) -> MetricsConfig:
    textfile = t.take("textfile", str, "")
    if textfile and not (os.path.isabs(textfile) and textfile.endswith(".prom")):
        raise t.error("textfile", f"'{textfile}' must be an absolute path ending in .prom")
    port = t.take("port", int, 0)
    if not 0 <= port <= 65535:
        raise t.error("port", f"{port} is not a TCP port (0 = off)")
    t.done()
    return MetricsConfig(Path(textfile) if textfile else None, port)


def _read_check(t: _Table, index: int) -> DrillCheck:
    check = DrillCheck(
        name=t.take("name", str, f"check {index + 1}"),
        sql=t.take("sql", str),
        min=t.take("min", float, None),
        max=t.take("max", float, None),
        max_age_s=t.take_parsed("max_age", parse_duration, None),
        database=t.take("database", str, ""),
    )
    t.done()
    if not check.sql.strip():
        raise t.error("sql", "must not be empty")
    if check.max_age_s is not None and (check.min is not None or check.max is not None):
        raise t.error("max_age", "a check compares a timestamp (max_age) or a number (min/max)")
    if check.max_age_s is None and check.min is None and check.max is None:
        raise t.error("sql", "needs a threshold: min, max or max_age")
    return check


def _read_drill(t: _Table, rclone: RcloneConfig, jobs: dict[str, JobConfig]) -> DrillConfig:
    explicit = {key for key in ("db_job", "receipts_job") if key in t.data}
    raw_checks = t.data.pop("checks", [])
    if not isinstance(raw_checks, list):
        raise t.error("checks", "must be an array of tables: [[drill.checks]]")
    drill = DrillConfig(
        schedule=t.take_parsed("schedule", _parse_schedule, ""),
        image=t.take("image", str, DEFAULT_DRILL_IMAGE),
        network_mode=t.take("network_mode", str, rclone.network_mode),
        port=t.take("port", int, 55432),
        timeout_s=t.take_parsed("timeout", parse_duration, 3600.0),
        db_job=t.take("db_job", str, DEFAULT_DB_JOB),
        receipts_job=t.take("receipts_job", str, DEFAULT_RECEIPTS_JOB),
        receipts_sample=t.take("receipts_sample", int, 20),
        checks=tuple(
            _read_check(_Table(t.path, f"drill.checks[{i}]", raw), i)
            for i, raw in enumerate(raw_checks)
        ),
    )
    t.done()
    if not 1024 <= drill.port <= 65535:
        raise t.error("port", f"{drill.port} is not a port between 1024 and 65535")
    if drill.receipts_sample < 0:
        raise t.error("receipts_sample", "must be 0 or more")
    # Defaults may name jobs a config does not have (checked when a drill runs); a name the
    # operator wrote must exist.
    for key in explicit:
        name = getattr(drill, key)
        if name and name not in jobs:
            raise t.error(key, f"no job named '{name}' (configured: {', '.join(sorted(jobs))})")
    return drill


def _check_prefixes(path: Path, jobs: dict[str, JobConfig]) -> None:
    # A sync mirrors its whole prefix, so nested prefixes would delete each other's objects.
    items = sorted(jobs.values(), key=lambda j: j.prefix)
    for a, b in itertools.pairwise(items):
        if b.prefix == a.prefix or b.prefix.startswith(a.prefix + "/"):
            raise ConfigError(
                f"{path}: jobs.{a.name}.prefix '{a.prefix}' and jobs.{b.name}.prefix "
                f"'{b.prefix}' overlap; a sync would delete the other job's objects"
            )


def parse(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    root = _Table(path, "", data)
    timezone = root.take_parsed("timezone", _parse_timezone, "UTC")
    state_dir = root.take("state_dir", str, "/var/lib/ardua-backup")
    if not os.path.isabs(state_dir):
        raise root.error("state_dir", f"'{state_dir}' must be an absolute path")
    # SIGTERM waits this long for a running sync before stopping its container; the unit's
    # TimeoutStopSec must stay above it (+ 10 s container stop + margin).
    stop_grace_s = root.take_parsed("stop_grace", parse_duration, 60.0)
    s3 = _read_s3(root.table("s3"))
    rclone = _read_rclone(root.table("rclone", required=False))
    jobs_table = root.table("jobs")
    jobs = {name: _read_job(jobs_table.table(name), name) for name in list(jobs_table.data)}
    if not jobs:
        raise ConfigError(f"{path}: [jobs] defines no job")
    _check_prefixes(path, jobs)
    health = _read_health(root.table("health", required=False), jobs)
    guard = _read_guard(root.table("guard", required=False))
    metrics = _read_metrics(root.table("metrics", required=False))
    drill = _read_drill(root.table("drill", required=False), rclone, jobs)
    root.done()
    return Config(
        path, timezone, Path(state_dir), stop_grace_s, s3, rclone, drill, jobs, health, guard,
        metrics,
    )


def resolve_path(cli_path: str | None) -> Path:
    """--config beats $ARDUA_BACKUP_CONFIG beats the default path."""
    return Path(cli_path or os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (set --config or ${ENV_VAR})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse(text, path)
