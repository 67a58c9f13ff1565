"""Time as ardua-backup reads and writes it: aware UTC datetimes only."""

from __future__ import annotations

from datetime import UTC, datetime


def now_utc() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    """Go timestamps as rclone and go-cron print them ('2025-12-18T01:15:04.123456789-08:00',
    '...Z') -> aware UTC datetime (Python 3.11 reads the `Z` and keeps 6 of Go's 9 digits)."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return parsed.astimezone(UTC)


def rfc3339(at: datetime) -> str:
    """An aware time as RFC 3339 in UTC with `Z` (fractions kept), as rclone reads times."""
    at = at.astimezone(UTC)
    fraction = f".{at.microsecond:06d}" if at.microsecond else ""
    return f"{at:%Y-%m-%dT%H:%M:%S}{fraction}Z"
