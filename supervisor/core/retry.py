"""Bounded retries of the daemon's own Docker and S3 calls (tenacity), transient errors only."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import requests
import tenacity
from docker.errors import APIError, DockerException
from loguru import logger

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection trouble and server-side errors, not auth or missing things."""
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if isinstance(exc, APIError):
        return exc.is_server_error()
    if isinstance(exc, DockerException):
        # docker.from_env() wraps "cannot connect" in a bare DockerException.
        return isinstance(exc.__context__, requests.exceptions.ConnectionError)
    # supervisor.storage.s3.S3Error says itself whether it is worth retrying.
    return bool(getattr(exc, "transient", False))


def retrying(call: Callable[[], T], what: str) -> T:
    """Bounded retry (about 15 s at most) of the daemon's own Docker and S3 calls."""
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(5) | tenacity.stop_after_delay(15),
        wait=tenacity.wait_exponential(multiplier=0.5, max=8),
        before_sleep=lambda state: logger.warning(
            "{} failed ({}), retrying", what, state.outcome.exception() if state.outcome else "?"
        ),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable: tenacity reraises")
