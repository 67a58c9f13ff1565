"""rclone command lines and the reading of rclone's JSON log. Pure: no I/O here."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from supervisor.core.clock import now_utc, parse_time, rfc3339
from supervisor.core.redact import redact
from supervisor.core.text import printable
from supervisor.storage import markers, upload_options
from supervisor.storage.destination import Destination

SOURCE_MOUNT = "/source"
DEST_MOUNT = "/dest"
CREDENTIALS_MOUNT = "/run/secrets/aws-credentials"
# Markers ardua-backup writes itself under a prefix. Excluded from every sync: rclone never deletes
# excluded destination files (without --delete-excluded), and a sync would otherwise remove them.
SYMLINK_NOTICE = "Can't follow symlink"
ERROR_LEVELS = frozenset({"error", "critical", "fatal"})
MAX_KEPT_ERRORS = 20
# rclone's whole-command retries (--retries): after an attempt with errors it logs, at ERROR
# level, "Attempt %d/%d failed with %d errors[ and: %v]", resets its error count and stats'
# lastError, and runs the command again; a later clean attempt logs "Attempt %d/%d succeeded"
# (also at ERROR level). rclone 1.75, cmd/cmd.go Run(); StatsInfo.ResetErrors in
# fs/accounting/stats.go.
_ATTEMPT = re.compile(r"Attempt (\d+)/(\d+) (succeeded\Z|failed with \d+ errors)")

# Bounded so a dead endpoint fails in seconds, not hours (rclone's defaults retry for hours).
BOUNDS = [
    "--retries", "2",
    "--low-level-retries", "3",
    "--contimeout", "5s",
    "--timeout", "60s",
]
LOGGING = ["--config", "", "--use-json-log", "--stats-log-level", "NOTICE", "--stats", "1m"]
# An encrypted destination's rclone config file (its crypt remote, the obscured passwords),
# mounted read-only: never on a command line nor in the environment, where `docker inspect`
# shows them.
CRYPT_CONFIG_MOUNT = "/run/secrets/rclone-crypt.conf"


def logging(dest: Destination | None) -> list[str]:
    """LOGGING, with the crypt config file for an encrypted destination."""
    if dest is None or not dest.encrypted:
        return LOGGING
    return ["--config", CRYPT_CONFIG_MOUNT, *LOGGING[2:]]


def compare_flags(dest: Destination, compare: Sequence[str]) -> tuple[str, ...]:
    """A crypt remote has no hash in common with a local file: rclone's --checksum would fall
    back to --size-only (a changed file of the same size kept stale). Encrypted, a checksum
    compare is rclone's default instead: size, then the modification time."""
    if dest.encrypted and tuple(compare) == CHECKSUM:
        return ()
    return tuple(compare)


def environment(dest: Destination, now: datetime | None = None) -> dict[str, str]:
    """Backend settings as environment: none of these are secrets (the secret stays in the file).
    `now`: when the container starts (default: this moment), where its Object Lock counts from."""
    env = {
        "RCLONE_S3_PROVIDER": dest.provider,
        "RCLONE_S3_ENV_AUTH": "true",
        "RCLONE_S3_REGION": dest.region,
        # The preflight already proved the bucket exists; never let rclone create one.
        "RCLONE_S3_NO_CHECK_BUCKET": "true",
        "HOME": "/tmp",
    }
    if dest.endpoint_url:
        env["RCLONE_S3_ENDPOINT"] = dest.endpoint_url
    if dest.credentials_file:
        env["AWS_SHARED_CREDENTIALS_FILE"] = CREDENTIALS_MOUNT
        env["AWS_PROFILE"] = dest.profile
    return env | upload_options.rclone_env(dest.upload_options) | lock_env(dest, now or now_utc())


def lock_env(dest: Destination, now: datetime) -> dict[str, str]:
    """Object Lock for every object the container writes to S3. rclone locks only with both
    set (`rclone help backend s3`, 1.75.2), and then sends them on a single-part PutObject and
    on the CreateMultipartUpload of a large file, each part with its Content-MD5 (measured with
    --dump headers). A fixed date rather than rclone's "30d": the date is the product's, one
    per container."""
    until = dest.retain_until(now)
    if until is None:
        return {}
    return {"RCLONE_S3_OBJECT_LOCK_MODE": dest.object_lock_mode,
            "RCLONE_S3_OBJECT_LOCK_RETAIN_UNTIL_DATE": rfc3339(until)}


def max_duration_s(timeout_s: float) -> int:
    """rclone stops starting transfers at 90 % of the job timeout, so it can exit cleanly (10)
    before the container is killed at the timeout itself."""
    return max(1, int(timeout_s * 0.9))


# rclone filter patterns are globs: these characters must be escaped to match themselves.
_GLOB_SPECIAL = frozenset("*?[]{}\\")
CHECKSUM = ("--checksum",)


def exact_pattern(path: str) -> str:
    """An rclone filter pattern that matches exactly one file: `path`, relative to the sync root
    (anchored with a leading "/", every glob metacharacter escaped with a backslash)."""
    return "/" + "".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in path)


def _sync(dest: Destination, src: str, dst: str, timeout_s: float,
          compare: Sequence[str] = CHECKSUM, extra: Sequence[str] = (),
          exclude: Sequence[str] = (), filters: Sequence[str] | None = None) -> list[str]:
    """`exclude`: paths relative to the sync root, each excluded on BOTH sides: neither
    transferred nor deleted (rclone deletes no excluded destination file without
    --delete-excluded). `filters`: these instead of the markers' and `exclude`'s."""
    excludes = filters if filters is not None else [
        arg for path in (*markers.MARKER_NAMES, *exclude)
        for arg in ("--exclude", exact_pattern(path))]
    return [
        "sync", src, dst,
        # Checksums instead of mtimes: mtimes live in S3 metadata and cost one HEAD per object.
        # A job's cheap passes compare by size or server time instead (supervisor.upload.compare).
        *compare_flags(dest, compare), "--fast-list",
        *excludes,
        *BOUNDS,
        "--max-duration", f"{max_duration_s(timeout_s)}s",
        *extra,
        *logging(dest),
    ]  # fmt: skip


def sync_command(dest: Destination, prefix: str, timeout_s: float,
                 compare: Sequence[str] = CHECKSUM, extra: Sequence[str] = (),
                 exclude: Sequence[str] = ()) -> list[str]:
    """`extra`: more flags, e.g. --bwlimit (supervisor.config.bwlimit); `exclude`: see _sync."""
    return _sync(dest, f"{SOURCE_MOUNT}/", dest.remote(prefix), timeout_s, compare, extra,
                 exclude)


LISTED_MOUNT = "/run/ardua-listed"


def restore_command(
    dest: Destination, prefix: str, timeout_s: float, at: datetime | None = None,
    listed: bool = False,
) -> list[str]:
    """The upload sync reversed: S3 prefix -> DEST_MOUNT (markers stay in S3). With `at`
    (aware), the prefix as it was then: `--s3-version-at` lists each object's version live at
    that time and leaves out what was deleted (delete markers show only with
    --s3-version-deleted, never passed). RFC 3339 in UTC, so the container's zone is moot.
    `listed`: only the names in the file at LISTED_MOUNT (one a line, --files-from-raw, which
    rclone refuses beside any other filter: the markers stay out by not being listed), and
    --delete-excluded, so DEST still loses what is not restored, as a sync's DEST does."""
    command = _sync(dest, dest.remote(prefix), f"{DEST_MOUNT}/", timeout_s, filters=[
        "--files-from-raw", LISTED_MOUNT, "--delete-excluded"] if listed else None)
    if at is not None:
        if at.tzinfo is None:
            raise ValueError("restore_command(at=...) needs an aware datetime")
        command += ["--s3-version-at", rfc3339(at)]
    return command


# lsjson's own layout for a time, so a listed mtime reads as it always did (9 digits, a zone).
_TIME_LAYOUT = "2006-01-02T15:04:05.000000000Z07:00"


def list_command() -> list[str]:
    """Lists the source exactly as rclone will see it (symlinks skipped): one CSV row per file,
    path, size and mtime. lsjson printed the same with a name and a type added, twice the bytes
    for dockerd to carry and Python to read (100,000 files: 3.0 CPU-seconds on the machine
    for lsjson, 1.7 for this, measured)."""
    return ["lsf", "--recursive", "--files-only", "--format", "pst", "--csv",
            "--time-format", _TIME_LAYOUT, f"{SOURCE_MOUNT}/", *LOGGING]


@dataclass
class LogSummary:
    """What one rclone run said on stderr. The error lines and count are those of its final
    attempt; the attempts rclone retried (`retries`) left `retried_lines`: warnings, since only
    the end state counts."""

    stats: dict | None = None
    error_lines: list[str] = field(default_factory=list)
    error_count: int = 0
    skipped_symlinks: int = 0
    retries: int = 0
    retried_lines: list[str] = field(default_factory=list)

    def stat(self, key: str) -> int:
        """A count from the final stats line (0 when there was none)."""
        return int((self.stats or {}).get(key) or 0)

    @property
    def last_error(self) -> str:
        if self.stats and self.stats.get("lastError"):
            return _shown(str(self.stats["lastError"]))
        return self.error_lines[-1] if self.error_lines else ""


def parse_log(stderr: str) -> LogSummary:
    """Reads rclone's --use-json-log output. A line that is not JSON (a Go panic, a shell error
    from the image) counts as an error: nothing unexpected may pass as success."""
    summary = LogSummary()
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            _add_error(summary, line)
            continue
        level = str(entry.get("level", "")).lower()
        msg = str(entry.get("msg", "")).strip()
        if isinstance(entry.get("stats"), dict):
            summary.stats = entry["stats"]
        elif level in ERROR_LEVELS and not entry.get("object") and (
                attempt := _ATTEMPT.match(msg)):  # rclone's own line: Errorf(nil, ...)
            _end_attempt(summary, msg, attempt)
        elif level in ERROR_LEVELS:
            obj = entry.get("object")
            _add_error(summary, f"{obj}: {msg}" if obj else msg)
        elif SYMLINK_NOTICE in msg:
            summary.skipped_symlinks += 1
    return summary


def _end_attempt(summary: LogSummary, msg: str, attempt: re.Match[str]) -> None:
    """A failed attempt that rclone retries: its errors become warnings. A final attempt's
    failure (N of N) stays an error; "succeeded" is no error."""
    number, of, outcome = int(attempt[1]), int(attempt[2]), attempt[3]
    if outcome == "succeeded":
        return
    if number >= of:
        _add_error(summary, msg)
        return
    summary.retries += 1
    room = MAX_KEPT_ERRORS - len(summary.retried_lines)
    summary.retried_lines += [*summary.error_lines, _shown(msg)][:max(room, 0)]
    summary.error_lines, summary.error_count = [], 0


def _shown(text: str) -> str:
    """rclone's error text as messages carry it: its URLs without query strings (core.redact)
    and the object names in it, which come from the bucket, escaped (core.text)."""
    return printable(redact(text))


def _add_error(summary: LogSummary, text: str) -> None:
    summary.error_count += 1
    if len(summary.error_lines) < MAX_KEPT_ERRORS:
        summary.error_lines.append(_shown(text))


@dataclass(frozen=True)
class ListedFile:
    path: str
    size: int
    mod_time: str

    @functools.cached_property
    def modified(self) -> datetime:
        """Parsed once: the young-file rule, the hard links and a cheap pass all read it."""
        return parse_time(self.mod_time)


def parse_listing(stdout: str) -> list[ListedFile]:
    """Parses list_command's CSV (Go's encoding/csv quotes a name holding a comma, a quote or a
    line break); raises ValueError for a row that is not path, size, time."""
    files = []
    for row in csv.reader(io.StringIO(stdout, newline="")):
        if len(row) != 3:
            raise ValueError(f"rclone lsf printed a row of {len(row)} field(s), not 3: {row!r}")
        files.append(ListedFile(row[0], int(row[1]), row[2]))
    for f in files:
        f.modified  # noqa: B018 (raises ValueError now, not later in a guard)
    return files


EXIT_MAX_DURATION = 10  # rclone's exit code when --max-duration stopped it


@dataclass(frozen=True)
class SyncVerdict:
    ok: bool
    reason: str


MAX_CAUSE = 300  # characters of rclone's last error in a failed sync's one-line reason


def _cause(log: LogSummary) -> str:
    """rclone's last error, on one line: it names the request (its URL: the endpoint) and the
    cause (`connect: connection refused`, `SlowDown`)."""
    text = " ".join(log.last_error.split())
    return f": {text[:MAX_CAUSE]}{'...' if len(text) > MAX_CAUSE else ''}" if text else ""


def judge_sync(exit_code: int, timed_out: bool, log: LogSummary) -> SyncVerdict:
    """A sync succeeded only if every signal agrees: exit 0, a final stats line with no
    errors, and no error-level line in its final attempt. Any one of them alone can be fooled.
    The errors of attempts rclone retried do not count: the final attempt found and fixed
    what they left (the run's post-sync check proves the mirror exact)."""
    if timed_out:
        return SyncVerdict(False, "the job timeout was reached; the container was killed")
    if exit_code == EXIT_MAX_DURATION:
        return SyncVerdict(False, "rclone stopped at --max-duration before finishing")
    if exit_code != 0:
        return SyncVerdict(False, f"rclone exited with code {exit_code}{_cause(log)}")
    if log.stats is None:
        return SyncVerdict(False, "rclone printed no final stats; the run cannot be verified")
    if log.stats.get("fatalError") or log.stat("errors"):
        return SyncVerdict(False, f"rclone reported {log.stat('errors')} error(s){_cause(log)}")
    if log.error_count:
        return SyncVerdict(False, f"rclone logged {log.error_count} error line(s) despite exit 0"
                                  + (" in its final attempt" if log.retries else ""))
    return SyncVerdict(True, "")
