"""Delivery of alerts: apprise for the notifications, a healthchecks-style status ping.

Two promises: a notification can never hold up or break a backup, and a URL (they carry tokens)
never reaches a log line, ``check-config`` output or the journal.

- ``send`` builds one fresh ``apprise.Apprise`` per notification (a reused one throttles: its
  e-mail plugin waits 5.5 s between two messages and apprise then skips it as timed out), adds
  each URL and sends once with apprise's call deadline (``timeout_s``); each URL's own socket
  timeouts are capped at that bound too, so a dead or hung endpoint also lets go of its worker
  soon after. apprise reports each URL's outcome; a failure is logged with ``describe_url``'s
  ``scheme://host`` and apprise's reason with any part of that URL masked. It never raises.
- apprise's own logger ("apprise") is silenced here: its warnings can quote a URL's secret part
  (an ntfy topic, for one); what they say reaches our log only through the masked reasons.
- ``status_ping`` reuses core.http.ping (GET ``url``, or ``url/fail`` with a body).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import ip_address
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from loguru import logger

from supervisor.alerts.rules import INFO_TYPE, Notification
from supervisor.core import http

if TYPE_CHECKING:  # at run time: _apprise()
    import apprise

SEND_TIMEOUT_S = 10.0  # the whole send, every URL at once; a backup waits no longer than this
MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_URL_IN_TEXT = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{0,31})://[^\s'\"<>]+")
_APPRISE_LOG = logging.getLogger("apprise")
_APPRISE_LOG.addHandler(logging.NullHandler())  # else Python's last-resort handler prints it
_APPRISE_LOG.propagate = False
_capture_lock = threading.Lock()


@dataclass(frozen=True)
class Delivery:
    """One URL's outcome: ``shown`` is describe_url's redacted form, ``error`` masked."""

    shown: str
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class SendResult:
    sent: int
    total: int
    failures: list[str] = field(default_factory=list)  # "scheme://host: reason", redacted
    deliveries: tuple[Delivery, ...] = ()

    @property
    def label(self) -> str:
        """ALERT_SENT: "n/m"."""
        return f"{self.sent}/{self.total}"


# -- naming URLs without their secrets ------------------------------------------------------------


def describe_url(url: str) -> str:
    """``scheme://host`` for logs and check-config: the host only where it is a network host
    (a dotted name, an IP address or localhost), else ``scheme://***``. Many apprise schemes
    keep a token where a host would be (tgram://BOTTOKEN/…, ntfys://TOPIC, discord://ID/…)."""
    m = _SCHEME.match(url.strip())
    if not m:
        return MASK
    scheme = m.group(1).lower()
    host = ""
    if scheme in ("http", "https"):
        host = urlsplit(url.strip()).hostname or ""
    else:
        plugin = _instantiate(url.strip())
        if plugin is not None and "host" in getattr(plugin, "template_tokens", {}):
            host = str(getattr(plugin, "host", "") or "")
    return f"{scheme}://{host if _network_host(host) else MASK}"


def _network_host(host: str) -> bool:
    host = host.strip("[]")
    if not host:
        return False
    try:
        ip_address(host)
        return True
    except ValueError:
        pass
    return host == "localhost" or bool(
        re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z][A-Za-z0-9-]{0,62}", host)
    )


def secrets_of(url: str) -> list[str]:
    """The parts of ``url`` that may be secret (all but scheme and a network host), longest
    first, raw and unquoted: user, password, path segments, query values, fragment."""
    text = url.strip()
    parts = urlsplit(text if _SCHEME.match(text) else f"x://{text}")
    netloc = parts.netloc
    userinfo, _, hostport = netloc.rpartition("@")
    found = [*userinfo.split(":"), *re.split(r"[/,]", parts.path), parts.fragment]
    found += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    host = hostport.rsplit(":", 1)[0] if not hostport.startswith("[") else hostport
    if not _network_host(host):
        found.append(host)
    found += [unquote(f) for f in found]
    return sorted({f for f in found if len(f) >= 3}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (something apprise said about ``url``) with every possibly secret part of that
    URL masked, and anything URL-shaped cut after its scheme: apprise's own privacy form
    (``p...s`` for a password) still shows two characters of each token."""
    for secret in [url.strip(), *secrets_of(url)]:
        text = text.replace(secret, MASK)
    return _URL_IN_TEXT.sub(rf"\1://{MASK}", text)


# -- apprise ----------------------------------------------------------------------------------


def _apprise() -> ModuleType:
    """apprise, imported on first use: the daemon imports this module, and apprise (its plugins)
    is 3 MB of RSS that a daemon without alert URLs never needs (measured)."""
    import apprise

    return apprise


def _asset() -> apprise.AppriseAsset:
    return _apprise().AppriseAsset(app_id="ardua-backup", app_desc="ardua-backup alerts")


def _instantiate(url: str, asset: apprise.AppriseAsset | None = None) -> object | None:
    try:
        return _apprise().Apprise.instantiate(url, asset=asset or _asset())
    except Exception:  # apprise says None for a bad URL; a plugin bug must not escape
        return None


@contextmanager
def _quiet() -> Iterator[list[logging.LogRecord]]:
    """What apprise logs from this thread meanwhile (to quote, masked, as a reason)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == threading.get_ident():
                records.append(record)

    handler = _Keep(level=logging.WARNING)
    with _capture_lock:
        _APPRISE_LOG.addHandler(handler)
    try:
        yield records
    finally:
        with _capture_lock:
            _APPRISE_LOG.removeHandler(handler)


def check_url(url: str) -> str:
    """"" when apprise can send to ``url``, else the problem (never quoting the URL)."""
    m = _SCHEME.match(url)
    if not m:
        return "not a URL (apprise URLs look like scheme://…, e.g. mailtos://, ntfys://)"
    scheme = m.group(1).lower()
    with _quiet() as records:
        try:
            plugin = _apprise().Apprise.instantiate(url, asset=_asset())
        except Exception:
            plugin = None
    if plugin is not None:
        return ""
    if scheme not in _schemes():
        return f"apprise has no '{scheme}://' service"
    said = "; ".join(scrub(r.getMessage(), url) for r in records[-2:])
    return f"apprise cannot use this {scheme}:// URL" + (f": {said}" if said else "")


def _schemes() -> set[str]:
    schemes: set[str] = set()
    for details in _apprise().Apprise().details().get("schemas", []):
        for key in ("protocols", "secure_protocols"):
            value = details.get(key) or ()
            schemes.update([value] if isinstance(value, str) else value)
    return {s.lower() for s in schemes}


def deliver(
    title: str, body: str, notify_type: str, urls: Sequence[str],
    timeout_s: float = SEND_TIMEOUT_S,
) -> list[Delivery]:
    """Send one message to every URL at once, within ``timeout_s``; one Delivery per URL, in
    order. Never raises."""
    asset = _asset()
    apobj = _apprise().Apprise(asset=asset)
    rows: list[Delivery | None] = []
    added: list[tuple[int, str]] = []  # (row index, url) of what went into apobj, in order
    for url in urls:
        plugin = _instantiate(url, asset)
        if plugin is None or not apobj.add(plugin):
            rows.append(Delivery(describe_url(url), False, "not a URL apprise can send to"))
            continue
        for attr in ("socket_connect_timeout", "socket_read_timeout"):
            current = getattr(plugin, attr, None)
            if isinstance(current, int | float) and current > timeout_s:
                setattr(plugin, attr, float(timeout_s))
        added.append((len(rows), url))
        rows.append(None)
    if added:
        for (index, url), (ok, error) in zip(added, _notify(apobj, title, body, notify_type,
                                                            len(added), timeout_s), strict=True):
            rows[index] = Delivery(describe_url(url), ok, "" if ok else scrub(error, url))
    return [r for r in rows if r is not None]


def _notify(
    apobj: apprise.Apprise, title: str, body: str, notify_type: str, count: int,
    timeout_s: float,
) -> list[tuple[bool, str]]:
    """apprise's per-service outcomes, in the order added: (ok, what apprise said)."""
    started = time.monotonic()
    try:
        result = apobj.notify(body=body, title=title, notify_type=notify_type,
                              body_format=_apprise().NotifyFormat.TEXT, timeout=timeout_s)
        outcomes = []
        for service in result:
            said = [e.message for e in service.logs() if e.level in ("WARNING", "ERROR")]
            status = service.status.name.lower()
            outcomes.append((bool(service), said[-1] if said else f"apprise: {status}"))
        if len(outcomes) != count:  # apprise left a service out: name none of them ok
            raise RuntimeError(f"apprise reported {len(outcomes)} of {count} services")
        return outcomes
    except Exception as exc:
        spent = time.monotonic() - started
        return [(False, f"apprise failed after {spent:.1f}s: {type(exc).__name__}: {exc}")] * count


def send(
    notification: Notification, urls: Sequence[str], timeout_s: float = SEND_TIMEOUT_S
) -> SendResult:
    """Through apprise to every URL; each failure logged with the redacted URL. Never raises."""
    try:
        rows = deliver(notification.title, notification.body, notification.notify_type, urls,
                       timeout_s)
    except Exception as exc:  # a bug of ours or apprise's: the backup goes on
        rows = [Delivery(describe_url(u), False, scrub(f"{type(exc).__name__}: {exc}", u))
                for u in urls]
    failures = [f"{r.shown}: {r.error}" for r in rows if not r.ok]
    for text in failures:
        logger.bind(job=notification.job or None).warning(f"alerts: sending to {text}")
    return SendResult(sum(r.ok for r in rows), len(rows), failures, tuple(rows))


def test_all(
    urls: Sequence[str], host: str | None = None, timeout_s: float = SEND_TIMEOUT_S
) -> list[tuple[str, bool, str]]:
    """For ``ardua-backup alerts test``: a test message to every URL -> (redacted URL, ok,
    error) each."""
    host = host or socket.gethostname()
    title = f"ardua-backup on {host}: test notification"
    body = (f"A test from `ardua-backup alerts test` on {host}. If you read this, ardua-backup's "
            "alerts reach you.")
    note = Notification("test", "TEST", "TEST", title, body, INFO_TYPE)
    result = send(note, urls, timeout_s)
    return [(d.shown, d.ok, d.error) for d in result.deliveries]


test_all.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite its name


# -- the status ping ------------------------------------------------------------------------------


def status_ping(url: str, ok: bool, body: str = "") -> bool:
    """healthchecks-style dead man's switch: GET ``url`` when ok, else POST ``body`` to
    ``url/fail``. Logged with the redacted URL on failure; never raises."""
    if not url:
        return True
    target = url.rstrip("/") + ("" if ok else "/fail")
    error = http.ping(target, body or None)
    if error:
        logger.warning(f"alerts: status ping to {describe_url(url)} failed: {scrub(error, url)}")
    return not error
