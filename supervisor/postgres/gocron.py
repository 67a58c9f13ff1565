"""The postgres-backup-local container seen from outside: its Docker state and the JSON of its
go-cron (prodrigestivill/go-cron) health endpoint. `GET /` marshals go-cron's CurrentState:
{"Running": {PID: run, ...}, "Last": run, "Schedule": str}, a run being {"Exit_status": int,
"Stdout": str, "Stderr": str, "ExitTime": RFC 3339 or "", "Pid": int, "StartingTime": ...}.
Before the first run, Last is all zero values (ExitTime ""). Whenever Last.Exit_status != 0 the
same JSON comes with HTTP 503 (go-cron's httpserver.go handler), so a 503 is read, not taken
for an unreachable endpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import docker
import requests
from docker.errors import DockerException, NotFound

from supervisor.core import clock, http

ENDPOINT_TIMEOUT_S = 3.0
# The JSON carries the whole stdout/stderr of the last and the running backup.
MAX_REPLY_BYTES = 4 << 20


class ProbeError(Exception):
    """The container or its endpoint could not be read; one line saying why."""


@dataclass(frozen=True)
class ContainerState:
    status: str  # Docker's: running, exited, restarting, ... or "missing"
    health: str  # healthy, unhealthy, starting, or "" when the image has no healthcheck


@dataclass(frozen=True)
class CronState:
    running: bool  # a dump is being written right now (go-cron's Running map is not empty)
    last_exit_status: int | None  # None: no run since the container started
    last_exit_time: datetime | None
    last_stderr: str = ""  # the last lines of the last run's stderr (pg_dump's error, if any)


def container_state(client: docker.DockerClient, name: str) -> ContainerState:
    try:
        attrs = client.containers.get(name).attrs
    except NotFound:
        return ContainerState("missing", "")
    except (DockerException, requests.RequestException) as exc:
        raise ProbeError(f"Docker engine did not answer for container '{name}': {exc}") from None
    state = attrs.get("State") or {}
    return ContainerState(str(state.get("Status", "")), str((state.get("Health") or {})
                                                            .get("Status", "")))


def cron_state(url: str, timeout_s: float = ENDPOINT_TIMEOUT_S) -> CronState:
    """go-cron's state, read within ``timeout_s`` in all (core.http.fetch: an endpoint that
    dribbles its answer is cut at the deadline) and at most MAX_REPLY_BYTES of it."""
    try:
        answer = http.fetch(url, deadline_s=timeout_s, max_bytes=MAX_REPLY_BYTES)
    except http.HTTPProblem as exc:
        raise ProbeError(f"go-cron endpoint {url} did not answer: {exc}") from None
    # 503: go-cron's answer when the last run failed; anything else is a broken endpoint.
    if answer.status >= 400 and answer.status != 503:
        raise ProbeError(f"go-cron endpoint {url} answered HTTP {answer.status}")
    if answer.truncated:
        raise ProbeError(f"go-cron endpoint {url} sent more than {MAX_REPLY_BYTES >> 20} MiB")
    state = _parse(answer.body)
    if state is None:
        raise ProbeError(f"go-cron endpoint {url} did not return go-cron's JSON state")
    return state


def _parse(body: bytes) -> CronState | None:
    """go-cron's CurrentState, or None when the body is not that (a proxy's error page)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    last = data.get("Last") if isinstance(data, dict) else None
    if not isinstance(last, dict) or not isinstance(data.get("Running", {}), dict):
        return None
    exit_status = last.get("Exit_status")
    exit_time = _go_time(last.get("ExitTime"))  # None before the first run ends
    known = (exit_time is not None and isinstance(exit_status, int)
             and not isinstance(exit_status, bool))
    return CronState(
        running=bool(data.get("Running")),
        last_exit_status=exit_status if known else None,
        last_exit_time=exit_time,
        last_stderr=_tail(last.get("Stderr")) if known and exit_status else "",
    )


def _tail(text: object, lines: int = 3, chars: int = 400) -> str:
    """The last non-empty lines of a run's stderr, on one line: pg_dump's error comes last."""
    if not isinstance(text, str):
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-chars:]


def _go_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return clock.parse_time(value)
    except ValueError:
        return None

