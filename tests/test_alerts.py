"""Alerts: the rules (pure and a property test), their memory across a restart, and real delivery
through apprise to receivers on 127.0.0.1 (an HTTP server for json://, aiosmtpd for mailto://, a
closed port and a server that accepts and never answers), the 0600 URLs file, redaction and the
journald fields."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from supervisor.alerts import alerter as alerts
from supervisor.alerts import rules as alertstate
from supervisor.alerts import send as alertsend
from supervisor.alerts.rules import PROBLEM, RECOVERY, REMINDER, Memory, decide, run_event
from supervisor.config import alerts as alertconfig
from supervisor.config import load as config
from supervisor.config.load import AlertsConfig as AlertSettings
from supervisor.core.states import CRITICAL, OK, SEVERITY, UNKNOWN, WARNING
from supervisor.record import journal as logs
from tests.harness.configs import MINIMAL
from tests.harness.poll import poll

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DEFAULTS = AlertSettings()
STALE = ("CRITICAL", "DB backup not producing new data (pipeline healthy): ardua")
DRILL = ("WARNING", "Restore drill overdue: last good drill 9.0 d ago")
CHECKS = [("dump ardua", "CRITICAL", "last/ardua-20260228-010000.dump, 48.0 h old"),
          ("sentinel db-upload", "OK", "0.5 h old"),
          ("restore drill", "WARNING", "9.0 d old")]
SECRET = "tok3nS3cr3t"  # in every URL's path: must never show up in a log line


# -- pure rules ---------------------------------------------------------------------------------


def test_critical_arrives_once_then_reminds_after_remind_every() -> None:
    note, mem = decide(Memory(), CRITICAL, [STALE, DRILL], T0, DEFAULTS, checks=CHECKS, host="h1")
    assert note is not None and note.kind == PROBLEM
    assert note.title == "ardua-backup on h1: CRITICAL"
    assert (note.state, note.previous, note.notify_type) == (CRITICAL, OK, "failure")
    # the design's words, each with its own severity, worst first; then the failing rows only
    lines = note.body.splitlines()
    assert lines[:2] == ["CRITICAL: " + STALE[1], "WARNING: " + DRILL[1]]
    assert "Failing checks:" in lines
    assert any(line.split()[:3] == ["dump", "ardua", "CRITICAL"] for line in lines)
    assert not any("sentinel" in line for line in lines)

    again, mem2 = decide(mem, CRITICAL, [STALE], T0 + timedelta(hours=23, minutes=59), DEFAULTS)
    assert again is None
    reminder, mem3 = decide(mem2, CRITICAL, [STALE], T0 + timedelta(hours=24), DEFAULTS,
                            host="h1")
    assert reminder is not None and reminder.kind == REMINDER
    assert reminder.title.startswith("ardua-backup on h1: CRITICAL (reminder: since 2026-03-02")
    assert decide(mem3, CRITICAL, [STALE], T0 + timedelta(hours=25), DEFAULTS)[0] is None


def test_worse_notifies_and_recovery_is_sent_once() -> None:
    _, mem = decide(Memory(), WARNING, [DRILL], T0, DEFAULTS)
    worse, mem = decide(mem, CRITICAL, [STALE, DRILL], T0 + timedelta(minutes=15), DEFAULTS)
    assert worse is not None and (worse.state, worse.previous) == (CRITICAL, WARNING)
    back, mem = decide(mem, OK, [], T0 + timedelta(minutes=30), DEFAULTS, host="h1")
    assert back is not None and back.kind == RECOVERY
    assert back.title == "ardua-backup on h1: OK (recovered from CRITICAL)"
    assert back.notify_type == "success"
    assert decide(mem, OK, [], T0 + timedelta(minutes=45), DEFAULTS)[0] is None
    assert decide(mem, OK, [], T0 + timedelta(days=3), DEFAULTS)[0] is None  # no OK reminders


def test_ok_to_ok_is_silent() -> None:
    note, mem = decide(Memory(), OK, [], T0, DEFAULTS)
    assert note is None and decide(mem, OK, [], T0 + timedelta(hours=30), DEFAULTS)[0] is None


def test_min_state_critical_ignores_warning() -> None:
    only_critical = AlertSettings(min_state=CRITICAL)
    note, mem = decide(Memory(), WARNING, [DRILL], T0, only_critical)
    assert note is None
    assert decide(mem, WARNING, [DRILL], T0 + timedelta(days=2), only_critical)[0] is None
    # nobody was told about the WARNING: its end is no "recovery" either
    assert decide(mem, OK, [], T0 + timedelta(days=2), only_critical)[0] is None
    crit, mem = decide(mem, CRITICAL, [STALE], T0 + timedelta(days=3), only_critical)
    assert crit is not None and crit.state == CRITICAL


def test_remind_every_zero_never_reminds() -> None:
    never = AlertSettings(remind_every_s=0)
    _, mem = decide(Memory(), CRITICAL, [STALE], T0, never)
    assert decide(mem, CRITICAL, [STALE], T0 + timedelta(days=30), never)[0] is None


def test_restart_reloads_memory_no_repeat_and_no_missed_change(tmp_path: Path) -> None:
    note, mem = decide(Memory(), CRITICAL, [STALE], T0, DEFAULTS)
    assert note is not None
    alertstate.save_memory(tmp_path, mem)
    assert alertstate.load_memory(tmp_path) == mem  # what a restarted daemon starts from
    assert oct(alertstate.memory_path(tmp_path).stat().st_mode & 0o777) == "0o600"
    assert list(tmp_path.iterdir()) == [alertstate.memory_path(tmp_path)]  # no temp file left
    # restarted an hour later, still CRITICAL: not sent again
    restarted = alertstate.load_memory(tmp_path)
    assert decide(restarted, CRITICAL, [STALE], T0 + timedelta(hours=1), DEFAULTS)[0] is None
    # fixed while the daemon was down: the first verdict after the restart is the recovery
    back, _ = decide(restarted, OK, [], T0 + timedelta(hours=2), DEFAULTS)
    assert back is not None and back.kind == RECOVERY


def test_corrupt_memory_file_starts_afresh(tmp_path: Path) -> None:
    alertstate.memory_path(tmp_path).write_text("{not json")
    assert alertstate.load_memory(tmp_path) == Memory()
    alertstate.memory_path(tmp_path).write_text('{"version": 1, "verdict": {"state": "BAD"}}')
    assert alertstate.load_memory(tmp_path) == Memory()


def test_run_events_once_per_change(tmp_path: Path) -> None:
    first, mem = run_event(Memory(), "db-upload", "failed", "db-upload run r1 FAILED: exit 1",
                           T0, host="h1")
    assert first is not None and first.title == "ardua-backup on h1: db-upload failed"
    assert (first.state, first.previous, first.job) == ("FAILED", "SUCCESS", "db-upload")
    assert "exit 1" in first.body
    assert run_event(mem, "db-upload", "failed", "again", T0 + timedelta(hours=1))[0] is None
    assert run_event(mem, "db-upload", "deferred", "", T0 + timedelta(hours=2))[0] is None
    # another job is remembered on its own; the memory survives a restart
    drill, mem = run_event(mem, "restore-drill", "failed", "restore failed", T0, host="h1")
    assert drill is not None and drill.job == "restore-drill"
    alertstate.save_memory(tmp_path, mem)
    mem = alertstate.load_memory(tmp_path)
    assert run_event(mem, "db-upload", "failed", "", T0 + timedelta(hours=3))[0] is None
    refused, mem = run_event(mem, "db-upload", "refused", "guard", T0 + timedelta(hours=4))
    assert refused is not None and refused.previous == "FAILED"
    back, mem = run_event(mem, "db-upload", "success", "ok", T0 + timedelta(hours=5), host="h1")
    assert back is not None and back.title == "ardua-backup on h1: db-upload OK (recovered " \
        "from refused)"
    assert run_event(mem, "db-upload", "success", "ok", T0 + timedelta(hours=6))[0] is None
    assert mem.jobs == {"restore-drill": "failed"}


# -- property: random sequences of verdicts ------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    min_state=st.sampled_from([WARNING, UNKNOWN, CRITICAL]),
    remind_h=st.sampled_from([0, 1, 24]),
    steps=st.lists(
        st.tuples(st.sampled_from(SEVERITY), st.integers(0, 30 * 60),
                  st.integers(0, 4).map(lambda n: n == 0)),  # a restart before 1 step in 5
        min_size=1, max_size=40),
)
def test_rules_hold_for_any_sequence(
    min_state: str, remind_h: int, steps: list[tuple[str, int, bool]]
) -> None:
    rules = AlertSettings(min_state=min_state, remind_every_s=remind_h * 3600)
    floor = SEVERITY.index(min_state)
    mem, now, before = Memory(), T0, OK
    last_sent_at: datetime | None = None
    outstanding: str = OK  # the non-OK state a person was told about and not yet told is over
    with tempfile.TemporaryDirectory() as state_dir:
        for state, minutes, restart in steps:
            now += timedelta(minutes=minutes)
            if restart:  # a daemon restart: only what the file kept
                alertstate.save_memory(Path(state_dir), mem)
                mem = alertstate.load_memory(Path(state_dir))
            note, mem = decide(mem, state, [(state, "x")] if state != OK else [], now, rules)
            if state == before:  # no repeat while the state stays, but for a due reminder
                due = (remind_h > 0 and last_sent_at is not None
                       and now - last_sent_at >= timedelta(hours=remind_h))
                if note is not None:
                    assert note.kind == REMINDER and due
                elif state != OK and SEVERITY.index(state) >= floor:
                    assert not due, "a reminder was due and not sent"
            elif state != OK and SEVERITY.index(state) >= floor:  # a change worth telling
                assert note is not None and note.kind == PROBLEM and note.state == state
            if state != OK and SEVERITY.index(state) < floor:
                assert note is None
            if note is not None and note.kind == RECOVERY:
                assert outstanding != OK, "recovery without a problem sent before"
            if state == OK:  # a recovery exactly when a problem was sent and not yet undone
                assert (note is not None) == (outstanding != OK)
            if note is not None:
                last_sent_at = now
                outstanding = OK if note.kind == RECOVERY else note.state
            before = state


# -- the URLs file and redaction ----------------------------------------------------------------


def _urls_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "alert-urls"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_urls_file_read_comments_blank_lines(tmp_path: Path) -> None:
    path = _urls_file(tmp_path, f"# ops\n\n  json://127.0.0.1:9/{SECRET}  \n"
                                "ntfys://ntfy.sh/topic-x\n# mailto://x\n")
    assert alertconfig.load_urls(path) == [f"json://127.0.0.1:9/{SECRET}",
                                           "ntfys://ntfy.sh/topic-x"]


def test_urls_file_0644_missing_empty_or_bad_line_is_an_error_naming_it(tmp_path: Path) -> None:
    loose = _urls_file(tmp_path, f"json://127.0.0.1:9/{SECRET}\n", 0o644)
    with pytest.raises(ValueError, match=r"alerts.urls_file .*/alert-urls is readable by other "
                                         r"users \(mode 0644\); run: chmod 600 .*/alert-urls"):
        alertconfig.load_urls(loose)
    with pytest.raises(ValueError, match="does not exist"):
        alertconfig.load_urls(tmp_path / "nope")
    with pytest.raises(ValueError, match="holds no URL"):
        alertconfig.load_urls(_urls_file(tmp_path, "# nothing yet\n\n"))
    bad = _urls_file(tmp_path, f"json://127.0.0.1:9/ok\n\nnope://{SECRET}@host/x\n")
    with pytest.raises(ValueError, match=r"alert-urls line 3: apprise has no 'nope://' service")\
            as err:
        alertconfig.load_urls(bad)
    assert SECRET not in str(err.value)
    rejected = _urls_file(tmp_path, f"mailto://{SECRET}:pw@127.0.0.1:25?from=nobody\n")
    with pytest.raises(ValueError, match=r"line 1: apprise cannot use this mailto:// URL") as err:
        alertconfig.load_urls(rejected)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(("url", "shown"), [
    (f"json://127.0.0.1:8080/{SECRET}", "json://127.0.0.1"),
    (f"mailtos://ops:{SECRET}@mail.example.com?to=ops@example.com", "mailtos://mail.example.com"),
    (f"ntfys://ntfy.sh/{SECRET}", "ntfys://ntfy.sh"),
    (f"ntfys://{SECRET}", "ntfys://***"),  # cloud mode: that host is the topic
    (f"tgram://123456789:{SECRET}/42", "tgram://***"),  # a bot token where a host would be
    (f"discord://4174216298/{SECRET}", "discord://***"),
    (f"https://hc-ping.com/{SECRET}", "https://hc-ping.com"),
    (f"nope://{SECRET}", "nope://***"),
    (SECRET, "***"),
])
def test_describe_url_shows_scheme_and_host_only(url: str, shown: str) -> None:
    assert alertsend.describe_url(url) == shown


def _alerts_config(table: str) -> config.Config:
    return config.parse(MINIMAL + "[alerts]\n" + table, Path("/etc/c.toml"))


def test_settings_parse_and_errors() -> None:
    got = _alerts_config('urls_file = "/etc/ardua-backup/alert-urls"\ncheck_every = "15m"\n'
                         'min_state = "critical"\nremind_every = "12h"\n'
                         'status_ping_url = "https://hc-ping.com/abc/"\n').alerts
    assert got == AlertSettings(Path("/etc/ardua-backup/alert-urls"), 900.0, CRITICAL, 43200.0,
                                "https://hc-ping.com/abc")
    assert config.parse(MINIMAL, Path("/etc/c.toml")).alerts == AlertSettings()
    assert _alerts_config('remind_every = "0"').alerts.remind_every_s == 0
    for table, message in [
        ('urls = "/x"', "/etc/c.toml: alerts.urls: unknown key"),
        ('min_state = "OK"', "alerts.min_state: must be one of WARNING, UNKNOWN, CRITICAL"),
        ('check_every = "soon"', "alerts.check_every: 'soon' is not a duration"),
        ('urls_file = "alert-urls"', "alerts.urls_file: 'alert-urls' must be an absolute path"),
        (f'status_ping_url = "hc://{SECRET}"', "alerts.status_ping_url: must be an http"),
    ]:
        with pytest.raises(config.ConfigError, match=message) as err:
            _alerts_config(table)
        assert SECRET not in str(err.value)


def test_a_readable_urls_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """config.load reads the URLs file: a 0644 one stops a start (78) and a reload."""
    urls = tmp_path / "alert-urls"
    urls.write_text(f"json://127.0.0.1:9/{SECRET}\n")
    urls.chmod(0o644)
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + f'[alerts]\nurls_file = "{urls}"\n')
    with pytest.raises(config.ConfigError, match=f"{path}: alerts.urls_file {urls} is readable "
                                                 f"by other users .* chmod 600") as err:
        config.load(path)
    assert SECRET not in str(err.value)
    urls.chmod(0o600)
    assert config.load(path).alert_urls == (f"json://127.0.0.1:9/{SECRET}",)


# -- receivers on 127.0.0.1 ---------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_receiver() -> Iterator[Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[_Mailbox, int]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1: no TLS, no auth."""
    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A TCP server that accepts every connection and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


@pytest.fixture
def closed_port() -> int:
    return _free_port()  # bound, then closed: nothing listens there


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, Any]]]:
    """Every loguru record meanwhile: message, level, extra."""
    lines: list[dict[str, Any]] = []
    sink = logger.add(lambda m: lines.append({"message": m.record["message"],
                                              "level": m.record["level"].name,
                                              "extra": dict(m.record["extra"])}),
                      level="DEBUG")
    yield lines
    logger.remove(sink)


def _no_secret_anywhere(lines: list[dict[str, Any]], capfd: pytest.CaptureFixture[str]) -> None:
    """Neither our log records nor anything printed (apprise's own logger included) holds a
    URL's token or a whole URL: scheme://host is all that may show."""
    out, err = capfd.readouterr()
    for text in [*(json.dumps(line, default=str) for line in lines), out, err]:
        assert SECRET not in text
        assert not re.search(r"\w+://127\.0\.0\.1:\d", text), text


# -- real delivery ------------------------------------------------------------------------------


def _critical_note(host: str = "h1") -> alertstate.Notification:
    note, _ = decide(Memory(), CRITICAL, [STALE, DRILL], T0, DEFAULTS, checks=CHECKS, host=host)
    assert note is not None
    return note


def test_json_delivery_posts_title_message_type(http_receiver: Any, log_lines: list,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    url = f"json://127.0.0.1:{http_receiver.server_port}/hook/{SECRET}"
    result = alertsend.send(_critical_note(), [url])
    assert (result.sent, result.total, result.failures) == (1, 1, [])
    [(method, path, body)] = http_receiver.seen
    assert (method, path) == ("POST", f"/hook/{SECRET}")
    payload = json.loads(body)
    assert payload["title"] == "ardua-backup on h1: CRITICAL"
    assert payload["type"] == "failure"
    assert payload["message"].startswith("CRITICAL: DB backup not producing new data (pipeline "
                                         "healthy): ardua\nWARNING: Restore drill overdue")
    assert "dump ardua" in payload["message"]
    _no_secret_anywhere(log_lines, capfd)


def test_mailto_delivery_to_a_real_smtp_server(smtp: tuple[_Mailbox, int]) -> None:
    box, port = smtp
    url = f"mailto://127.0.0.1:{port}?from=ardua@backup.example&to=ops@shop.example"
    assert alertsend.check_url(url) == ""
    result = alertsend.send(_critical_note("books-host"), [url])
    assert (result.sent, result.total) == (1, 1), result.failures
    envelope = poll(lambda: box.messages and box.messages[0], "the e-mail", timeout=5)
    assert envelope.rcpt_tos == ["ops@shop.example"]
    mail = message_from_bytes(envelope.content, policy=policy.default)
    assert mail["Subject"] == "ardua-backup on books-host: CRITICAL"
    text = mail.get_body(("plain",)).get_content()
    assert "CRITICAL: DB backup not producing new data (pipeline healthy): ardua" in text
    assert "WARNING: Restore drill overdue" in text


def test_dead_urls_are_bounded_failures_with_redacted_urls(
    http_receiver: Any, hung_port: int, closed_port: int, log_lines: list,
    capfd: pytest.CaptureFixture[str],
) -> None:
    urls = [f"json://127.0.0.1:{hung_port}/{SECRET}",
            f"json://127.0.0.1:{closed_port}/{SECRET}",
            f"ntfy://127.0.0.1:{closed_port}/{SECRET}",  # ntfy quotes its topic when it fails
            f"json://127.0.0.1:{http_receiver.server_port}/{SECRET}"]
    started = time.monotonic()
    result = alertsend.send(_critical_note(), urls, timeout_s=1.5)
    spent = time.monotonic() - started
    assert spent < 3.0, f"a dead URL held the send for {spent:.1f}s (bound 1.5s)"
    assert (result.sent, result.total) == (1, 4)
    assert len(http_receiver.seen) == 1  # the live one was not held up by the dead ones
    assert [d.ok for d in result.deliveries] == [False, False, False, True]
    assert all(f.startswith(("json://127.0.0.1: ", "ntfy://127.0.0.1: ")) for f in
               result.failures)
    # the hung one: apprise's deadline, or the socket timeout capped at the same bound
    assert re.search(r"did not finish|Connection error", result.failures[0])
    warned = [line["message"] for line in log_lines if line["level"] == "WARNING"]
    assert len(warned) == 3 and all("alerts: sending to " in w for w in warned)
    _no_secret_anywhere(log_lines, capfd)


def test_all_urls_reports_each(http_receiver: Any, closed_port: int, log_lines: list,
                               capfd: pytest.CaptureFixture[str]) -> None:
    rows = alertsend.test_all([f"json://127.0.0.1:{http_receiver.server_port}/{SECRET}",
                               f"json://127.0.0.1:{closed_port}/{SECRET}"], host="h1",
                              timeout_s=3)
    assert [(shown, ok) for shown, ok, _ in rows] == [("json://127.0.0.1", True),
                                                       ("json://127.0.0.1", False)]
    assert rows[1][2] and SECRET not in rows[1][2]
    payload = json.loads(http_receiver.seen[0][2])
    assert payload["title"] == "ardua-backup on h1: test notification"
    _no_secret_anywhere(log_lines, capfd)


def test_status_ping_ok_and_fail(http_receiver: Any, closed_port: int, log_lines: list,
                                 capfd: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{http_receiver.server_port}/ping/{SECRET}"
    assert alertsend.status_ping(base, True)
    assert alertsend.status_ping(base + "/", False, "CRITICAL: DB backup not producing new data")
    assert [(m, p) for m, p, _ in http_receiver.seen] == [("GET", f"/ping/{SECRET}"),
                                                          ("POST", f"/ping/{SECRET}/fail")]
    assert http_receiver.seen[1][2] == b"CRITICAL: DB backup not producing new data"
    assert not alertsend.status_ping(f"http://127.0.0.1:{closed_port}/{SECRET}", True)
    assert any("status ping to http://127.0.0.1 failed" in line["message"] for line in log_lines)
    _no_secret_anywhere(log_lines, capfd)


# -- the Alerter: rules + memory + delivery + journal -------------------------------------------


@pytest.fixture
def journal_socket() -> Iterator[tuple[socket.socket, Path]]:
    """A datagram socket standing in for journald's: what logs.JournaldSink sends arrives here."""
    short = Path(tempfile.mkdtemp(prefix="aj"))  # AF_UNIX paths must stay under 108 bytes
    path = short / "journal.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(short, ignore_errors=True)


def _fields(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=value lines, or KEY\\n + 64-bit LE length + value."""
    out, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = nl + 1
        else:
            key, (size,) = line, struct.unpack("<Q", datagram[nl + 1:nl + 9])
            value, i = datagram[nl + 9:nl + 9 + size], nl + 9 + size + 1
        out[key.decode()] = value.decode()
    return out


def test_alerter_journald_fields_and_no_url(
    tmp_path: Path, http_receiver: Any, closed_port: int,
    journal_socket: tuple[socket.socket, Path],
) -> None:
    sock, path = journal_socket
    sink = logger.add(logs.JournaldSink(path), level="INFO", format="{message}")
    try:
        alerter = alerts.Alerter(
            DEFAULTS, [f"json://127.0.0.1:{http_receiver.server_port}/{SECRET}",
                       f"json://127.0.0.1:{closed_port}/{SECRET}"], tmp_path, host="h1",
            send_timeout_s=3)
        alerter.on_verdict(CRITICAL, [STALE], CHECKS, T0)
        datagrams = []
        while True:  # one warning per failed URL, then the alert's own line
            datagrams.append(sock.recv(65536))
            if b"ALERT_STATE" in datagrams[-1]:
                break
    finally:
        logger.remove(sink)
    line = _fields(datagrams[-1])
    assert line["ALERT_STATE"] == "CRITICAL" and line["ALERT_PREVIOUS"] == "OK"
    assert line["ALERT_SENT"] == "1/2"
    assert line["MESSAGE"] == "alert problem: ardua-backup on h1: CRITICAL (sent to 1/2)"
    assert line["PRIORITY"] == "4"
    for datagram in datagrams:
        assert SECRET.encode() not in datagram
        assert not re.search(rb"json://127\.0\.0\.1:\d", datagram)  # scheme://host only


def test_alerter_sequence_restart_and_retry(tmp_path: Path, http_receiver: Any,
                                            closed_port: int, log_lines: list) -> None:
    good = f"json://127.0.0.1:{http_receiver.server_port}/{SECRET}"
    titles = lambda: [json.loads(b)["title"] for _, _, b in http_receiver.seen]  # noqa: E731

    first = alerts.Alerter(DEFAULTS, [good], tmp_path, host="h1", send_timeout_s=3)
    assert first.on_verdict(CRITICAL, [STALE], CHECKS, T0) is not None
    assert first.on_verdict(CRITICAL, [STALE], CHECKS, T0 + timedelta(minutes=15)) is None
    # a restart: the new process reads the memory and does not send the CRITICAL again
    second = alerts.Alerter(DEFAULTS, [good], tmp_path, host="h1", send_timeout_s=3)
    assert second.on_verdict(CRITICAL, [STALE], CHECKS, T0 + timedelta(minutes=30)) is None
    assert second.on_verdict(OK, [], [], T0 + timedelta(hours=1)) is not None
    assert titles() == ["ardua-backup on h1: CRITICAL",
                        "ardua-backup on h1: OK (recovered from CRITICAL)"]

    # nobody reachable: the memory stays, so the next verdict tries the same alert again
    second.reconfigure(DEFAULTS, [f"json://127.0.0.1:{closed_port}/{SECRET}"])
    assert second.on_verdict(WARNING, [DRILL], [], T0 + timedelta(hours=2)) is not None
    assert alertstate.load_memory(tmp_path).notified == OK
    [unsent] = [line for line in log_lines if "(sent to 0/1)" in line["message"]]
    assert unsent["level"] == "ERROR" and unsent["extra"]["alert_sent"] == "0/1"
    second.reconfigure(DEFAULTS, [good])
    assert second.on_verdict(WARNING, [DRILL], [], T0 + timedelta(hours=2, minutes=15))
    assert titles()[-1] == "ardua-backup on h1: WARNING"
    assert alertstate.load_memory(tmp_path).notified == WARNING

    # runs: a failure once, not again, then one recovery
    assert second.on_run("db-upload", "failed", "db-upload run r1 FAILED") is not None
    assert second.on_run("db-upload", "failed", "db-upload run r2 FAILED") is None
    assert second.on_run("db-upload", "success", "ok") is not None
    assert titles()[-2:] == ["ardua-backup on h1: db-upload failed",
                             "ardua-backup on h1: db-upload OK (recovered from failed)"]
    assert all(SECRET not in json.dumps(line, default=str) for line in log_lines)


def test_alerter_status_ping_follows_min_state(tmp_path: Path, http_receiver: Any) -> None:
    ping = f"http://127.0.0.1:{http_receiver.server_port}/hc/{SECRET}"
    alerter = alerts.Alerter(replace(DEFAULTS, status_ping_url=ping), [], tmp_path)
    alerter.on_verdict(OK, [], [], T0, status_body="OK: dumps fresh")
    alerter.on_verdict(CRITICAL, [STALE], [], T0, status_body="CRITICAL: stale")
    critical_only = alerts.Alerter(replace(DEFAULTS, status_ping_url=ping, min_state=CRITICAL),
                                   [], tmp_path / "other")
    critical_only.on_verdict(WARNING, [DRILL], [], T0, status_body="WARNING: drill")
    assert [(m, p) for m, p, _ in http_receiver.seen] == [
        ("POST", f"/hc/{SECRET}"), ("POST", f"/hc/{SECRET}/fail"), ("POST", f"/hc/{SECRET}")]
    assert http_receiver.seen[1][2] == b"CRITICAL: stale"
