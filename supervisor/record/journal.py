"""loguru setup: structured journald fields under systemd, `<N>`-prefixed stderr otherwise.

Every loguru ``extra`` key becomes a journal field named like it in upper case (job -> JOB,
run_id -> RUN_ID, result -> RESULT, exit_code, duration_s, bytes, files, deletes, errors, ...), so
``journalctl -u ardua-backup JOB=db-upload RUN_ID=...`` selects one job's or one run's lines.
journald silently drops fields whose names are not ``[A-Z0-9_]+`` (or start with "_", which is
reserved for trusted fields), hence the sanitising below.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from logging_journald import JournaldTransport, check_journal_stream
from loguru import logger

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
IDENTIFIER = "ardua-backup"

# Fields we set ourselves; an extra key that would collide gets an EXTRA_ prefix instead.
_OWN_FIELDS = frozenset(
    {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC"}
)
_INVALID = re.compile(r"[^A-Z0-9_]")


def priority(level_no: int) -> int:
    """loguru level number -> syslog priority (CRITICAL 2 ... DEBUG/TRACE 7)."""
    for threshold, prio in ((50, 2), (40, 3), (30, 4), (25, 5), (20, 6)):
        if level_no >= threshold:
            return prio
    return 7


def field_name(key: str) -> str:
    name = _INVALID.sub("_", key.upper()).lstrip("_") or "FIELD"
    if name[0].isdigit() or name in _OWN_FIELDS:
        name = "EXTRA_" + name
    return name


def _field_value(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value


def fields(extra: dict[str, Any]) -> dict[str, Any]:
    """loguru ``extra`` -> journal fields; None values are left out."""
    return {field_name(k): _field_value(v) for k, v in extra.items() if v is not None}


def _message(record: Any) -> str:
    text = str(record["message"])
    if record["exception"] is not None:
        exc = record["exception"]
        text += "\n" + "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    return text.rstrip("\n")


class JournaldSink:
    """Native-protocol sink; falls back to stderr when a send fails (journald restarting)."""

    def __init__(self, socket_path: Path = JOURNAL_SOCKET) -> None:
        # Unconnected: each send addresses the path, so a restarted journald is picked up.
        self.transport = JournaldTransport(socket_path, connected=False)

    def __call__(self, message: Any) -> None:
        record = message.record
        pairs = [
            ("MESSAGE", _message(record)),
            ("PRIORITY", priority(record["level"].no)),
            ("SYSLOG_IDENTIFIER", IDENTIFIER),
            ("CODE_FILE", record["file"].path),
            ("CODE_LINE", record["line"]),
            ("CODE_FUNC", record["function"]),
            *fields(record["extra"]).items(),
        ]
        try:
            self.transport.send(pairs)
        except OSError as exc:
            _write_prefixed(sys.stderr, record, f" (journald send failed: {exc})")


def _write_prefixed(stream: TextIO, record: Any, suffix: str = "") -> None:
    extra = " ".join(f"{k}={v}" for k, v in fields(record["extra"]).items())
    text = _message(record) + (f" [{extra}]" if extra else "") + suffix
    prio = priority(record["level"].no)
    # One prefix per line so a multi-line traceback keeps its priority when parsed by systemd.
    stream.write("".join(f"<{prio}>{line}\n" for line in text.split("\n")))
    stream.flush()


def stderr_sink(message: Any) -> None:
    """sd-daemon(3) style: `<N>` priority prefixes that journald and systemd understand."""
    _write_prefixed(sys.stderr, message.record)


def use_journal(socket_path: Path = JOURNAL_SOCKET) -> bool:
    """True when our stderr is connected to journald (started by systemd) and the socket exists."""
    return check_journal_stream() and socket_path.exists()


def setup(
    level: str = "INFO", *, journal: bool | None = None, socket_path: Path = JOURNAL_SOCKET
) -> None:
    """Replace loguru's default handler. ``journal=None`` decides from the environment."""
    logger.remove()
    if journal is None:
        journal = use_journal(socket_path)
    if journal:
        logger.add(JournaldSink(socket_path), level=level, format="{message}")
    elif sys.stderr.isatty() and not os.environ.get("JOURNAL_STREAM"):
        # A human at a terminal: loguru's readable format, fields shown inline.
        logger.add(sys.stderr, level=level, format=_tty_format)
    else:
        logger.add(stderr_sink, level=level, format="{message}")


def _tty_format(record: Any) -> str:
    extra = " ".join(f"{k}={v}" for k, v in fields(record["extra"]).items())
    # The result is a loguru template: escape the braces that come from field values.
    tail = f" [{extra}]".replace("{", "{{").replace("}", "}}") if extra else ""
    return "{time:HH:mm:ss} {level: <7} {message}" + tail + "\n{exception}"
