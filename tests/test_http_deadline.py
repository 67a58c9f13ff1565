"""Issue 27 item 2: every HTTP read the product makes has an overall deadline and a size cap. A
real server on 127.0.0.1 that sends one byte a second (a socket timeout is per read: each byte
resets it) against go-cron's probe, the heartbeat and status pings and the alert webhooks:
each lets go within its deadline with one clear line. And a ping failure names scheme://host,
never the token in the URL's path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from supervisor.alerts import send
from supervisor.core import http
from supervisor.core.states import FAILED
from supervisor.postgres import gocron
from supervisor.record.heartbeat import Heartbeat
from supervisor.record.report import RunReport
from tests.harness.dribble import DribblingServer
from tests.harness.loglines import captured
from tests.harness.poll import timed

TOKEN = "3f1c9e2a-6b7d-4e8f-9a0b-c1d2e3f4a5b6"


@pytest.fixture(params=["body", "headers"])
def dribbler(request) -> Iterator[DribblingServer]:
    with DribblingServer(every_s=0.5, in_headers=request.param == "headers") as server:
        yield server


@pytest.fixture
def logged() -> Iterator[list[str]]:
    with captured("DEBUG") as lines:
        yield lines


def test_fetch_lets_go_of_a_dribbling_server_at_its_deadline(dribbler) -> None:
    outcome, spent = timed(lambda: http.fetch(dribbler.url, deadline_s=1.5))
    assert isinstance(outcome, http.HTTPProblem)
    assert str(outcome) == "no complete answer within 1.5 s"
    assert 1.4 < spent < 3.0
    assert dribbler.connections == 1


def test_go_cron_probe_of_a_dribbling_endpoint_ends_within_its_deadline(dribbler) -> None:
    outcome, spent = timed(lambda: gocron.cron_state(f"{dribbler.url}/"))
    assert isinstance(outcome, gocron.ProbeError)
    assert str(outcome) == (f"go-cron endpoint {dribbler.url}/ did not answer: no complete "
                            f"answer within {gocron.ENDPOINT_TIMEOUT_S:g} s")
    assert spent < 2 * gocron.ENDPOINT_TIMEOUT_S


def test_heartbeat_ping_ends_within_its_deadline_and_logs_no_token(dribbler, logged) -> None:
    job = type("Job", (), {"name": "db-upload", "heartbeat_url": f"{dribbler.url}/{TOKEN}"})()
    at = datetime.now(UTC)
    report = RunReport("db-upload", "run-1", FAILED, 1, at, at, 0.0)
    outcome, spent = timed(lambda: Heartbeat(job).finish(report))  # type: ignore[arg-type]
    assert outcome is None and spent < 2 * http.TIMEOUT_S
    assert logged == [f"db-upload: heartbeat ping to http://127.0.0.1 failed: no complete answer "
                      f"within {http.TIMEOUT_S:g} s"]


def test_status_ping_ends_within_its_deadline_and_logs_no_token(dribbler, logged) -> None:
    outcome, spent = timed(lambda: send.status_ping(f"{dribbler.url}/ping/{TOKEN}", ok=True))
    assert outcome is False and spent < 2 * http.TIMEOUT_S
    assert logged == [f"alerts: status ping to http://127.0.0.1 failed: no complete answer "
                      f"within {http.TIMEOUT_S:g} s"]


def test_an_alert_webhook_that_dribbles_does_not_hold_the_sender(dribbler) -> None:
    """apprise's own call deadline bounds the send (its worker thread is abandoned to the
    server: see docs/security.md)."""
    url = f"json://127.0.0.1:{dribbler.port}/{TOKEN}"
    outcome, spent = timed(lambda: send.test_all([url], host="test", timeout_s=2.0))
    assert spent < 4.0
    assert [(shown, ok) for shown, ok, _ in outcome] == [("json://127.0.0.1", False)]
    assert TOKEN not in str(outcome)


class _Plain(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"x" * (200 << 10) if self.path == "/big" else b"ok"
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def plain() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_fetch_caps_the_answer_and_reads_error_statuses(plain) -> None:
    big = http.fetch(f"{plain}/big", max_bytes=1000)
    assert (big.status, len(big.body), big.truncated) == (200, 1000, True)
    small = http.fetch(f"{plain}/small")
    assert (small.status, small.body, small.truncated) == (200, b"ok", False)
    assert http.fetch(f"{plain}/missing").status == 404
    assert http.ping(f"{plain}/missing") == "HTTP 404"
    assert http.ping(f"{plain}/small") == ""
    assert http.ping("http://127.0.0.1:9/") == "[Errno 111] Connection refused"
