"""The product's log lines (loguru) as a test sees them: the messages only, from `level` up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loguru import logger


@contextmanager
def captured(level: str) -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).rstrip("\n")), level=level,
                      format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)
