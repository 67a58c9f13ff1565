"""Cron fire times with Vixie-cron DST semantics, and the catch-up decision.

cronsim does the calendar work: given a zone-aware start it reproduces Debian cron across DST (a
fixed time skipped by spring-forward fires right after the jump, a fixed time repeated by fall-back
fires once, hourly and finer jobs fire in both repeated hours). Two things are left to us:

- cronsim iterates fixed-time expressions on naive wall-clock time, so a start inside the *second*
  repeated hour can yield the first occurrence, which is earlier in absolute time. Every result is
  therefore compared in UTC and anything not strictly after the start is dropped.
- Aware datetimes that share a tzinfo compare by wall time (fold is ignored), so all comparisons
  here go through UTC.

Catch-up (anacron-like): a job's cursor is the instant up to which its fires were handled (at
start-up: the start of its last completed run). If any fire lies in (cursor, now], the job runs once
now, however many fires were missed: a mirror sync only needs the latest state, so a burst of missed
fires coalesces into one run. With ``catch_up = false`` only fires within ``GRACE`` of now count, so
a daemon restart or a late wake-up does not lose the run that was just due, but a long outage is not
made up for. A job with no recorded run is treated the same way: a fresh install does not start
every job at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

# Long enough to cover a systemd restart or a reboot, short enough that "catch_up = false" still
# means "skip runs missed during a real outage".
GRACE = timedelta(minutes=15)


def next_fires(expr: str, tz: ZoneInfo, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times strictly after ``after`` (aware), as aware datetimes in ``tz``."""
    if after.tzinfo is None:
        raise ValueError("'after' must be timezone-aware")
    after_utc = after.astimezone(UTC)
    fires: list[datetime] = []
    for fire in CronSim(expr, after.astimezone(tz)):
        fire_utc = fire.astimezone(UTC)
        if fire_utc <= after_utc or (fires and fire_utc <= fires[-1].astimezone(UTC)):
            continue
        # Normalise through UTC so the offset and fold are right for the instant.
        fires.append(fire_utc.astimezone(tz))
        if len(fires) >= n:
            break
    return fires


def next_fire(expr: str, tz: ZoneInfo, after: datetime) -> datetime:
    return next_fires(expr, tz, after, 1)[0]


def missed_fire(
    expr: str,
    tz: ZoneInfo,
    *,
    since: datetime | None,
    now: datetime,
    catch_up: bool,
    grace: timedelta = GRACE,
) -> datetime | None:
    """The first fire in (since, now] that should still run now, or None.

    ``since`` is the job's cursor (last handled instant or start of its last run); None means no
    history. See the module docstring for the rules.
    """
    floor = now - grace
    lower = since if catch_up and since is not None else max(since or floor, floor)
    fire = next_fire(expr, tz, lower)
    return fire if fire.astimezone(UTC) <= now.astimezone(UTC) else None


def parse_after(after: datetime | None, tz: ZoneInfo) -> datetime:
    """--after: now by default; a naive time is read as wall time in the config's timezone."""
    if after is None:
        return datetime.now(tz)
    return after if after.tzinfo is not None else after.replace(tzinfo=tz)
