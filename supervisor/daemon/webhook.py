"""postgres-backup-local's webhooks, received by the daemon (docs/webhook.md).

Its `hooks/00-webhook` POSTs `{"status": "pre-backup" | "post-backup" | "error"}` with curl
(`--max-time 10 --retry 5`) to `http://HOST:PORT/hooks/pbl/TOKEN`:

- post-backup: the webhook job (webhook.job, default health.dump_job) runs now, queued behind a
  run of it in progress, without the quiet period (the dump is known finished);
- pre-backup: the scheduled runs of that job wait until post-backup or error, at most the job's
  timeout (as while go-cron's Running map is not empty);
- error: the health verdict is read at once; it is CRITICAL until the next post-backup or a newer
  dump (health.verdict reads the event from state_dir, so `status` in another process agrees).

The last events and their times live in state_dir/webhook.json (postgres.hooks), the only
state `status` needs. The listener is the standard library's ThreadingHTTPServer, hardened like
every input from the network: one request per connection, 4 KiB of body, a deadline per
connection that shuts its socket (a stalled or dribbling client never holds a thread longer),
at most MAX_CONNECTIONS at once, RATE_LIMIT requests a minute, and nothing the client sent is
ever logged: the request line holds the token.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from loguru import logger

from supervisor.config.load import Config
from supervisor.core.clock import now_utc
from supervisor.postgres.hooks import ERROR, POST, after, parse_event, read_state, write_state
from supervisor.record.report import Report

WEBHOOK = "webhook"  # the reason of a run a post-backup started (ledger message, journal)
R = TypeVar("R", bound=Report)
PATH_PREFIX = "/hooks/pbl/"
MAX_BODY = 4096
RATE_LIMIT = 30  # requests a minute, all clients together
RATE_WINDOW_S = 60.0
CONNECTION_DEADLINE_S = 5.0  # the whole request: curl sends it in milliseconds
MAX_CONNECTIONS = 16


def run_config(config: Config, reason: str) -> Config:
    """The config of a run a post-backup started (reason WEBHOOK): the dump is known finished,
    so neither the quiet period nor go-cron's Running map (backup.sh is still in its post-backup
    hook while it waits for our answer) may defer it. The deletion guard (an empty or shrunk
    source) still applies. Any other run: `config` as it is."""
    if reason != WEBHOOK:
        return config
    return replace(config, guard=replace(config.guard, quiet_period_s=0.0),
                   health=replace(config.health, db_health_url=""))


def tagged(report: R, reason: str) -> R:
    """The run's report with its reason leading the message (the ledger's and the journal's)."""
    if reason:
        report.message = f"{reason}: {report.message}"
    return report


class _RateLimit:
    """At most RATE_LIMIT requests admitted in any RATE_WINDOW_S; refused ones do not count."""

    def __init__(self) -> None:
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()

    def retry_after(self) -> int:
        """0 to admit the request now, else the seconds until one would be admitted."""
        now = time.monotonic()
        with self._lock:
            while self._admitted and now - self._admitted[0] >= RATE_WINDOW_S:
                self._admitted.popleft()
            if len(self._admitted) >= RATE_LIMIT:
                return max(1, int(RATE_WINDOW_S - (now - self._admitted[0])) + 1)
            self._admitted.append(now)
            return 0


class Push:
    """The listener and what it asks of the scheduler: a run now (post-backup), a hold
    (pre-backup). `wake` wakes the scheduler loop; `check` reads the verdict now."""

    def __init__(self, wake: Callable[[], None], check: Callable[[], None]) -> None:
        self.wake, self.check = wake, check
        self.config: Config | None = None
        self._server: _Server | None = None
        self.problem = ""  # for STATUS=: the address could not be taken
        self._requested: set[str] = set()
        self._holding: dict[str, datetime] = {}  # held job -> when its hold lapses
        self._lock = threading.Lock()
        self.limit = _RateLimit()

    # -- life cycle (the loop thread)

    def configure(self, config: Config) -> None:
        """At start and each reload: listen where the config says (a failure is a warning; the
        next reload tries again). The token and job are read per request."""
        self.config = config
        listen = config.webhook.listen
        if self._server is not None and self._server.listen == listen:
            return
        self.close()
        self.problem = ""
        if listen:
            self._server = _serve(listen, self)
            if self._server is None:
                self.problem = f"webhook: cannot listen on {listen}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the scheduler's questions (the loop thread)

    def gate(self, config: Config, name: str, fire: datetime | None, now: datetime,
             busy: bool) -> tuple[datetime | None, str]:
        """When the job fires this pass (None: not now), and why: "webhook" for a run a
        post-backup asked for (queued while one is running), "" for the schedule's."""
        if name != config.webhook.job or not config.webhook.listen:
            return fire, ""
        with self._lock:
            if name in self._requested:
                if busy:
                    return None, ""  # the run in progress ends, wakes the loop, then this one
                self._requested.discard(name)
                self._holding.pop(name, None)
                return now, WEBHOOK
        until = self._held_until(config, name, now)
        if until is None and self._holding.pop(name, None) is not None:
            return now, ""  # a held run: error (or the job's timeout) ended the wait
        if until is not None and fire is not None:
            if name not in self._holding:
                logger.bind(job=name).info(
                    "{}: waiting for the dump container's backup (pre-backup at {}): the run "
                    "starts at post-backup or error, at the latest {}", name,
                    (until - timedelta(seconds=config.job(name).timeout_s)).isoformat(),
                    until.isoformat())
            self._holding[name] = until
            return None, ""
        return fire, ""

    def wakes(self) -> list[datetime]:
        """When held runs start at the latest."""
        return list(self._holding.values())

    def _held_until(self, config: Config, name: str, now: datetime) -> datetime | None:
        state = read_state(config.state_dir)
        if state.job != name or state.pre_at is None:
            return None
        until = state.pre_at + timedelta(seconds=config.job(name).timeout_s)
        return until if until > now else None

    # -- a request (a listener thread)

    def answer(self, request: _Handler, method: str) -> None:
        config = self.config
        assert config is not None  # set before the server starts
        if wait := self.limit.retry_after():
            return request.reply(429, {"Retry-After": str(wait)})
        if method != "POST":
            return request.reply(405, {"Allow": "POST"})
        path = request.path
        token = path[len(PATH_PREFIX):] if path.startswith(PATH_PREFIX) else ""
        if not (token and hmac.compare_digest(token.encode(), config.webhook_token.encode())):
            logger.warning("webhook: a POST from {} to a path without the right token: 404 "
                           "(neither is logged)", request.client_address[0])
            return request.reply(404)
        event = self._event(request)
        if event is None:
            return None
        job = str(config.webhook.job)
        try:
            write_state(config.state_dir, after(read_state(config.state_dir), job, event,
                                                 now_utc()))
        except OSError as exc:
            logger.error("webhook: {} not recorded in {}: {}", event, config.state_dir, exc)
            return request.reply(500)
        logger.bind(job=job, reason=WEBHOOK).info("webhook: {} from the dump container",
                                                  event)
        request.reply(202)
        if event == POST:
            with self._lock:
                self._requested.add(job)
        elif event == ERROR:
            self.check()  # the verdict turns CRITICAL now, and the alert goes out
        self.wake()
        return None

    def _event(self, request: _Handler) -> str | None:
        """The body's event, or None once refused (400, 411, 413)."""
        if request.headers.get("Transfer-Encoding"):
            request.reply(411)  # a length up front, or the 4 KiB cap means reading to learn it
            return None
        length = request.headers.get("Content-Length", "")
        if not length.isdigit():
            request.reply(411)
            return None
        if int(length) > MAX_BODY:
            request.reply(413)
            return None
        body = request.rfile.read(int(length))
        event = parse_event(body) if len(body) == int(length) else None  # not cut off
        if event is None:
            request.reply(400)
        return event


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CONNECTION_DEADLINE_S  # each read; the deadline below bounds the whole request
    protocol_version = "HTTP/1.0"  # one request per connection
    server_version = "ardua-backup"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # A client that dribbles its request one byte at a time is cut at the deadline.
        self._deadline = threading.Timer(CONNECTION_DEADLINE_S, _shut, (self.connection,))
        self._deadline.daemon = True
        self._deadline.start()

    def finish(self) -> None:
        self._deadline.cancel()
        with contextlib.suppress(OSError):  # the client went away, or the deadline cut it
            super().finish()

    def reply(self, code: int, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"status": code}).encode()
        self.send_response(code)
        for key, value in {"Content-Type": "application/json",
                           "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def handle_one_request(self) -> None:
        with contextlib.suppress(OSError):  # a client that stalled and was cut, or went away
            super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        """Never: the request line holds the token."""

    def do_POST(self) -> None:
        self.server.push.answer(self, "POST")

    def _not_post(self) -> None:
        self.server.push.answer(self, self.command)

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_post


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, listen: str, push: Push) -> None:
        host, _, port = listen.rpartition(":")
        self.listen, self.push = listen, push
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__((host, int(port)), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.opt(exception=True).error("webhook: a request failed")  # a bug: say where

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # as many stalled clients as slots
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def _serve(listen: str, push: Push) -> _Server | None:
    try:
        server = _Server(listen, push)
    except OSError as exc:
        logger.warning("webhook: cannot listen on {}: {}; the schedule goes on, the address is "
                       "tried again at the next reload (SIGHUP)", listen, exc.strerror or exc)
        return None
    threading.Thread(target=server.serve_forever, name="webhook", daemon=True).start()
    logger.info("webhook: listening on {} for postgres-backup-local", listen)
    return server
