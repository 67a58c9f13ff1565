"""sd_notify: tell systemd about readiness, status, reloads and watchdog pings.

Our own ~30 lines instead of the `sdnotify` package, which silently drops messages that are not
latin-1 (a STATUS line quoting a config error in a non-ASCII path would vanish).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from loguru import logger

SEND_TIMEOUT_S = 1.0


class Notifier:
    """Sends datagrams to $NOTIFY_SOCKET; does nothing when not started by systemd."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        # A leading '@' names a socket in the abstract namespace.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str | int) -> None:
        """send(READY=1, STATUS="x") sends "READY=1\\nSTATUS=x"; value newlines become spaces."""
        if not self.enabled:
            return
        lines = (f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items())
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # A datagram waits while the reader's queue is full: never let that stop the loop,
            # a run or a health check (measured: a reader that fell behind froze all three).
            sock.settimeout(SEND_TIMEOUT_S)
            try:
                sock.sendto("\n".join(lines).encode("utf-8"), self.address)
            except OSError as exc:
                logger.warning(f"sd_notify message dropped ({', '.join(fields)}): {exc}")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 to order it against READY=1.
        self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC (systemd's advice), if the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000
