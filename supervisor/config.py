"""Load and validate the TOML config file into immutable dataclasses.

Every error names the file, the key and what is wrong; unknown keys are errors so a typo can
never silently fall back to a default.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
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
# sysexits.h EX_CONFIG: the exit code of every command for an invalid config (`status` excepted:
# 3, UNKNOWN, by the monitoring-plugin convention). The unit has RestartPreventExitStatus=78.
EXIT_CONFIG = 78

_JOB_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Ten years: above any threshold here, far below what timers and datetime arithmetic can take.
MAX_DURATION_S = 3650 * 86400.0
# botocore's own check (an invalid region is a ValueError when the client is made).
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


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


def _key(key: str) -> str:
    """A key as an error message shows it: bare, or quoted with its odd characters escaped."""
    return key if _BARE_KEY.fullmatch(key) else repr(key)


def _toml_kind(value: Any) -> str:
    """The TOML type of a value tomllib returned, as an error message names it."""
    for kind, name in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "float"),
                       (list, "array"), (dict, "table"), (datetime, "datetime"), (date, "date"),
                       (time, "time")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_inline(item) for item in value[:5]) + (
            ", ...]" if len(value) > 5 else "]")
    if isinstance(value, dict):
        items = [f"{_key(k)} = {_inline(v)}" for k, v in list(value.items())[:5]]
        return "{" + ", ".join(items) + (", ...}" if len(value) > 5 else "}")
    return repr(value)  # strings quoted, with newlines and other control characters escaped


def _show(value: Any, limit: int = 60) -> str:
    """A config value in an error message: one line, short, and its TOML type when that is not
    obvious from the text (`'45m'`, `5`, `true`, `an array ['45m']`, `a date 2026-01-02`)."""
    text = _inline(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    kind = _toml_kind(value)
    if kind in ("boolean", "string", "integer", "float"):
        return text
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} {text}"


def _string(value: Any, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what}, got {_show(value)}")
    return value


def _plain(value: Any, what: str) -> str:
    """A string that must not contain control characters (a name, an image, a path)."""
    text = _string(value, what)
    if any(not ch.isprintable() for ch in text):
        raise ValueError(f"{_show(text)} contains a control character")
    return text


def parse_duration(text: Any) -> float:
    """'45m', '2h', '1h30m', '90s' or a number of seconds -> seconds (> 0, at most ten years)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"must be a duration like '45m', got {_show(text)}")
    if isinstance(text, str):
        spec = text.strip().replace(" ", "")
        parts = _DURATION.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise ValueError(f"{_show(text)} is not a duration like '90s', '45m', '2h' or '1h30m'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    elif isinstance(text, float) and not math.isfinite(text):
        raise ValueError(f"must be a duration like '45m', got {_show(text)}")
    else:
        seconds = float(text) if abs(text) <= MAX_DURATION_S else math.copysign(math.inf, text)
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{_show(text)} is longer than ten years")
    return seconds


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a bool"}


class _Table:
    """One TOML table being read: remembers what was consumed so leftovers are reported."""

    def __init__(self, path: Path, name: str, data: Any):
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [{name}] must be a table, got {_show(data)}")
        self.path, self.name, self.data = path, name, dict(data)

    def where(self, key: str) -> str:
        return f"{self.path}: {self.name + '.' if self.name else ''}{_key(key)}"

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {problem}")

    def take(self, key: str, kind: type, default: Any = ...) -> Any:
        """A str, int, float (an integer is taken too; finite) or bool value."""
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is required")
            return default
        value = self.data.pop(key)
        if isinstance(value, bool) and kind is not bool:
            fits = False  # TOML's true/false is not a number (Python's bool is an int)
        else:
            fits = isinstance(value, int | float if kind is float else kind)
        if not fits:
            raise self.error(key, f"must be {_TYPE_NAMES[kind]}, got {_show(value)}")
        if kind is float:
            try:
                value = float(value)
            except OverflowError:
                raise self.error(key, f"{_show(value)} is too large for a number") from None
            if not math.isfinite(value):
                raise self.error(key, f"must be a finite number, got {_show(value)}")
        return value

    def take_parsed(self, key: str, parse: Any, default: Any = ...) -> Any:
        """The value of `key` through `parse`, whose ValueError says what is wrong with it."""
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is required")
            return default
        raw = self.data.pop(key)
        try:
            return parse(raw)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def table(self, key: str, required: bool = True) -> _Table:
        if key not in self.data and not required:
            return _Table(self.path, self._child(key), {})
        if key not in self.data:
            raise ConfigError(f"{self.path}: [{self._child(key)}] is required")
        return _Table(self.path, self._child(key), self.data.pop(key))

    def array_of_tables(self, key: str) -> list[_Table]:
        """`[[name.key]]` entries (none when absent), each a table of its own."""
        raw = self.data.pop(key, [])
        if not isinstance(raw, list):
            raise self.error(key, f"must be an array of tables: [[{self._child(key)}]], "
                                  f"got {_show(raw)}")
        return [_Table(self.path, f"{self._child(key)}[{i}]", item) for i, item in enumerate(raw)]

    def _child(self, key: str) -> str:
        return f"{self.name}.{_key(key)}" if self.name else _key(key)

    def done(self) -> None:
        for key in self.data:
            raise self.error(key, "unknown key (see config.example.toml for the valid ones)")


def _parse_timezone(value: Any) -> str:
    zone = _string(value, "a string like 'America/Los_Angeles'")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {_show(zone)}") from None
    return zone


def _parse_schedule(value: Any) -> str:
    expr = _string(value, "a 5-field cron expression string")
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{_show(expr)} is not a 5-field cron expression (min hour dom month dow)")
    try:
        CronSim(expr, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"{_show(expr)} is not a valid cron expression: {exc}") from None
    return " ".join(fields)  # one line whatever whitespace separated the fields


def _parse_optional_schedule(value: Any) -> str:
    return "" if value == "" else _parse_schedule(value)


def _parse_source(value: Any) -> Source:
    text = _string(value, "'volume:NAME' or an absolute host path")
    if text.startswith("volume:"):
        name = text.removeprefix("volume:")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]+", name):
            raise ValueError(f"{_show(name)} is not a valid Docker volume name")
        return Source("volume", name)
    if not text or not os.path.isabs(text):
        raise ValueError(f"{_show(text)} must be 'volume:NAME' or an absolute host path")
    return Source("path", os.path.normpath(_plain(text, "a path")))


def _parse_abs_path(value: Any, suffix: str = "") -> str:
    """An absolute path (ending in `suffix`), or "" for "not set"."""
    path = _plain(value, "an absolute path")
    if path and not (os.path.isabs(path) and path.endswith(suffix)):
        ending = f" ending in {suffix}" if suffix else ""
        raise ValueError(f"{_show(path)} must be an absolute path{ending}")
    return path


def _parse_prefix(value: Any) -> str:
    prefix = _plain(value, "a string").strip("/")
    if not prefix or any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"{_show(value)} is not a usable S3 prefix (like 'postgres')")
    return prefix


def _parse_share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"must be a number above 0 and at most 1 (0.5 = 50 %), got {_show(value)}")
    return float(value)


def _parse_databases(value: Any) -> tuple[str, ...]:
    # postgres-backup-local's POSTGRES_DB names, as its dump file names start with them.
    if not isinstance(value, list) or not all(
            isinstance(v, str) and re.fullmatch(r"[^/\s]+", v) for v in value):
        raise ValueError(f"must be a list of database names like ['ardua', 'shop'], "
                         f"got {_show(value)}")
    if len(set(value)) != len(value):
        raise ValueError(f"names a database twice: {_show(value)}")
    return tuple(value)


def _http_url(value: Any) -> str:
    """An http(s) URL with a host (and a valid port, if any); problems as ValueError."""
    url = _plain(value, "an http:// or https:// URL")
    if not re.match(r"https?://", url):
        raise ValueError(f"{_show(url)} must start with http:// or https://")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise ValueError(f"{_show(url)} is not a valid URL: {exc}") from None
    if not parts.hostname or any(ch.isspace() for ch in url):
        raise ValueError(f"{_show(url)} is not a valid URL (no host, or a space in it)")
    return url.rstrip("/")


def _parse_url(value: Any) -> str:
    """An http(s) URL or "" (not set)."""
    if value == "":
        return ""
    if not isinstance(value, str):
        raise ValueError(f"must be an http:// or https:// URL or empty, got {_show(value)}")
    return _http_url(value)


def _parse_image(value: Any) -> str:
    image = _plain(value, "a Docker image reference like 'rclone/rclone:1.75.2'")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*", image):
        raise ValueError(f"{_show(image)} is not a Docker image reference like "
                         f"'rclone/rclone:1.75.2'")
    return image


def _parse_docker_name(value: Any) -> str:
    """A Docker network mode or container name ('bridge', 'host', 'container:NAME', ...)."""
    name = _plain(value, "a string")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", name):
        raise ValueError(f"{_show(name)} is not a Docker name")
    return name


def _parse_container(value: Any) -> str:
    """A container name, or "" (do not check)."""
    return "" if value == "" else _parse_docker_name(value)


def _read_s3(t: _Table) -> S3Config:
    creds = t.take_parsed("credentials_file", _parse_abs_path, "")
    bucket = t.take_parsed("bucket", lambda v: _string(v))
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise t.error("bucket", f"{_show(bucket)} is not a valid S3 bucket name")
    region = t.take_parsed("region", lambda v: _string(v), "us-east-1")
    if not _REGION.fullmatch(region):
        raise t.error("region", f"{_show(region)} is not an S3 region name like 'us-west-2'")
    endpoint_url = t.take_parsed("endpoint_url", lambda v: _string(v), "")
    if endpoint_url:
        try:
            endpoint_url = _http_url(endpoint_url)
        except ValueError as exc:
            raise t.error("endpoint_url", str(exc)) from None
    profile = t.take_parsed("profile", lambda v: _plain(v, "a string"), "default")
    if not profile:
        raise t.error("profile", "must not be empty")
    t.done()
    return S3Config(bucket, region, endpoint_url, Path(creds) if creds else None, profile)


def _read_rclone(t: _Table) -> RcloneConfig:
    rc = RcloneConfig(
        image=t.take_parsed("image", _parse_image, DEFAULT_RCLONE_IMAGE),
        network_mode=t.take_parsed("network_mode", _parse_docker_name, "bridge"),
    )
    t.done()
    return rc


def _read_job(t: _Table, name: str) -> JobConfig:
    if name == DRILL_JOB:
        raise ConfigError(f"{t.path}: [{t.name}]: '{DRILL_JOB}' is reserved for the drill")
    if not _JOB_NAME.fullmatch(name):
        raise ConfigError(f"{t.path}: [{t.name}]: job names use a-z, 0-9, '-' and '_'")
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
        raise t.error("dump_job", f"{_show(dump_job)} is not a configured job")
    dump_dir = t.take_parsed("dump_dir", _parse_prefix, "last")
    health = HealthConfig(
        dump_job=dump_job or None,
        dump_dir=dump_dir,
        databases=t.take_parsed("databases", _parse_databases, ()),
        min_size_share=t.take_parsed("min_size_share", _parse_share, 0.5),
        dump_max_age_s=t.take_parsed("dump_max_age", parse_duration, 26 * 3600.0),
        sentinel_max_age_s=t.take_parsed("sentinel_max_age", parse_duration, 2 * 3600.0),
        drill_max_age_s=t.take_parsed("drill_max_age", parse_duration, 8 * 86400.0),
        db_container=t.take_parsed("db_container", _parse_container, "db-backup"),
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
    textfile = t.take_parsed("textfile", lambda v: _parse_abs_path(v, ".prom"), "")
    port = t.take("port", int, 0)
    if not 0 <= port <= 65535:
        raise t.error("port", f"{_show(port)} is not a TCP port (0 = off)")
    t.done()
    return MetricsConfig(Path(textfile) if textfile else None, port)


def _read_check(t: _Table, index: int) -> DrillCheck:
    check = DrillCheck(
        name=t.take_parsed("name", lambda v: _plain(v, "a string"), f"check {index + 1}"),
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
    if check.min is not None and check.max is not None and check.min > check.max:
        raise t.error("max", f"{check.max:g} is below min {check.min:g}: no value can pass")
    return check


def _read_drill(t: _Table, rclone: RcloneConfig, jobs: dict[str, JobConfig]) -> DrillConfig:
    explicit = {key for key in ("db_job", "receipts_job") if key in t.data}
    checks = t.array_of_tables("checks")
    drill = DrillConfig(
        schedule=t.take_parsed("schedule", _parse_optional_schedule, ""),
        image=t.take_parsed("image", _parse_image, DEFAULT_DRILL_IMAGE),
        network_mode=t.take_parsed("network_mode", _parse_docker_name, rclone.network_mode),
        port=t.take("port", int, 55432),
        timeout_s=t.take_parsed("timeout", parse_duration, 3600.0),
        db_job=t.take("db_job", str, DEFAULT_DB_JOB),
        receipts_job=t.take("receipts_job", str, DEFAULT_RECEIPTS_JOB),
        receipts_sample=t.take("receipts_sample", int, 20),
        checks=tuple(_read_check(check, i) for i, check in enumerate(checks)),
    )
    t.done()
    if not 1024 <= drill.port <= 65535:
        raise t.error("port", f"{_show(drill.port)} is not a port between 1024 and 65535")
    if drill.receipts_sample < 0:
        raise t.error("receipts_sample", "must be 0 or more")
    # Defaults may name jobs a config does not have (checked when a drill runs); a name the
    # operator wrote must exist.
    for key in sorted(explicit):
        name = getattr(drill, key)
        if name and name not in jobs:
            raise t.error(key, f"no job named {_show(name)} "
                               f"(configured: {', '.join(sorted(jobs))})")
    return drill


def _check_prefixes(path: Path, jobs: dict[str, JobConfig]) -> None:
    # A sync mirrors its whole prefix, so nested prefixes would delete each other's objects.
    items = sorted(jobs.values(), key=lambda j: j.prefix)
    for a, b in itertools.pairwise(items):
        if b.prefix == a.prefix or b.prefix.startswith(a.prefix + "/"):
            raise ConfigError(
                f"{path}: jobs.{a.name}.prefix {_show(a.prefix)} and jobs.{b.name}.prefix "
                f"{_show(b.prefix)} overlap; a sync would delete the other job's objects"
            )


def parse(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValueError as exc:  # tomllib: an integer of more than 4300 digits
        raise ConfigError(f"{path}: not valid TOML: {str(exc).split(';')[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    root = _Table(path, "", data)
    timezone = root.take_parsed("timezone", _parse_timezone, "UTC")
    state_dir = root.take_parsed("state_dir", _parse_abs_path, "/var/lib/ardua-backup")
    if not state_dir:
        raise root.error("state_dir", "'' must be an absolute path")
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
