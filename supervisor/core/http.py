"""Small HTTP calls that must never hold up a backup: heartbeat and status pings."""

from __future__ import annotations

import urllib.request

TIMEOUT_S = 3.0
BODY_LIMIT = 10_000  # healthchecks.io keeps the first 100 kB; a short tail is what people read


def ping(url: str, body: str | None = None) -> str:
    """GET ``url``, or POST the tail of ``body``; "" when answered with 2xx/3xx, else why not.
    Never raises (also used by alerts.send.status_ping, which logs a redacted URL instead)."""
    data = body.encode("utf-8")[-BODY_LIMIT:] if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            resp.read(1024)
    except Exception as exc:  # whatever breaks, the backup goes on
        return str(exc) or type(exc).__name__
    return ""
