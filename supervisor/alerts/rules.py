"""When to tell a person: the alert rules (pure) and their memory (a small JSON file).

The health verdict is evaluated every ``alerts.check_every`` and after every run; a person should
hear about it only when it matters. ``decide`` gets the previous ``Memory`` and the verdict just
computed, and returns the notification to send (or None) and the memory to keep:

- a change to a state at or above ``min_state`` is sent (OK -> CRITICAL, WARNING -> CRITICAL,
  CRITICAL -> WARNING with min_state WARNING, ...);
- the same state again is not, except a reminder once ``remind_every`` has passed since the last
  notification (0 = never remind);
- OK after a non-OK state that was sent is one recovery ("OK (recovered from CRITICAL)"); OK
  after a state nobody was told about (below ``min_state``) sends nothing;
- a state below ``min_state`` is never sent and never reminded of.

``run_event`` does the same for finished runs (uploads and the restore drill, job
``restore-drill``): a run that ends failed or refused is sent once per change (failed, failed
again: one notification; failed then refused: two), a success after a sent failure is one
"recovered" note, deferred runs change nothing. Run events do not look at ``min_state``: a failed
upload or drill always needs a person.

Memory is one small JSON file (``state_dir/alerts.json``, written atomically), so a restarted
daemon neither repeats a CRITICAL it already sent nor misses a change that happened while it was
down: it compares its first verdict with the state it saw last.

Nothing here imports health.py or apprise: the verdict comes in as plain values (state, a list of
(state, text) problems, a list of (name, state, detail) check rows).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from supervisor.core.states import (
    BAD_RESULTS,
    CRITICAL,
    FAILED,
    OK,
    SEVERITY,
    SUCCESS,
    UNKNOWN,
    WARNING,
    rank,
)

MEMORY_FILE = "alerts.json"
MEMORY_VERSION = 1

# apprise's notify types (apprise.NotifyType values), kept as plain strings here
INFO_TYPE, SUCCESS_TYPE, WARNING_TYPE, FAILURE_TYPE = "info", "success", "warning", "failure"
_TYPE_OF_STATE = {OK: SUCCESS_TYPE, WARNING: WARNING_TYPE, UNKNOWN: WARNING_TYPE,
                  CRITICAL: FAILURE_TYPE}

PROBLEM, REMINDER, RECOVERY = "problem", "reminder", "recovery"
RUN_FAILED, RUN_RECOVERED = "run-failed", "run-recovered"


@dataclass(frozen=True)
class Memory:
    """What was seen and what a person was told. The default: nothing seen, nothing told."""

    state: str = OK  # the verdict state seen last
    since: datetime | None = None  # when that state began (None: not known)
    notified: str = OK  # the state a person was last told about; OK: nothing outstanding
    notified_at: datetime | None = None  # when (the last reminder counts)
    jobs: Mapping[str, str] = field(default_factory=dict)  # job -> bad result last sent


@dataclass(frozen=True)
class Notification:
    """One message for a person. ``state``/``previous`` become ALERT_STATE/ALERT_PREVIOUS."""

    kind: str  # PROBLEM, REMINDER, RECOVERY, RUN_FAILED, RUN_RECOVERED (or "test")
    state: str  # verdict: OK/WARNING/UNKNOWN/CRITICAL; runs: SUCCESS/FAILED/REFUSED
    previous: str
    title: str
    body: str
    notify_type: str  # apprise: info, success, warning, failure
    job: str = ""  # runs: the job (journald JOB)


def title_prefix(host: str) -> str:
    return f"ardua-backup on {host}"


def decide(
    previous: Memory,
    verdict_state: str,
    problems: Iterable[tuple[str, str]],
    now: datetime,
    settings: Any,
    *,
    checks: Iterable[tuple[str, str, str]] = (),
    host: str = "",
) -> tuple[Notification | None, Memory]:
    """The verdict just computed -> (what to send or None, the memory to keep).

    ``settings``: anything with ``min_state`` and ``remind_every_s`` (config.AlertsConfig).
    ``problems``: (state, text) diagnoses; ``checks``: (name, state, detail) table rows, of which
    the non-OK ones go in the body. ``now`` must be timezone-aware.
    """
    state, floor = verdict_state, rank(settings.min_state)
    rank(state)
    problems, checks = list(problems), list(checks)
    since = previous.since if state == previous.state and previous.since else now
    memory = replace(previous, state=state, since=since)
    prefix = title_prefix(host)

    if state == OK:
        if previous.notified == OK:
            return None, memory
        was = previous.notified
        body = f"All checks pass again: {was} was reported at {_when(previous.notified_at)}"
        body += "." if previous.state == was else f"; the state seen last was {previous.state}."
        note = Notification(RECOVERY, OK, previous.state, f"{prefix}: OK (recovered from {was})",
                            body, SUCCESS_TYPE)
        return note, replace(memory, notified=OK, notified_at=now)

    if rank(state) < floor:  # below min_state: nobody is told, and nothing to remind of
        return None, memory

    kind = title = ""
    if state != previous.state or state != previous.notified:
        kind, title = PROBLEM, f"{prefix}: {state}"
    elif _reminder_due(previous, now, settings.remind_every_s):
        kind, title = REMINDER, f"{prefix}: {state} (reminder: since {_when(since)})"
    if not kind:
        return None, memory
    note = Notification(kind, state, previous.state, title, verdict_body(problems, checks),
                        _TYPE_OF_STATE[state])
    return note, replace(memory, notified=state, notified_at=now)


def _reminder_due(previous: Memory, now: datetime, every_s: float) -> bool:
    if every_s <= 0:
        return False
    if previous.notified_at is None:
        return True  # told, but not when (a memory file written by hand): remind now
    return (now - previous.notified_at).total_seconds() >= every_s


def verdict_body(problems: list[tuple[str, str]], checks: list[tuple[str, str, str]]) -> str:
    """The diagnoses, each with its own severity, worst first; then the table's failing rows."""
    ordered = sorted(problems, key=lambda p: -rank(p[0]) if p[0] in SEVERITY else 0)
    lines = [f"{level}: {text}" for level, text in ordered]
    failing = [c for c in checks if c[1] != OK]
    if failing:
        name_w = max(len(c[0]) for c in failing)
        state_w = max(len(c[1]) for c in failing)
        lines += ["", "Failing checks:"]
        lines += [f"  {n:<{name_w}}  {s:<{state_w}}  {d}".rstrip() for n, s, d in failing]
    return "\n".join(lines) or "(no diagnosis given)"


def run_event(
    previous: Memory, job: str, result: str, message: str, now: datetime, *, host: str = ""
) -> tuple[Notification | None, Memory]:
    """A finished run (or drill) -> (what to send or None, the memory to keep).

    ``result``: success, failed, refused or deferred (report.py's words; the drill's report uses
    the same). ``message``: the run's summary, sent as the body of a failure.
    """
    last = previous.jobs.get(job, SUCCESS)
    prefix = title_prefix(host)
    if result in BAD_RESULTS:
        if result == last:
            return None, previous
        note = Notification(RUN_FAILED, result.upper(), last.upper(), f"{prefix}: {job} {result}",
                            message.strip() or f"{job} {result}",
                            FAILURE_TYPE if result == FAILED else WARNING_TYPE, job)
        return note, replace(previous, jobs={**previous.jobs, job: result})
    if result == SUCCESS and last in BAD_RESULTS:
        body = f"{job} succeeded again at {_when(now)} (the last run reported was {last})."
        if message.strip():
            body += "\n\n" + message.strip()
        note = Notification(RUN_RECOVERED, SUCCESS.upper(), last.upper(),
                            f"{prefix}: {job} OK (recovered from {last})", body, SUCCESS_TYPE, job)
        return note, replace(previous, jobs={k: v for k, v in previous.jobs.items() if k != job})
    return None, previous  # success after success, deferred, anything else: nothing changed


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "an unknown time"


# -- the memory file ------------------------------------------------------------------------------


def memory_path(state_dir: Path) -> Path:
    return Path(state_dir) / MEMORY_FILE


def load_memory(state_dir: Path) -> Memory:
    """The memory kept in ``state_dir/alerts.json``; a fresh one when there is none.

    An unreadable or corrupt file is logged and replaced by a fresh memory: the worst that can
    happen is that a current problem is sent once more, never that one is kept quiet.
    """
    path = memory_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Memory()
    except (OSError, ValueError) as exc:
        logger.warning(f"alerts: {path} unreadable ({exc}); starting with an empty alert memory")
        return Memory()
    try:
        return _from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        logger.warning(f"alerts: {path} is not an alert memory ({exc}); starting afresh")
        return Memory()


def save_memory(state_dir: Path, memory: Memory) -> None:
    """Atomically (temp file in the same directory, fsync, os.replace); 0600 like the rest."""
    path = memory_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_to_json(memory), indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _to_json(m: Memory) -> dict[str, Any]:
    return {
        "version": MEMORY_VERSION,
        "verdict": {"state": m.state, "since": _iso(m.since), "notified": m.notified,
                    "notified_at": _iso(m.notified_at)},
        "jobs": dict(sorted(m.jobs.items())),
    }


def _from_json(data: dict[str, Any]) -> Memory:
    if data.get("version") != MEMORY_VERSION:
        raise ValueError(f"version {data.get('version')!r}")
    v = data["verdict"]
    state, notified = str(v["state"]), str(v["notified"])
    rank(state), rank(notified)
    jobs = {str(k): str(r) for k, r in data.get("jobs", {}).items() if r in BAD_RESULTS}
    return Memory(state, _parse_iso(v.get("since")), notified, _parse_iso(v.get("notified_at")),
                  jobs)


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def _parse_iso(text: Any) -> datetime | None:
    if text is None:
        return None
    at = datetime.fromisoformat(str(text))
    return at if at.tzinfo else at.replace(tzinfo=UTC)
