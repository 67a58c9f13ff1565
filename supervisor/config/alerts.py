"""The ``[alerts]`` settings and the URLs file they point to.

```toml
[alerts]
urls_file = "/etc/ardua-backup/alert-urls"  # apprise URLs, one a line; mode 0600
check_every = "15m"       # how often the daemon evaluates the verdict (and after every run)
min_state = "WARNING"     # notify on a change to this state or worse, and on recovery
remind_every = "24h"      # repeat a notification this often while not OK; "0" = never
status_ping_url = ""      # healthchecks-style: URL while below min_state, URL/fail otherwise
```

The keys are declared in config.keys (KEYS) with the parsers below (each raises
ValueError with the problem only; the config names file and key) and read into
config.load.AlertsConfig. ``load_urls(urls_file)`` checks and reads the URLs file (mode 0600,
every line a URL apprise can send to); config.load.load calls it, so a bad file is a config
error at start and on reload. This module does not import apprise until ``load_urls`` runs, so
loading a config without alerts stays cheap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from supervisor.config.values import parse_duration
from supervisor.core.files import private_file_problem
from supervisor.core.states import OK, SEVERITY


def parse_urls_file(value: Any) -> Path | None:
    if not isinstance(value, str):
        raise ValueError(f"must be a string (an absolute path), got {value!r}")
    if not value:
        return None
    if not os.path.isabs(value):
        raise ValueError(f"'{value}' must be an absolute path")
    return Path(value)


def parse_min_state(value: Any) -> str:
    allowed = [s for s in SEVERITY if s != OK]
    if not isinstance(value, str) or value.strip().upper() not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
    return value.strip().upper()


def parse_remind_every(value: Any) -> float:
    """A duration, or 0 / "0" for never."""
    if value in (0, "0") and not isinstance(value, bool):
        return 0.0
    return parse_duration(value)


def parse_status_ping_url(value: Any) -> str:
    if not isinstance(value, str) or (value and not re.match(r"^https?://[^\s/]+[^\s]*$", value)):
        raise ValueError(f"must be an http:// or https:// URL or empty, got {_shown(value)}")
    return value.rstrip("/")


def _shown(value: Any) -> str:
    """A rejected ping URL may hold a token: show its type and scheme, never the rest."""
    if isinstance(value, str):
        scheme = value.partition("://")[0] if "://" in value else ""
        return f"a string starting {scheme!r}" if re.fullmatch(r"[A-Za-z][\w+.-]{0,15}",
                                                                scheme) else "a string"
    return repr(value) if isinstance(value, int | float | bool) else type(value).__name__


def load_urls(path: Path) -> list[str]:
    """The apprise URLs in ``path``: one a line, blank lines and lines starting with ``#``
    ignored (a ``#`` inside a line is part of the URL: slack://…/#channel).

    ValueError naming the file when it is missing, unreadable, breaks the file-mode rule of a
    secret file (core.files: like the S3 credentials file, ``chmod 600``), holds no URL, or a
    line apprise cannot send to (named by its number: the URL itself is never echoed, it may
    hold a token)."""
    where = f"alerts.urls_file {path}"
    if problem := private_file_problem(path, "alerts.urls_file"):
        raise ValueError(problem)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{where} cannot be read: {reason}") from None

    from supervisor.alerts import send as alertsend  # apprise: only when there is a file to check

    urls = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        problem = alertsend.check_url(line)
        if problem:
            raise ValueError(f"{where} line {number}: {problem}")
        urls.append(line)
    if not urls:
        raise ValueError(f"{where} holds no URL (one apprise URL a line)")
    return urls
