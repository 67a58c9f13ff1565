"""Every config key, declared once: its name, parser, default and one-line doc (KEYS).

config.load reads the file with it and takes the dataclass defaults from it; check-config lists
the settings by it; scripts/gen_config_docs.py writes docs/configuration.md from it (a test fails
when that file is stale), and a test checks that config.example.toml names exactly these keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.config import alerts as alertconfig
from supervisor.config import bwlimit
from supervisor.config import values as v
from supervisor.config.values import parse_duration

DEFAULT_DB_JOB = "db-upload"
DEFAULT_RECEIPTS_JOB = "receipts-upload"

REQUIRED = object()  # a key with no default
DERIVED = object()  # a default computed from other keys (see the table's reader)



_SIZE = re.compile(r"([0-9]+)\s*([KMGT]?)(?:I?B)?")


def parse_size(value: Any) -> int:
    """'10G', '500MiB', '64K' or a number of bytes -> bytes (powers of 1024), above zero."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be a size like '10G', got {v.show(value)}")
    if isinstance(value, int):
        size = value
    elif match := _SIZE.fullmatch(value.strip().upper()):
        size = int(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " ")
    else:
        raise ValueError(f"{v.show(value)} is not a size like '500M' or '10G'")
    if size <= 0:
        raise ValueError("a size must be above zero")
    return size


@dataclass(frozen=True)
class Key:
    path: str  # "s3.bucket"; "jobs.*.timeout" for every job; "drill.checks[].sql" for each check
    parse: Callable[[Any], Any]  # what tomllib returned -> the value; ValueError says what's wrong
    default: Any  # the value when the key is absent, or REQUIRED / DERIVED
    doc: str  # one line, as docs/configuration.md and check-config show it
    attr: str = ""  # the dataclass field, when it is not the key's name (durations end in _s)

    @property
    def table(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def field(self) -> str:
        return self.attr or self.name


KEYS: tuple[Key, ...] = (
    Key("timezone", v.timezone, "UTC", "IANA zone the cron schedules are evaluated in"),
    Key("state_dir", v.directory, Path("/var/lib/ardua-backup"),
        "run ledger (runs.sqlite3), metrics state, restore downloads"),
    # The unit's TimeoutStopSec must stay above it (+ 10 s container stop + margin).
    Key("stop_grace", parse_duration, 60.0, "on SIGTERM, how long a running sync may finish "
        "before its container is stopped", "stop_grace_s"),
    # One destination: a [destinations.NAME] table, or the [s3] table (one destination named s3).
    Key("destinations.*.bucket", v.bucket, REQUIRED, "the bucket"),
    Key("destinations.*.region", v.region, "us-east-1", "region"),
    Key("destinations.*.endpoint_url", v.endpoint_url, "",
        "empty = AWS; http(s)://... for any S3-compatible store"),
    Key("destinations.*.credentials_file", v.optional_path, None,
        "AWS shared-credentials file, mode 0600; empty = IAM role / default chain"),
    Key("destinations.*.profile", v.name, "default", "profile in that file"),
    Key("destinations.*.storage_class", v.string, "", "storage class of every object written "
        "(e.g. STANDARD_IA); empty = the bucket's default"),
    Key("destinations.*.server_side_encryption", v.string, "", "'', 'AES256' or 'aws:kms' for "
        "every object written; empty = the bucket's default encryption"),
    Key("destinations.*.sse_kms_key_id", v.string, "", "KMS key for 'aws:kms'; empty = the AWS "
        "managed key"),
    Key("destinations.*.object_lock_mode", v.object_lock_mode, "", "'', 'GOVERNANCE' or "
        "'COMPLIANCE': every object written is locked in this mode; empty = no lock"),
    Key("destinations.*.object_lock_days", v.count, 0, "every object written is locked this "
        "many days (with object_lock_mode)"),
    Key("destinations.*.encryption_key_file", v.optional_path, None, "client-side "
        "encryption (rclone crypt, names readable): a TOML file, mode 0600, with password and "
        "password2; empty = off (docs/encryption.md)"),
    Key("rclone.image", v.image, "rclone/rclone:1.75.2", "pinned upstream image; must be on "
        "the host"),
    Key("rclone.network_mode", v.docker_name, "bridge", "Docker network of the rclone "
        "containers"),
    Key("rclone.bwlimit", bwlimit.parse, "", "upload bandwidth limit, rclone's --bwlimit: a "
        "rate ('1M') or a timetable in `timezone` ('08:00,1M 19:00,off'); empty = none"),
    Key("jobs.*.schedule", v.schedule, REQUIRED, "5-field cron expression in `timezone`"),
    Key("jobs.*.source", v.source, REQUIRED,
        "'volume:NAME' (Docker named volume) or an absolute host path"),
    Key("jobs.*.prefix", v.prefix, REQUIRED, "S3 prefix mirrored to s3://BUCKET/PREFIX/ of "
        "each destination"),
    Key("jobs.*.timeout", parse_duration, 3600.0, "the container is killed after this",
        "timeout_s"),
    Key("jobs.*.catch_up", v.boolean, True, "run once at start-up if a run was missed"),
    Key("jobs.*.heartbeat_url", v.secret_url, "", "healthchecks.io-style ping URL; empty = none"),
    Key("jobs.*.compare", v.compare_mode, "checksum", "how a run finds changed files: "
        "'checksum' (reads every file), 'size' or 'mtime' (read none; a deep checksum pass "
        "every deep_every)"),
    Key("jobs.*.deep_every", parse_duration, 86400.0, "with compare 'size' or 'mtime', a run "
        "is a checksum pass when the last successful one started longer ago than this",
        "deep_every_s"),
    Key("jobs.*.bwlimit", bwlimit.parse, "", "this job's bandwidth limit ('off' = none); "
        "empty = rclone.bwlimit"),
    Key("jobs.*.destinations", v.names, (), "the destinations this job is copied to, by name; "
        "empty = every destination"),
    Key("health.dump_job", v.string, DERIVED, f"job whose source is postgres-backup-local's "
        f"/backups (default {DEFAULT_DB_JOB!r} if configured)"),
    Key("health.dump_dir", v.prefix, "last", "folder in that source with the timestamped dumps"),
    Key("health.databases", v.databases, (), "databases that must each have a fresh dump; "
        "empty = every one seen in dump_dir"),
    Key("health.min_size_share", v.share, 0.5, "a newest dump below this share of the "
        "previous one is shrunken"),
    Key("health.dump_max_age", parse_duration, 26 * 3600.0, "newest dump older than this is "
        "stale", "dump_max_age_s"),
    Key("health.sentinel_max_age", parse_duration, 2 * 3600.0, ".last_success older than this "
        "is stale", "sentinel_max_age_s"),
    Key("health.drill_max_age", parse_duration, 8 * 86400.0, "last good restore drill older "
        "than this is a WARNING", "drill_max_age_s"),
    Key("health.db_container", v.container, "db-backup", "container checked for running/"
        "health; empty = skip"),
    Key("health.db_health_url", v.url, "", "go-cron endpoint of the dump container; empty = "
        "skip"),
    Key("guard.max_delete_share", v.share, 0.5, "refuse a sync deleting more than this share "
        "of the mirror"),
    Key("guard.max_shrink_share", v.share, 0.5, "refuse when the source holds this much fewer "
        "bytes than the mirror"),
    Key("guard.quiet_period", parse_duration, 120.0, "a source file modified within this may "
        "still be written", "quiet_period_s"),
    Key("metrics.textfile", v.textfile, None, "node_exporter textfile path (*.prom); empty = "
        "off"),
    Key("metrics.port", v.port_or_off, 0, "serve /metrics on 127.0.0.1:PORT; 0 = off"),
    Key("webhook.listen", v.listen_address, "", "serve postgres-backup-local's webhooks on "
        "IPv4:PORT (127.0.0.1, or the Docker bridge's gateway); empty = off"),
    Key("webhook.token_file", v.optional_path, None, "file holding the token, the last segment "
        "of http://HOST:PORT/hooks/pbl/TOKEN; mode 0600"),
    Key("webhook.job", v.string, DERIVED, "the upload job a post-backup runs "
        "(default health.dump_job)"),
    Key("drill.schedule", v.optional_schedule, "", "5-field cron in `timezone`; empty = only "
        "on demand"),
    # The official image; its major must be >= the pg_dump that wrote the dumps.
    Key("drill.image", v.image, "postgres:15", "official PostgreSQL image"),
    Key("drill.network_mode", v.docker_name, DERIVED, "Docker network of the drill container "
        "(default: rclone.network_mode)"),
    Key("drill.port", v.server_port, 55432, "unused (deprecated): the drill's server listens "
        "on a private Unix socket only"),
    Key("drill.timeout", parse_duration, 3600.0, "bound for each dump's restore (a check or a "
        "count: 300 s each, within the drill's overall deadline)", "timeout_s"),
    Key("drill.db_job", v.string, DEFAULT_DB_JOB, "upload job whose prefix holds the dumps"),
    Key("drill.receipts_job", v.string, DEFAULT_RECEIPTS_JOB, "job whose receipts are "
        "spot-checked; empty = none"),
    Key("drill.receipts_sample", v.count, 20, "receipts sampled each way; 0 = off"),
    Key("drill.checks[].name", lambda x: v.plain(x, "a string"), DERIVED,
        "label in reports (default 'check N')"),
    Key("drill.checks[].sql", v.sql, REQUIRED, "a query returning one value"),
    Key("drill.checks[].min", v.number, None, "the number must be >= min"),
    Key("drill.checks[].max", v.number, None, "the number must be <= max"),
    Key("drill.checks[].max_age", parse_duration, None, "the timestamp must be no older than "
        "this", "max_age_s"),
    Key("drill.checks[].database", v.string, "", "the restored database it runs in"),
    Key("verify.schedule", v.optional_schedule, "", "5-field cron in `timezone` for "
        "`ardua-backup verify`; empty = only on demand"),
    Key("verify.max_age", parse_duration, 30 * 86400.0, "a proof older than this is due "
        "again; a retained object without a passing proof younger than this is a WARNING",
        "max_age_s"),
    Key("verify.max_bytes_per_run", parse_size, 10 * 1024**3, "read budget of "
        "one run ('500M', '10G'): missing and oldest proofs first (`--all` ignores it)"),
    Key("alerts.urls_file", alertconfig.parse_urls_file, None, "apprise URLs, one a line, "
        "mode 0600; empty = no notifications"),
    Key("alerts.check_every", parse_duration, 900.0, "the daemon evaluates the verdict this "
        "often, and after every run", "check_every_s"),
    Key("alerts.min_state", alertconfig.parse_min_state, "WARNING", "notify on a change to "
        "this state or worse, and on recovery"),
    Key("alerts.remind_every", alertconfig.parse_remind_every, 86400.0, "repeat a "
        "notification this often while not OK; 0 = never", "remind_every_s"),
    Key("alerts.status_ping_url", alertconfig.parse_status_ping_url, "", "healthchecks-style "
        "dead-man's switch: URL while the verdict is below min_state, URL/fail otherwise"),
)


# Durations written like "15m"; remind_every also takes "0" (never).
DURATION_PARSERS = (parse_duration, alertconfig.parse_remind_every)


def is_duration(shown_key: str) -> bool:
    """Is this key (as settings() names it, e.g. `jobs.db-upload.timeout`) a duration?"""
    name = shown_key.rpartition(".")[2]
    return any(k.parse in DURATION_PARSERS and k.name == name for k in KEYS)


def format_duration(seconds: float) -> str:
    """93600 -> '1d2h': the units a config file would use."""
    parts, rest = [], round(seconds, 3)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            parts.append(f"{int(rest // size)}{unit}")
            rest -= (rest // size) * size
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def default(path: str) -> Any:
    """The declared default of a key, for the dataclasses below."""
    return next(k.default for k in KEYS if k.path == path)


