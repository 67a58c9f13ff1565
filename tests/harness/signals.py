"""Signals for the pure verdict tests (health.verdict.evaluate): one destination, as an `[s3]`
config has, unless a test builds its copies itself."""

from __future__ import annotations

from datetime import datetime, timedelta

from supervisor.health.verdict import Copy, Sentinel, Signals
from supervisor.postgres.dumps import DatabaseDumps
from supervisor.storage.markers import Marker


def one_destination(now: datetime, databases: tuple[DatabaseDumps, ...] = (),
                    in_s3: bool | None = None, sentinels: tuple[Sentinel, ...] = (),
                    versioning: str | None = "Enabled", s3_error: str = "",
                    **more: object) -> Signals:
    """`in_s3`: the destination holds every database's newest dump (None: not readable). A
    good drill a day old unless `drill` is given: these tests are about other rows."""
    held = {} if in_s3 is None else {d.database: in_s3 for d in databases if d.newest}
    copy = Copy("s3", s3_error, sentinels, None if s3_error else versioning, held)
    more.setdefault("drill", Marker(now - timedelta(days=1), True, "last/ardua-x.dump", 42.0))
    return Signals(databases=databases, copies=(copy,), **more)  # type: ignore[arg-type]
