"""core.redact, the one helper between an exception's text and a message, on the texts the
libraries really produce (built with their own exception classes)."""

from __future__ import annotations

import json

import pytest
import urllib3.exceptions
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, SSLError

from supervisor.containers.rclone import parse_log
from supervisor.core import http
from supervisor.core.redact import redact
from supervisor.storage import s3
from supervisor.storage.destination import Destination

KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key id
SIGNATURE = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
PRESIGNED = (f"http://127.0.0.1:8333/bucket?list-type=2&prefix=receipts%2F&X-Amz-Algorithm="
             f"AWS4-HMAC-SHA256&X-Amz-Credential={KEY_ID}%2F20261206%2Fus-east-1%2Fs3%2F"
             f"aws4_request&X-Amz-Date=20261206T074957Z&X-Amz-Expires=900&X-Amz-SignedHeaders="
             f"host&X-Amz-Signature={SIGNATURE}")


@pytest.mark.parametrize("text", [
    str(ConnectionClosedError(endpoint_url=PRESIGNED)),
    str(EndpointConnectionError(endpoint_url=PRESIGNED)),
    str(SSLError(endpoint_url=PRESIGNED, error="certificate verify failed")),
    # urllib3's and requests' texts name the request's path and query without the host
    str(urllib3.exceptions.MaxRetryError(None, PRESIGNED.split(":8333", 1)[1], "reset")),
    f"Authorization: AWS4-HMAC-SHA256 Credential={KEY_ID}/20130524/us-east-1/s3/aws4_request, "
    f"SignedHeaders=host;range;x-amz-date, Signature={SIGNATURE}",
    f"https://{KEY_ID}:{SIGNATURE}@s3.example.com/bucket",
])
def test_no_credential_material_survives(text: str) -> None:
    assert SIGNATURE in text or KEY_ID in text  # the library's own text holds it
    shown = redact(text)
    for secret in (SIGNATURE, KEY_ID, "X-Amz-Signature", "X-Amz-Credential"):
        assert secret not in shown, shown


def test_what_is_kept_names_the_endpoint() -> None:
    assert redact(str(ConnectionClosedError(endpoint_url=PRESIGNED))) == (
        'Connection was closed before we received a valid response from endpoint URL: '
        '"http://127.0.0.1:8333/bucket?...".')
    assert redact("https://user:pw@hc-ping.com/abc?x=1#f then 10:20") == (
        "https://hc-ping.com/abc?... then 10:20")
    assert redact("no URL: a?b=c") == "no URL: a?b=c"


def test_s3_describe_and_http_reason_redact() -> None:
    dest = Destination(bucket="bucket", endpoint_url="http://127.0.0.1:8333", table="s3")
    described = s3.describe(ConnectionClosedError(endpoint_url=PRESIGNED), dest)
    assert described == ("S3 endpoint http://127.0.0.1:8333 closed the connection before "
                         "answering (reset); check s3.endpoint_url and the network")
    assert SIGNATURE not in described and KEY_ID not in described
    reason = http._reason(ValueError(f"unknown url type: 'x://u:{SIGNATURE}@h/?t={KEY_ID}'"))
    assert reason == "unknown url type: 'x://h/?...'"


def test_rclone_error_lines_lose_query_strings_and_show_names_escaped() -> None:
    log = "\n".join(json.dumps(entry) for entry in (
        {"level": "error", "object": "receipts/a\x1b]0;x\x07.pdf",
         "msg": "Failed to copy: Put \"http://127.0.0.1:9000/b/receipts/a.pdf?uploadId=7&"
                "X-Amz-Signature=abc\": connection reset by peer"},
        {"level": "error", "msg": "Attempt 1/1 failed with 1 errors"},
        {"level": "info", "stats": {"lastError": "GET http://u:pw@127.0.0.1:9000/b?list-type=2: "
                                                 "SlowDown", "errors": 1}},
    ))
    summary = parse_log(log)
    shown = " ".join([*summary.error_lines, summary.last_error])
    assert "X-Amz-Signature" not in shown and "uploadId" not in shown and "pw@" not in shown
    assert "\x1b" not in shown and "a\\x1b]0;x\\x07.pdf" in summary.error_lines[0]
    assert summary.last_error == "GET http://127.0.0.1:9000/b?... SlowDown"
