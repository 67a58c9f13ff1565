"""How one config value is read: each parser takes what tomllib returned and gives the value or
raises ValueError saying what is wrong with it, in one line that shows what was found (its TOML
type when the text alone would not tell). supervisor.config.load names the key."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from supervisor.core.files import directory_problem

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
JOB_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Ten years: above any threshold here, far below what timers and datetime arithmetic can take.
MAX_DURATION_S = 3650 * 86400.0
# botocore's own check (an invalid region is a ValueError when the client is made).
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a bool"}


@dataclass(frozen=True)
class Source:
    """Where a job reads from: a Docker named volume or an absolute host directory."""

    kind: str  # "volume" or "path"
    location: str

    def __str__(self) -> str:
        return f"volume:{self.location}" if self.kind == "volume" else self.location


def show_key(key: str) -> str:
    """A key as an error message shows it: bare, or quoted with its odd characters escaped."""
    return key if _BARE_KEY.fullmatch(key) else repr(key)


def _toml_kind(value: Any) -> str:
    """The TOML type of a value tomllib returned, as an error message names it."""
    for kind, name in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "float"),
                       (list, "array"), (dict, "table"), (datetime, "datetime"), (date, "date"),
                       (time, "time")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_inline(item) for item in value[:5]) + (
            ", ...]" if len(value) > 5 else "]")
    if isinstance(value, dict):
        items = [f"{show_key(k)} = {_inline(v)}" for k, v in list(value.items())[:5]]
        return "{" + ", ".join(items) + (", ...}" if len(value) > 5 else "}")
    return repr(value)  # strings quoted, with newlines and other control characters escaped


def show(value: Any, limit: int = 60) -> str:
    """A config value in an error message: one line, short, and its TOML type when that is not
    obvious from the text (`'45m'`, `5`, `true`, `an array ['45m']`, `a date 2026-01-02`)."""
    text = _inline(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    kind = _toml_kind(value)
    if kind in ("boolean", "string", "integer", "float"):
        return text
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} {text}"


def string(value: Any, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {what}, got {show(value)}")
    return value


def plain(value: Any, what: str) -> str:
    """A string that must not contain control characters (a name, an image, a path)."""
    text = string(value, what)
    if any(not ch.isprintable() for ch in text):
        raise ValueError(f"{show(text)} contains a control character")
    return text


def parse_duration(text: Any) -> float:
    """'45m', '2h', '1h30m', '90s' or a number of seconds -> seconds (> 0, at most ten years)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"must be a duration like '45m', got {show(text)}")
    if isinstance(text, str):
        spec = text.strip().replace(" ", "")
        parts = _DURATION.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise ValueError(f"{show(text)} is not a duration like '90s', '45m', '2h' or '1h30m'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    elif isinstance(text, float) and not math.isfinite(text):
        raise ValueError(f"must be a duration like '45m', got {show(text)}")
    else:
        seconds = float(text) if abs(text) <= MAX_DURATION_S else math.copysign(math.inf, text)
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{show(text)} is longer than ten years")
    return seconds


def timezone(value: Any) -> str:
    zone = string(value, "a string like 'America/Los_Angeles'")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {show(zone)}") from None
    return zone


def schedule(value: Any) -> str:
    expr = string(value, "a 5-field cron expression string")
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{show(expr)} is not a 5-field cron expression (min hour dom month dow)")
    try:
        CronSim(expr, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"{show(expr)} is not a valid cron expression: {exc}") from None
    return " ".join(fields)  # one line whatever whitespace separated the fields


def optional_schedule(value: Any) -> str:
    return "" if value == "" else schedule(value)


def source(value: Any) -> Source:
    text = string(value, "'volume:NAME' or an absolute host path")
    if text.startswith("volume:"):
        name = text.removeprefix("volume:")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]+", name):
            raise ValueError(f"{show(name)} is not a valid Docker volume name")
        return Source("volume", name)
    if not text or not os.path.isabs(text):
        raise ValueError(f"{show(text)} must be 'volume:NAME' or an absolute host path")
    return Source("path", os.path.normpath(plain(text, "a path")))


def abs_path(value: Any, suffix: str = "") -> str:
    """An absolute path (ending in `suffix`), or "" for "not set"."""
    path = plain(value, "an absolute path")
    if path and not (os.path.isabs(path) and path.endswith(suffix)):
        ending = f" ending in {suffix}" if suffix else ""
        raise ValueError(f"{show(path)} must be an absolute path{ending}")
    return path


def prefix(value: Any) -> str:
    prefix = plain(value, "a string").strip("/")
    if not prefix or any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"{show(value)} is not a usable S3 prefix (like 'postgres')")
    return prefix


def share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"must be a number above 0 and at most 1 (0.5 = 50 %), got {show(value)}")
    return float(value)


def databases(value: Any) -> tuple[str, ...]:
    # postgres-backup-local's POSTGRES_DB names, as its dump file names start with them.
    if not isinstance(value, list) or not all(
            isinstance(v, str) and re.fullmatch(r"[^/\s]+", v) for v in value):
        raise ValueError(f"must be a list of database names like ['ardua', 'shop'], "
                         f"got {show(value)}")
    if len(set(value)) != len(value):
        raise ValueError(f"names a database twice: {show(value)}")
    return tuple(value)


def http_url(value: Any, shown: Callable[[str], str] | None = None) -> str:
    """An http(s) URL with a host (and a valid port, if any); problems as ValueError, showing
    the URL as ``shown`` does (``show``, or ``url_head`` for a URL that may hold a token)."""
    shown = shown or show
    url = string(value, "an http:// or https:// URL")
    if any(not ch.isprintable() for ch in url):
        raise ValueError(f"{shown(url)} contains a control character")
    if not re.match(r"https?://", url):
        raise ValueError(f"{shown(url)} must start with http:// or https://")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise ValueError(f"{shown(url)} is not a valid URL: {exc}") from None
    if not parts.hostname or any(ch.isspace() for ch in url):
        raise ValueError(f"{shown(url)} is not a valid URL (no host, or a space in it)")
    return url.rstrip("/")


def url(value: Any) -> str:
    """An http(s) URL or "" (not set)."""
    if value == "":
        return ""
    if not isinstance(value, str):
        raise ValueError(f"must be an http:// or https:// URL or empty, got {show(value)}")
    return http_url(value)


_URL_HEAD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,15})://(?:[^/?#@\s]*@)?([A-Za-z0-9.-]{1,253})"
                       r"(?=[:/?#]|$)")


def url_head(text: str) -> str:
    """A URL that may hold a token (a ping URL's path is its secret) as an error message may
    show it: `'https://hc-ping.com/...'`, or only its type. The error is printed by
    check-config, logged, and put in systemd's STATUS=, which every local user can read."""
    m = _URL_HEAD.match(text)
    if m:
        return f"'{m.group(1)}://{m.group(2)}/...'"
    return "a string (not shown: it may hold a token)"


def secret_url(value: Any) -> str:
    """An http(s) URL or "", whose errors never show more of it than scheme://host: a
    heartbeat URL's path is its token."""
    if value == "":
        return ""
    if not isinstance(value, str):
        raise ValueError(f"must be an http:// or https:// URL or empty, got {_toml_kind(value)}")
    return http_url(value, url_head)


def image(value: Any) -> str:
    image = plain(value, "a Docker image reference like 'rclone/rclone:1.75.2'")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*", image):
        raise ValueError(f"{show(image)} is not a Docker image reference like "
                         f"'rclone/rclone:1.75.2'")
    return image


def docker_name(value: Any) -> str:
    """A Docker network mode or container name ('bridge', 'host', 'container:NAME', ...)."""
    name = plain(value, "a string")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", name):
        raise ValueError(f"{show(name)} is not a Docker name")
    return name


def container(value: Any) -> str:
    """A container name, or "" (do not check)."""
    return "" if value == "" else docker_name(value)




def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be {_TYPE_NAMES[bool]}, got {show(value)}")
    return value


def integer(value: Any) -> int:
    # TOML's true/false is not a number (Python's bool is an int).
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be {_TYPE_NAMES[int]}, got {show(value)}")
    return value


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be {_TYPE_NAMES[float]}, got {show(value)}")
    try:
        result = float(value)
    except OverflowError:
        raise ValueError(f"{show(value)} is too large for a number") from None
    if not math.isfinite(result):
        raise ValueError(f"must be a finite number, got {show(value)}")
    return result


def count(value: Any) -> int:
    if integer(value) < 0:
        raise ValueError("must be 0 or more")
    return value


def port_or_off(value: Any) -> int:
    if not 0 <= integer(value) <= 65535:
        raise ValueError(f"{show(value)} is not a TCP port (0 = off)")
    return value


def listen_address(value: Any) -> str:
    """"" (off) or "IPv4:PORT": an address of this host to listen on (127.0.0.1, or the Docker
    bridge's gateway for a bridged container)."""
    text = string(value, "'' or an address like '127.0.0.1:8187'")
    if not text:
        return ""
    host, _, port = text.rpartition(":")
    try:
        ipaddress.IPv4Address(host)
        valid = port.isdigit() and 1 <= int(port) <= 65535
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"{show(text)} is not an IPv4 address and port like '127.0.0.1:8187'")
    return text


def server_port(value: Any) -> int:
    if not 1024 <= integer(value) <= 65535:
        raise ValueError(f"{show(value)} is not a port between 1024 and 65535")
    return value


def bucket(value: Any) -> str:
    name = string(value)
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name):
        raise ValueError(f"{show(name)} is not a valid S3 bucket name")
    return name


def region(value: Any) -> str:
    name = string(value)
    if not _REGION.fullmatch(name):
        raise ValueError(f"{show(name)} is not an S3 region name like 'us-west-2'")
    return name


def endpoint_url(value: Any) -> str:
    """"" (AWS) or an http(s) URL of an S3-compatible store. Every S3 message shows it, so it
    may hold no user:password@, ?query or #fragment (the keys go in credentials_file)."""
    text = string(value)
    if not text:
        return ""
    url = http_url(text, url_head if "@" in text else show)  # a password is never echoed
    parts = urlsplit(url)
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{url_head(url)} must not hold user:password@, a ?query or a "
                         f"#fragment: S3 keys go in credentials_file")
    return url


def name(value: Any) -> str:
    """A non-empty string without control characters (a profile, a label)."""
    text = plain(value, "a string")
    if not text:
        raise ValueError("must not be empty")
    return text


OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


def object_lock_mode(value: Any) -> str:
    mode = string(value)
    if mode and mode not in OBJECT_LOCK_MODES:
        raise ValueError(f"must be '', 'GOVERNANCE' or 'COMPLIANCE', got {show(value)}")
    return mode


def names(value: Any) -> tuple[str, ...]:
    """A list of destination names, each at most once."""
    if not isinstance(value, list) or not all(
            isinstance(n, str) and JOB_NAME.fullmatch(n) for n in value):
        raise ValueError(f"must be a list of names like ['primary', 'offsite'], got {show(value)}")
    if len(set(value)) != len(value):
        raise ValueError(f"names a destination twice: {show(value)}")
    return tuple(value)


def optional_path(value: Any, suffix: str = "") -> Path | None:
    """An absolute path, or "" for "not set" (None)."""
    path = abs_path(value, suffix)
    return Path(path) if path else None


def directory(value: Any) -> Path:
    """An absolute path of a directory that exists or will be made (not a file)."""
    path = abs_path(value)
    if not path:
        raise ValueError("'' must be an absolute path")
    if problem := directory_problem(Path(path), missing_ok=True):
        raise ValueError(problem)
    return Path(path)


def textfile(value: Any) -> Path | None:
    return optional_path(value, ".prom")


def sql(value: Any) -> str:
    text = string(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


# jobs.NAME.compare: how a sync finds changed files (upload.compare gives each its rclone flags).
CHECKSUM, SIZE, MTIME = "checksum", "size", "mtime"
COMPARE_MODES = (CHECKSUM, SIZE, MTIME)


def compare_mode(value: object) -> str:
    if not isinstance(value, str) or value not in COMPARE_MODES:
        raise ValueError(f"must be one of {', '.join(repr(m) for m in COMPARE_MODES)}, "
                         f"got {value!r}")
    return value
