"""The config file: the immutable dataclasses the rest of the program reads, and the reader
that fills them from the keys declared once in config.keys (KEYS). Each `[destinations.NAME]`
(or the one `[s3]`) becomes a storage.Destination.

Every error names the file, the key and what is wrong; unknown keys are errors so a typo can
never silently fall back to a default.
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from supervisor.config import alerts as alertconfig
from supervisor.config import strict
from supervisor.config import values as v
from supervisor.config.keys import (
    DEFAULT_DB_JOB,
    DERIVED,
    KEYS,
    REQUIRED,
    default,
)
from supervisor.config.values import Source, parse_duration, show
from supervisor.core.files import private_file_problem
from supervisor.storage import crypt, markers, upload_options
from supervisor.storage.destination import Destination

__all__ = ["Source", "parse_duration"]  # re-exported: part of what a config holds

DEFAULT_PATH = Path("/etc/ardua-backup/config.toml")
ENV_VAR = "ARDUA_BACKUP_CONFIG"
DRILL_JOB = "restore-drill"  # the drill's name in the schedule, ledger, logs and metrics
VERIFY_JOB = "verify"  # `ardua-backup verify`'s name in the schedule, ledger, logs and metrics

class ConfigError(Exception):
    """A config problem, phrased as one line that names the file and the key."""


@dataclass(frozen=True)
class RcloneConfig:
    image: str = default("rclone.image")
    network_mode: str = default("rclone.network_mode")
    bwlimit: str = default("rclone.bwlimit")


@dataclass(frozen=True)
class JobConfig:
    name: str
    schedule: str
    source: Source
    prefix: str
    timeout_s: float = default("jobs.*.timeout")
    catch_up: bool = default("jobs.*.catch_up")
    heartbeat_url: str = default("jobs.*.heartbeat_url")
    compare: str = default("jobs.*.compare")
    deep_every_s: float = default("jobs.*.deep_every")
    bwlimit: str = default("jobs.*.bwlimit")
    destinations: tuple[str, ...] = default("jobs.*.destinations")  # (): every destination


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds and sources of `status`. The defaults fit a daily dump and hourly uploads."""

    dump_job: str | None = None  # None: no job holds the dumps
    dump_dir: str = default("health.dump_dir")
    databases: tuple[str, ...] = default("health.databases")
    min_size_share: float = default("health.min_size_share")
    dump_max_age_s: float = default("health.dump_max_age")
    sentinel_max_age_s: float = default("health.sentinel_max_age")
    drill_max_age_s: float = default("health.drill_max_age")
    db_container: str = default("health.db_container")
    db_health_url: str = default("health.db_health_url")


@dataclass(frozen=True)
class GuardConfig:
    """Limits a sync must stay within, checked before the sync container starts."""

    max_delete_share: float = default("guard.max_delete_share")
    max_shrink_share: float = default("guard.max_shrink_share")
    quiet_period_s: float = default("guard.quiet_period")


@dataclass(frozen=True)
class MetricsConfig:
    textfile: Path | None = default("metrics.textfile")  # noqa: RUF009 - None
    port: int = default("metrics.port")


@dataclass(frozen=True)
class WebhookConfig:
    """postgres-backup-local's webhooks (daemon.webhook). token_file is a secret file: load()
    checks it with core.files' rule and reads the token into Config.webhook_token."""

    listen: str = default("webhook.listen")  # "" = off
    token_file: Path | None = default("webhook.token_file")  # noqa: RUF009 - None
    job: str | None = None  # the job a post-backup runs (health.dump_job by default)


@dataclass(frozen=True)
class DrillCheck:
    """One SQL check run against a restored database: a number compared with min/max, or
    (with max_age_s) a timestamp that must be no older than max_age_s."""

    name: str
    sql: str
    min: float | None = None
    max: float | None = None
    max_age_s: float | None = None
    database: str = default("drill.checks[].database")


@dataclass(frozen=True)
class DrillConfig:
    schedule: str = default("drill.schedule")
    image: str = default("drill.image")
    network_mode: str = default("rclone.network_mode")
    port: int = default("drill.port")
    timeout_s: float = default("drill.timeout")
    db_job: str = default("drill.db_job")
    receipts_job: str = default("drill.receipts_job")
    receipts_sample: int = default("drill.receipts_sample")
    checks: tuple[DrillCheck, ...] = ()


@dataclass(frozen=True)
class VerifyConfig:
    """`ardua-backup verify` (supervisor.verify): when it runs, how old a proof may get, and
    how much one run may read."""

    schedule: str = default("verify.schedule")
    max_age_s: float = default("verify.max_age")
    max_bytes_per_run: int = default("verify.max_bytes_per_run")


@dataclass(frozen=True)
class AlertsConfig:
    urls_file: Path | None = default("alerts.urls_file")  # noqa: RUF009 - None
    check_every_s: float = default("alerts.check_every")
    min_state: str = default("alerts.min_state")
    remind_every_s: float = default("alerts.remind_every")  # 0: never remind
    status_ping_url: str = default("alerts.status_ping_url")

    @property
    def enabled(self) -> bool:
        return self.urls_file is not None or bool(self.status_ping_url)


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
    # Where the copies go, in the file's order: each [destinations.NAME], or the one [s3].
    destinations: tuple[Destination, ...]
    rclone: RcloneConfig
    drill: DrillConfig
    jobs: dict[str, JobConfig] = field(default_factory=dict)
    health: HealthConfig = field(default_factory=HealthConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    # The apprise URLs read from alerts.urls_file by load(): they carry tokens, never shown.
    alert_urls: tuple[str, ...] = field(default=(), repr=False)
    # The token read from webhook.token_file by load(): never shown, never logged.
    webhook_token: str = field(default="", repr=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def scheduled(self) -> dict[str, Scheduled]:
        """What the daemon fires: every upload job and, when they have a schedule, the drill
        and verify."""
        plan = {name: Scheduled(job.schedule, job.catch_up) for name, job in self.jobs.items()}
        if self.drill.schedule:
            plan[DRILL_JOB] = Scheduled(self.drill.schedule, True)
        if self.verify.schedule:
            plan[VERIFY_JOB] = Scheduled(self.verify.schedule, True)
        return plan

    def destination(self, name: str | None = None) -> Destination:
        """The destination named `name`; without one, the first listed."""
        if name is None:
            return self.destinations[0]
        for dest in self.destinations:
            if dest.name == name:
                return dest
        known = ", ".join(d.name for d in self.destinations)
        raise ConfigError(f"{self.path}: no destination named '{name}' (configured: {known})")

    def destinations_of(self, job: JobConfig) -> tuple[Destination, ...]:
        """Where a job's runs copy to, in the order the file lists the destinations."""
        if not job.destinations:
            return self.destinations
        return tuple(d for d in self.destinations if d.name in job.destinations)

    @property
    def drill_marker_key(self) -> str:
        """Where the drill leaves its result: beside the dumps it restores (drill.db_job)."""
        return markers.drill_marker_key(self.job(self.drill.db_job).prefix)

    def job(self, name: str) -> JobConfig:
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise ConfigError(f"{self.path}: no job named '{name}' (configured: {known})")
        return self.jobs[name]


class _Table:
    """One TOML table being read: remembers what was consumed so leftovers are reported."""

    def __init__(self, path: Path, name: str, data: Any):
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [{name}] must be a table, got {show(data)}")
        self.path, self.name, self.data = path, name, dict(data)

    def where(self, key: str) -> str:
        return f"{self.path}: {self.name + '.' if self.name else ''}{v.show_key(key)}"

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: {problem}")

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
                                  f"got {show(raw)}")
        return [_Table(self.path, f"{self._child(key)}[{i}]", item) for i, item in enumerate(raw)]

    def _child(self, key: str) -> str:
        return f"{self.name}.{v.show_key(key)}" if self.name else v.show_key(key)

    def done(self) -> None:
        for key in self.data:
            raise self.error(key, "unknown key (see config.example.toml for the valid ones)")




def _read(t: _Table, table: str, **derived: Any) -> dict[str, Any]:
    """Every declared key of `table` (absent ones at their default; DERIVED ones from
    `derived`), by dataclass field; then anything left in the table is an unknown key."""
    values = {}
    for key in KEYS:
        if key.table == table:
            fallback = derived[key.name] if key.default is DERIVED else key.default
            values[key.field] = t.take_parsed(
                key.name, key.parse, ... if fallback is REQUIRED else fallback)
    t.done()
    return values


def _read_job(t: _Table, name: str) -> JobConfig:
    if name in (DRILL_JOB, VERIFY_JOB):
        raise ConfigError(f"{t.path}: [{t.name}]: '{name}' is reserved for the "
                          f"{'drill' if name == DRILL_JOB else 'verify command'}")
    if not v.JOB_NAME.fullmatch(name):
        raise ConfigError(f"{t.path}: [{t.name}]: job names use a-z, 0-9, '-' and '_'")
    return JobConfig(name=name, **_read(t, "jobs.*"))


def _read_health(t: _Table, jobs: dict[str, JobConfig]) -> HealthConfig:
    # Default: the job named like the design's, when there is one.
    values = _read(t, "health", dump_job=DEFAULT_DB_JOB if DEFAULT_DB_JOB in jobs else "")
    if values["dump_job"] and values["dump_job"] not in jobs:
        raise t.error("dump_job", f"{show(values['dump_job'])} is not a configured job")
    return HealthConfig(**{**values, "dump_job": values["dump_job"] or None})


def _read_webhook(t: _Table, jobs: dict[str, JobConfig], health: HealthConfig) -> WebhookConfig:
    values = _read(t, "webhook", job=health.dump_job or "")
    if values["job"] and values["job"] not in jobs:
        raise t.error("job", f"{show(values['job'])} is not a configured job")
    hook = WebhookConfig(**{**values, "job": values["job"] or None})
    if hook.listen and not hook.token_file:
        raise t.error("token_file", "is required when webhook.listen is set")
    if hook.listen and not hook.job:
        raise t.error("job", "is required when webhook.listen is set and health.dump_job is not")
    return hook


def _read_check(t: _Table, index: int) -> DrillCheck:
    check = DrillCheck(**_read(t, "drill.checks[]", name=f"check {index + 1}"))
    if check.max_age_s is not None and (check.min is not None or check.max is not None):
        raise t.error("max_age", "a check compares a timestamp (max_age) or a number (min/max)")
    if check.max_age_s is None and check.min is None and check.max is None:
        raise t.error("sql", "needs a threshold: min, max or max_age")
    if check.min is not None and check.max is not None and check.min > check.max:
        raise t.error("max", f"{check.max:g} is below min {check.min:g}: no value can pass")
    return check


def _read_drill(t: _Table, rclone: RcloneConfig, jobs: dict[str, JobConfig]) -> DrillConfig:
    explicit = {key for key in ("db_job", "receipts_job") if key in t.data}
    checks = tuple(_read_check(c, i) for i, c in enumerate(t.array_of_tables("checks")))
    drill = DrillConfig(**_read(t, "drill", network_mode=rclone.network_mode), checks=checks)
    # Defaults may name jobs a config does not have (checked when a drill runs); a name the
    # operator wrote must exist.
    for key in sorted(explicit):
        name = getattr(drill, key)
        if name and name not in jobs:
            raise t.error(key, f"no job named {show(name)} "
                               f"(configured: {', '.join(sorted(jobs))})")
    return drill


def _read_destination(t: _Table) -> Destination:
    dest = Destination(**_read(t, "destinations.*"), table=t.name)
    try:  # the three options are only valid together (a KMS key needs aws:kms)
        upload_options.validate_upload_options(dest.storage_class, dest.server_side_encryption,
                                               dest.sse_kms_key_id, t.name)
    except ValueError as exc:
        raise ConfigError(f"{t.path}: {exc}") from None
    if dest.object_lock_mode and not dest.object_lock_days:
        raise t.error("object_lock_days", f"must be 1 or more with object_lock_mode "
                                          f"{show(dest.object_lock_mode)}")
    if dest.object_lock_days and not dest.object_lock_mode:
        raise t.error("object_lock_mode", "must be 'GOVERNANCE' or 'COMPLIANCE' with "
                                          "object_lock_days set")
    return dest


def _read_destinations(root: _Table) -> tuple[Destination, ...]:
    """Each [destinations.NAME] in the file's order, or the one [s3] (a destination named s3):
    never both, which would leave it unclear where the copies go."""
    if "s3" in root.data and "destinations" in root.data:
        raise ConfigError(f"{root.path}: [s3] and [destinations.*] together: move [s3]'s keys "
                          f"to a [destinations.NAME] table")
    if "destinations" not in root.data:
        return (_read_destination(root.table("s3")),)
    table = root.table("destinations")
    names = list(table.data)
    if not names:
        raise ConfigError(f"{root.path}: [destinations] defines no destination")
    for name in names:
        if not v.JOB_NAME.fullmatch(name):
            raise ConfigError(f"{root.path}: [destinations.{v.show_key(name)}]: destination "
                              f"names use a-z, 0-9, '-' and '_'")
    return tuple(_read_destination(table.table(name)) for name in names)


def _check_destinations(path: Path, destinations: tuple[Destination, ...],
                        jobs: dict[str, JobConfig]) -> None:
    """Every name a job lists exists; no two destinations share a bucket and endpoint for one
    job's prefix (two mirrors of one prefix would fight over its objects)."""
    known = {d.name for d in destinations}
    for job in jobs.values():
        for name in job.destinations:
            if name not in known:
                raise ConfigError(f"{path}: jobs.{job.name}.destinations: no destination named "
                                  f"{show(name)} (configured: {', '.join(sorted(known))})")
    targets: dict[tuple[str, str, str], str] = {}
    for dest in destinations:
        for job in jobs.values():
            if job.destinations and dest.name not in job.destinations:
                continue
            where = (dest.endpoint_url, dest.bucket, job.prefix)
            if where in targets:
                raise ConfigError(
                    f"{path}: {dest.setting('bucket')}: {show(dest.bucket)} at "
                    f"{dest.where} is also destination {targets[where]}'s bucket, and job "
                    f"{job.name} would mirror {show(job.prefix)} to both")
            targets[where] = dest.name


def _check_prefixes(path: Path, jobs: dict[str, JobConfig]) -> None:
    # A sync mirrors its whole prefix, so nested prefixes would delete each other's objects.
    items = sorted(jobs.values(), key=lambda j: j.prefix)
    for a, b in itertools.pairwise(items):
        if b.prefix == a.prefix or b.prefix.startswith(a.prefix + "/"):
            raise ConfigError(
                f"{path}: jobs.{a.name}.prefix {show(a.prefix)} and jobs.{b.name}.prefix "
                f"{show(b.prefix)} overlap; a sync would delete the other job's objects"
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
    destinations = _read_destinations(root)
    rclone = RcloneConfig(**_read(root.table("rclone", required=False), "rclone"))
    jobs_table = root.table("jobs")
    jobs = {name: _read_job(jobs_table.table(name), name) for name in list(jobs_table.data)}
    if not jobs:
        raise ConfigError(f"{path}: [jobs] defines no job")
    _check_prefixes(path, jobs)
    _check_destinations(path, destinations, jobs)
    health = _read_health(root.table("health", required=False), jobs)
    guard = GuardConfig(**_read(root.table("guard", required=False), "guard"))
    metrics = MetricsConfig(**_read(root.table("metrics", required=False), "metrics"))
    drill = _read_drill(root.table("drill", required=False), rclone, jobs)
    alerts = AlertsConfig(**_read(root.table("alerts", required=False), "alerts"))
    webhook = _read_webhook(root.table("webhook", required=False), jobs, health)
    verify = VerifyConfig(**_read(root.table("verify", required=False), "verify"))
    top = _read(root, "")
    return Config(path, top["timezone"], top["state_dir"], top["stop_grace_s"], destinations,
                  rclone, drill, jobs, health, guard, metrics, alerts, webhook, verify)


def settings(config: Config) -> list[tuple[str, Any, bool]]:
    """(key, value, is_default) of every declared key as this config has it, for check-config
    (a DERIVED default is never marked: it depends on other keys). Job and check keys come once
    per job and per check."""
    holders: list[tuple[str, str, Any]] = [("", "", config)]
    for table in dict.fromkeys(k.table for k in KEYS):
        if table == "jobs.*":
            holders += [(table, f"jobs.{n}", j) for n, j in sorted(config.jobs.items())]
        elif table == "drill.checks[]":
            holders += [(table, f"drill.checks[{i}]", c)
                        for i, c in enumerate(config.drill.checks)]
        elif table == "destinations.*":
            holders += [(table, d.table, d) for d in config.destinations]
        elif table:
            holders.append((table, table, getattr(config, table)))
    rows: list[tuple[str, Any, bool]] = []
    for table, shown, holder in holders:
        for key in (k for k in KEYS if k.table == table):
            value = getattr(holder, key.field)
            rows.append((f"{shown}.{key.name}".lstrip("."), value, value == key.default))
    return rows


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
    config = parse(text, path)
    if problem := strict.problem(config):  # the file-mode rule, on every load and reload
        raise ConfigError(problem)
    config = _with_keys(config)
    if config.webhook.listen and config.webhook.token_file:
        config = replace(config, webhook_token=_read_token(path, config.webhook.token_file))
    if config.alerts.urls_file is None:
        return config
    try:  # a missing file, a mode other users can read, a line apprise cannot use
        urls = alertconfig.load_urls(config.alerts.urls_file)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return replace(config, alert_urls=tuple(urls))


def _with_keys(config: Config) -> Config:
    """Each encrypted destination with its key file's passwords (read after the mode rule)."""
    try:
        dests = tuple(replace(d, crypt_key=crypt.read_key(d.encryption_key_file,
                                                          d.setting("encryption_key_file")))
                      if d.encryption_key_file else d for d in config.destinations)
    except ValueError as exc:
        raise ConfigError(f"{config.path}: {exc}") from None
    return replace(config, destinations=dests)


TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")  # one URL path segment, nothing to escape


def _read_token(path: Path, token_file: Path) -> str:
    """The webhook's token: a secret file (core.files' rule), one line of TOKEN's characters.
    Errors name the file, never the token."""
    if problem := private_file_problem(token_file, "webhook.token_file"):
        raise ConfigError(f"{path}: {problem}")
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: webhook.token_file {token_file} cannot be read: "
                          f"{exc}") from None
    if not TOKEN.fullmatch(token):
        raise ConfigError(f"{path}: webhook.token_file {token_file} must hold one token of 16 "
                          f"to 256 characters A-Z a-z 0-9 . _ ~ - (e.g. openssl rand -hex 32)")
    return token
