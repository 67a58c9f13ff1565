"""Waiting on a condition the test does not control: poll it, with a deadline (never a sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    check: Callable[[], T], what: str | Callable[[], str], timeout: float, interval: float = 0.05
) -> T:
    """Calls ``check`` until it returns something truthy and returns that; fails the test after
    ``timeout`` seconds with ``what`` (a callable is asked only then, for costly diagnostics)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(interval)  # poll interval, bounded by the deadline above
    return result


def timed(call: Callable[[], T]) -> tuple[T | Exception, float]:
    """What ``call`` returned, or the exception it raised, and the seconds it took: for
    checking that something ends within its own deadline."""
    started = time.monotonic()
    try:
        outcome: T | Exception = call()
    except Exception as exc:
        outcome = exc
    return outcome, time.monotonic() - started
