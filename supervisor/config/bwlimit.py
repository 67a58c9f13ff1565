"""Bandwidth limits: rclone's `--bwlimit`, a rate or a timetable, so that uploads during
opening hours leave the uplink to the shop.

Accepted (a subset of what rclone 1.75 accepts; each form is checked against the real rclone
by the tests):

- `""`: no limit (the default);
- one rate: `"off"`, `"512k"`, `"1.5M"`, `"10Mi"`, a bare number (KiB/s), or `"UP:DOWN"`;
- a timetable: space-separated `HH:MM,RATE` entries, each optionally prefixed by a weekday
  (`Mon-08:00,1M`), e.g. `"08:00,1M 19:00,off"`.

Timetable times are in the config's `timezone`. rclone reads them in its container's zone (UTC
in an image without tzdata), so a run hands rclone the same timetable in UTC: one entry per
weekday for each daily entry, each converted with that day's UTC offset in the week of the run.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # datetime.weekday() order
_BW = r"(?:off|\d+(?:\.\d+)?(?:[bB]|[kKmMgGtTpP](?:i|iB)?)?)"
_RATE = re.compile(rf"{_BW}(?::{_BW})?", re.IGNORECASE)
_ENTRY = re.compile(r"(?:(?P<day>[A-Za-z]{3})-)?(?P<hh>\d\d):(?P<mm>\d\d),(?P<rate>\S+)")


@dataclass(frozen=True)
class Entry:
    day: int | None  # 0 = Monday; None = every day
    at: time
    rate: str


def _rate(text: str, where: str) -> str:
    if not _RATE.fullmatch(text):
        raise ValueError(f"{where}: {text!r} is not a rate (e.g. '512k', '1.5M', 'off', "
                         f"'10M:1M')")
    return text


def parse_entries(value: str) -> list[Entry] | None:
    """The timetable's entries, or None for a single rate. Raises ValueError naming the part
    that is wrong."""
    tokens = value.split()
    if len(tokens) == 1 and "," not in tokens[0]:
        _rate(tokens[0], "rate")
        return None
    entries = []
    for token in tokens:
        m = _ENTRY.fullmatch(token)
        if not m:
            raise ValueError(f"timetable entry {token!r} is not [DAY-]HH:MM,RATE "
                             f"(e.g. '08:00,1M' or 'Mon-08:00,1M')")
        day = None
        if m["day"]:
            names = [d.lower() for d in DAYS]
            if m["day"].lower() not in names:
                raise ValueError(f"timetable entry {token!r}: {m['day']!r} is not one of "
                                 f"{', '.join(DAYS)}")
            day = names.index(m["day"].lower())
        hh, mm = int(m["hh"]), int(m["mm"])
        if hh > 23 or mm > 59:
            raise ValueError(f"timetable entry {token!r}: no such time of day")
        entries.append(Entry(day, time(hh, mm), _rate(m["rate"], f"timetable entry {token!r}")))
    return entries


def parse(value: object) -> str:
    """Config parser of rclone.bwlimit and jobs.NAME.bwlimit: the value, validated."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string like '1M' or '08:00,1M 19:00,off', got {value!r}")
    text = " ".join(value.split())
    if text:
        parse_entries(text)
    return text


def for_rclone(value: str, timezone: str, now: datetime) -> str:
    """What to pass as --bwlimit for a run starting at `now` (aware): a single rate as is, a
    timetable converted from `timezone` to UTC, weekday by weekday for the week around now."""
    entries = parse_entries(value) if value else None
    if entries is None:
        return value
    zone = ZoneInfo(timezone)
    local_now = now.astimezone(zone)
    monday = (local_now - timedelta(days=local_now.weekday())).date()
    converted = []
    for entry in entries:
        for day in range(7) if entry.day is None else (entry.day,):
            local = datetime.combine(monday + timedelta(days=day), entry.at, zone)
            at = local.astimezone(UTC)
            converted.append((at.weekday(), at.hour, at.minute, entry.rate))
    converted.sort()
    return " ".join(f"{DAYS[d]}-{h:02d}:{m:02d},{rate}" for d, h, m, rate in converted)


def flags(value: str, timezone: str, now: datetime) -> list[str]:
    """`--bwlimit ...` for an upload, or nothing without a limit."""
    limit = for_rclone(value, timezone, now)
    return ["--bwlimit", limit] if limit else []
