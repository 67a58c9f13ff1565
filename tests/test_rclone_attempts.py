"""rclone's whole-command retries in its JSON log: the attempts it retried are warnings, the
final attempt judges the run (pure logic). The lines are as rclone 1.75.2 wrote them in a run
through tests/harness/faultproxy.py (30 % of PUTs reset); their wording is rclone's
cmd/cmd.go Run(): "Attempt %d/%d failed with %d errors and: %v", "Attempt %d/%d succeeded",
both at ERROR level."""

import json

from supervisor.containers import rclone
from supervisor.containers.rclone import judge_sync

RESET = ('operation error S3: PutObject, exceeded maximum number of attempts, 1, https response '
         'error StatusCode: 0, RequestID: , HostID: , request send failed, Put '
         '"http://127.0.0.1:46643/explore/receipts/r5.txt?x-id=PutObject": read tcp '
         '127.0.0.1:43162->127.0.0.1:46643: read: connection reset by peer')
# As messages carry it: the query string cut (core.redact), as from every URL rclone prints.
RESET_SHOWN = RESET.replace("?x-id=PutObject", "?...")
CLEAN_STATS = {"bytes": 8028, "checks": 7, "deletes": 0, "errors": 0, "fatalError": False,
               "retryError": False, "transfers": 1, "lastError": None}


def line(level: str, msg: str, **extra: object) -> str:
    return json.dumps({"time": "2026-12-06T07:47:17Z", "level": level, "msg": msg,
                       "source": "slog/logger.go:256", **extra})


FIRST_ATTEMPT_FAILED = [
    line("error", f"Failed to copy: {RESET}", object="r5.txt", objectType="*local.Object"),
    line("error", "S3 bucket explore path receipts: not deleting files as there were IO errors"),
    line("error", "S3 bucket explore path receipts: not deleting directories as there were IO "
                  "errors"),
    line("error", f"Attempt 1/2 failed with 1 errors and: {RESET}"),
]


def test_a_retried_attempt_that_healed_is_a_success_with_its_retry_counted() -> None:
    log = rclone.parse_log("\n".join([
        *FIRST_ATTEMPT_FAILED,
        line("error", "Attempt 2/2 succeeded"),
        line("notice", "\nTransferred: 8 KiB\n", stats=CLEAN_STATS),
    ]))
    assert (log.error_count, log.error_lines, log.retries) == (0, [], 1)
    assert log.retried_lines == [
        f"r5.txt: Failed to copy: {RESET_SHOWN}",
        "S3 bucket explore path receipts: not deleting files as there were IO errors",
        "S3 bucket explore path receipts: not deleting directories as there were IO errors",
        f"Attempt 1/2 failed with 1 errors and: {RESET_SHOWN}",
    ]
    assert log.last_error == ""  # rclone reset lastError with the errors (ResetErrors)
    assert judge_sync(0, False, log).ok


def test_an_error_of_the_final_attempt_still_fails_the_run() -> None:
    log = rclone.parse_log("\n".join([
        *FIRST_ATTEMPT_FAILED,
        line("error", "Failed to copy: AccessDenied", object="r6.txt"),
        line("error", "Attempt 2/2 succeeded"),
        line("notice", "\nTransferred: 8 KiB\n", stats=CLEAN_STATS),
    ]))
    assert (log.error_count, log.retries) == (1, 1)
    verdict = judge_sync(0, False, log)
    assert not verdict.ok
    assert verdict.reason == "rclone logged 1 error line(s) despite exit 0 in its final attempt"


def test_every_attempt_failed_keeps_the_last_ones_errors() -> None:
    stats = {**CLEAN_STATS, "errors": 1, "lastError": RESET}
    log = rclone.parse_log("\n".join([
        *FIRST_ATTEMPT_FAILED,
        line("error", f"Failed to copy: {RESET}", object="r5.txt"),
        line("error", f"Attempt 2/2 failed with 1 errors and: {RESET}"),
        line("notice", "\nTransferred: 8 KiB\n", stats=stats),
    ]))
    assert log.retries == 1
    assert log.error_lines == [f"r5.txt: Failed to copy: {RESET_SHOWN}",
                               f"Attempt 2/2 failed with 1 errors and: {RESET_SHOWN}"]
    assert log.last_error == RESET_SHOWN
    verdict = judge_sync(1, False, log)
    assert not verdict.ok
    assert verdict.reason == ("rclone exited with code 1: operation error S3: PutObject, exceeded "
                              "maximum number of attempts, 1, https response error StatusCode: "
                              "0, RequestID: , HostID: , request send failed, Put "
                              '"http://127.0.0.1:46643/explore/receipts/r5.txt?...": '
                              "read tcp 127.0.0.1:43162->127.0.0.1:46643: read: connection reset "
                              "by peer")


def test_a_first_try_success_logs_no_attempt_line_and_counts_no_retry() -> None:
    log = rclone.parse_log(line("notice", "\nTransferred: 8 KiB\n", stats=CLEAN_STATS))
    assert (log.retries, log.retried_lines, log.error_count) == (0, [], 0)
    assert judge_sync(0, False, log).ok


def test_a_look_alike_message_of_an_object_is_still_an_error() -> None:
    """Only rclone's own attempt lines end an attempt: an object error whose text starts
    like one stays an error of the attempt it is in."""
    log = rclone.parse_log("\n".join([
        line("error", "Attempt 1/2 failed with 1 errors", object="Attempt 1/2 failed.pdf"),
        line("error", "Attempt 1/2 succeeded: no"),
        line("notice", "\nTransferred: 8 KiB\n", stats=CLEAN_STATS),
    ]))
    assert (log.retries, log.error_count) == (0, 2)
    assert not judge_sync(0, False, log).ok


def test_retried_lines_are_bounded() -> None:
    attempt = [line("error", f"e{i}") for i in range(500)]
    log = rclone.parse_log("\n".join([
        *attempt, line("error", "Attempt 1/3 failed with 500 errors"),
        *attempt, line("error", "Attempt 2/3 failed with 500 errors"),
        line("error", "Attempt 3/3 succeeded"),
        line("notice", "x", stats=CLEAN_STATS),
    ]))
    assert log.retries == 2
    assert len(log.retried_lines) == rclone.MAX_KEPT_ERRORS
    assert judge_sync(0, False, log).ok
