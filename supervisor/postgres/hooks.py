"""postgres-backup-local's webhook events as the daemon records them (daemon.webhook), for the
daemon and for `status` in another process: state_dir/webhook.json, replaced atomically.

Its hooks/00-webhook POSTs `{"status": "pre-backup" | "post-backup" | "error"}`; backup.sh runs
the pre-backup hook before the first pg_dump, post-backup after the last, and error from its
ERR trap (prodrigestivill/docker-postgres-backup-local, backup.sh).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from supervisor.core.clock import parse_time, rfc3339
from supervisor.core.files import replace_text

PRE, POST, ERROR = "pre-backup", "post-backup", "error"
EVENTS = (PRE, POST, ERROR)
STATE_FILE = "webhook.json"
_TIMES = ("at", "pre_at", "error_at")


@dataclass(frozen=True)
class HookState:
    job: str = ""  # the upload job the events are for (webhook.job)
    event: str = ""  # the last event
    at: datetime | None = None  # its time
    pre_at: datetime | None = None  # a pre-backup not yet followed by post-backup or error
    error_at: datetime | None = None  # an error not yet followed by a post-backup


def parse_event(body: bytes) -> str | None:
    """The status of hooks/00-webhook's JSON body, or None when the body is anything else."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if status in EVENTS else None


def after(state: HookState, job: str, event: str, at: datetime) -> HookState:
    """The state once `event` arrived at `at`."""
    if event == POST:
        return HookState(job, event, at)
    if event == PRE:
        return replace(state, job=job, event=event, at=at, pre_at=at)
    return replace(state, job=job, event=event, at=at, pre_at=None, error_at=at)


def read_state(state_dir: Path) -> HookState:
    """The recorded events; an empty HookState when none (or the file is unreadable)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        times = [parse_time(data[k]) if data.get(k) else None for k in _TIMES]
        return HookState(str(data["job"]), str(data["event"]), *times)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return HookState()


def write_state(state_dir: Path, state: HookState) -> None:
    data = {"job": state.job, "event": state.event,
            **{k: rfc3339(t) if (t := getattr(state, k)) else None for k in _TIMES}}
    replace_text(state_dir / STATE_FILE, json.dumps(data))
