"""Small HTTP calls that must never hold up a backup: heartbeat and status pings, go-cron's state.

Every read here has an overall deadline and a size cap. A socket timeout alone bounds each read,
not the answer: a server that sends one byte every 2 s (whatever took go-cron's port) held
`status` for 90 s behind a 3 s timeout. So each call arms a timer that, at the deadline, shuts
down the sockets of its connections (a blocked read then returns at once), and each connection
made after that (a redirect) gets only what is left of the budget. The same urllib as before
underneath: the environment's proxy settings still apply.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from supervisor.core.redact import redact

TIMEOUT_S = 3.0  # the whole call: connect, send, status line, headers and body
BODY_LIMIT = 10_000  # healthchecks.io keeps the first 100 kB; a short tail is what people read
ANSWER_LIMIT = 64 << 10  # what a call keeps of an answer unless told otherwise
_CHUNK = 64 << 10


class HTTPProblem(Exception):
    """The call failed; one line saying why (never the URL: it may hold a token)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most the call's max_bytes
    truncated: bool  # the server sent more than max_bytes


class _Deadline:
    """One call's budget: shuts down every socket it watches when the time is up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _cut(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def _bounded(cls: type[http.client.HTTPConnection], deadline: _Deadline) -> Any:
    class Bounded(cls):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            self.timeout = deadline.remaining()  # a redirect's connection: what is left
            super().connect()
            deadline.watch(self.sock)

    return Bounded


class _HTTP(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_bounded(http.client.HTTPConnection, self._deadline), req)


class _HTTPS(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_bounded(http.client.HTTPSConnection, self._deadline), req,
                            context=self._context)


def fetch(url: str, data: bytes | None = None, *, deadline_s: float = TIMEOUT_S,
          max_bytes: int = ANSWER_LIMIT) -> Answer:
    """GET ``url`` (POST ``data``): the status and at most ``max_bytes`` of the body, whatever
    the status, all within ``deadline_s``. Raises HTTPProblem (one line, no URL)."""
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with _Deadline(deadline_s) as deadline:
        opener = urllib.request.build_opener(_HTTP(deadline), _HTTPS(deadline))
        try:
            try:
                with opener.open(request, timeout=deadline_s) as resp:
                    answer = _answer(resp.status, resp, max_bytes)
            except urllib.error.HTTPError as exc:
                with exc:
                    answer = _answer(exc.code, exc, max_bytes)
        except Exception as exc:
            if deadline.expired or isinstance(exc, TimeoutError):
                raise HTTPProblem(f"no complete answer within {deadline_s:g} s") from None
            raise HTTPProblem(_reason(exc)) from None
    if deadline.expired:  # a body cut at the deadline reads as a short one
        raise HTTPProblem(f"no complete answer within {deadline_s:g} s")
    return answer


def _answer(status: int, body: Any, max_bytes: int) -> Answer:
    kept = bytearray()
    while len(kept) <= max_bytes:
        chunk = body.read(min(_CHUNK, max_bytes + 1 - len(kept)))
        if not chunk:
            break
        kept += chunk
    return Answer(status, bytes(kept[:max_bytes]), len(kept) > max_bytes)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    text = " ".join(redact(str(exc)).split())  # urllib's texts may hold the URL (a redirect's)
    return text[:300] or type(exc).__name__


def ping(url: str, body: str | None = None) -> str:
    """GET ``url``, or POST the tail of ``body``; "" when answered with 2xx/3xx, else why not
    (one line, never the URL). Never raises, never takes longer than TIMEOUT_S (also used by
    alerts.send.status_ping)."""
    data = body.encode("utf-8")[-BODY_LIMIT:] if body is not None else None
    try:
        answer = fetch(url, data, max_bytes=1024)
    except HTTPProblem as exc:
        return str(exc)
    except Exception as exc:  # whatever breaks (a URL urllib refuses), the backup goes on
        return _reason(exc)
    return "" if answer.status < 400 else f"HTTP {answer.status}"
