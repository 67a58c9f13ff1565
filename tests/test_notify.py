"""sd_notify datagrams received on a socket the test owns."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.daemon.notify import SEND_TIMEOUT_S, Notifier
from tests.harness.loglines import captured


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def test_sends_fields_utf8(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    Notifier({"NOTIFY_SOCKET": path}).send(READY=1, STATUS="db-upload: ok — Zürich\nnext 03:00")
    assert sock.recv(4096).decode("utf-8") == "READY=1\nSTATUS=db-upload: ok — Zürich next 03:00"


def test_abstract_namespace() -> None:
    name = f"ardua-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        Notifier({"NOTIFY_SOCKET": "@" + name}).send(WATCHDOG=1)
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_reloading_carries_monotonic_usec(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    Notifier({"NOTIFY_SOCKET": path}).reloading()
    reloading, monotonic = sock.recv(4096).decode().split("\n")
    assert reloading == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=") and int(monotonic.split("=")[1]) > 0


def test_noop_without_socket(receiver: tuple[socket.socket, str], tmp_path: Path) -> None:
    """Outside systemd nothing is sent and nothing is logged; a socket that is named but gone
    is, by contrast, a logged drop: the quiet above is the no-op, not a failure swallowed."""
    sock, _ = receiver
    sock.settimeout(0.2)
    with captured("DEBUG") as lines:
        notifier = Notifier({})
        notifier.send(READY=1)
        assert not notifier.enabled and lines == []
        Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).send(READY=1)
    assert len(lines) == 1 and lines[0].startswith("sd_notify message dropped (READY): ")
    with pytest.raises(TimeoutError):
        sock.recv(4096)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert Notifier(env).watchdog_interval_s == expected


def test_a_reader_that_falls_behind_never_stops_the_sender(
    receiver: tuple[socket.socket, str],
) -> None:
    """A full datagram queue made sendto wait forever: the loop, a run and a health check all
    froze in it (seen with a test that read its socket late). Now a message waits at most
    SEND_TIMEOUT_S, then is dropped; the reader still gets what was queued."""
    sock, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    for i in range(100_000):  # until the queue (net.unix.max_dgram_qlen) is full
        started = time.monotonic()
        notifier.send(STATUS=f"line {i}")
        waited = time.monotonic() - started
        if waited > SEND_TIMEOUT_S / 2:
            break
    assert SEND_TIMEOUT_S / 2 < waited < SEND_TIMEOUT_S + 1, "the queue never filled"
    assert sock.recv(4096).decode() == "STATUS=line 0"
