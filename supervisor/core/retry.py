"""One bounded retry policy for the product's own S3 and Docker calls, transient errors only
(docs/design.md "Retries"): `retrying` here, the S3 listing's pages and botocore's clients
(supervisor.storage.s3) all take it from these constants."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import requests
import tenacity
from docker.errors import APIError, DockerException
from loguru import logger

T = TypeVar("T")

# Tries of one call, the first included (botocore's `total_max_attempts`).
ATTEMPTS = 4
# Full-jitter exponential backoff: before retry n a random wait in [0, BACKOFF_S * 2**(n-1)],
# at most BACKOFF_MAX_S: at most 1 + 2 + 4 = 7 s of waiting over the 3 retries.
BACKOFF_S = 1.0
BACKOFF_MAX_S = 4.0
# No new try starts this long after the first (botocore's clients are bounded by their
# attempts and timeouts instead: it has no overall deadline).
TOTAL_S = 15.0


def policy(transient: Callable[[BaseException], bool],
           before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
           ) -> tenacity.Retrying:
    """The policy as a tenacity loop that retries what `transient` says may heal."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        stop=tenacity.stop_after_attempt(ATTEMPTS) | tenacity.stop_after_delay(TOTAL_S),
        wait=tenacity.wait_random_exponential(multiplier=BACKOFF_S, max=BACKOFF_MAX_S),
        before_sleep=before_sleep,
        reraise=True,
    )


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
    """The daemon's own Docker and S3 calls, retried by the policy; each retry logged."""
    for attempt in policy(is_transient, lambda state: logger.warning(
            "{} failed ({}), retrying", what,
            state.outcome.exception() if state.outcome else "?")):
        with attempt:
            return call()
    raise AssertionError("unreachable: tenacity reraises")
