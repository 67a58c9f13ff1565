"""The marker objects the daemon writes beside a mirror, and the one timestamp format they and
every report use (UTC, second precision: `2025-12-18T01:15:04Z`).

- `PREFIX/.last_success`: `<ts> OK`, written only after a verified upload.
- `<db prefix>/.last_restore_drill`: `<ts> OK|FAIL <dump keys> <RTO seconds>s`.

Both are kept out of every sync (rclone excludes them), of the deletion guard's counts and of
the receipts spot check. Each format's reader sits beside its writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

SENTINEL_NAME = ".last_success"
DRILL_MARKER_NAME = ".last_restore_drill"
MARKER_NAMES = (SENTINEL_NAME, DRILL_MARKER_NAME)
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def timestamp(when: datetime) -> str:
    """`2025-12-18T01:15:04Z`: the UTC second of an aware datetime."""
    return when.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def sentinel_key(prefix: str) -> str:
    return f"{prefix}/{SENTINEL_NAME}"


def format_sentinel(when: datetime) -> str:
    return f"{timestamp(when)} OK\n"


def parse_sentinel(body: str) -> datetime:
    """'2025-12-18T01:15:04Z OK' -> aware UTC datetime; ValueError for anything else."""
    parts = body.strip().split(" ")
    if len(parts) != 2 or parts[1] != "OK":
        raise ValueError(f"not a sentinel body: {body[:60]!r}")
    return parse_timestamp(parts[0])


@dataclass(frozen=True)
class Marker:
    """A restore drill's record."""

    at: datetime
    ok: bool
    dump_key: str
    seconds: float


def drill_marker_key(db_prefix: str) -> str:
    return f"{db_prefix}/{DRILL_MARKER_NAME}"


def format_marker(when: datetime, ok: bool, dump_key: str, seconds: float) -> str:
    return f"{timestamp(when)} {'OK' if ok else 'FAIL'} {dump_key or '-'} {seconds:.0f}s\n"


def parse_marker(body: str) -> Marker:
    """What format_marker wrote (read back by `status`); ValueError for anything else."""
    parts = body.strip().split(" ")
    if len(parts) != 4 or parts[1] not in ("OK", "FAIL") or not parts[3].endswith("s"):
        raise ValueError(f"not a restore drill record: {body[:80]!r}")
    return Marker(parse_timestamp(parts[0]), parts[1] == "OK", parts[2], float(parts[3][:-1]))
