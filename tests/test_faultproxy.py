"""The fault proxy itself (tests/harness/faultproxy.py), in front of the real SeaweedFS: it
forwards signed requests unchanged, and each fault looks to a client as the real one does."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.harness.faultproxy import (
    COPY,
    GET,
    HEAD,
    LIST,
    PART,
    PUT,
    SENTINEL,
    FaultProxy,
    classify,
    rule,
)
from tests.harness.s3server import S3Server


@pytest.mark.parametrize(("method", "target", "headers", "kind"), [
    ("GET", "/b?list-type=2&prefix=p%2F", {}, LIST),
    ("GET", "/b/", {}, LIST),
    ("GET", "/b/p/a.pdf", {}, GET),
    ("HEAD", "/b/p/a.pdf", {}, HEAD),
    ("PUT", "/b/p/a.pdf?x-id=PutObject", {}, PUT),
    ("PUT", "/b/p/.last_success", {}, SENTINEL),
    ("PUT", "/b/p/big.dump?partNumber=2&uploadId=abc", {}, PART),
    ("PUT", "/b/p/c.dump", {"x-amz-copy-source": "b/p/a.dump"}, COPY),
])
def test_requests_are_told_apart(method: str, target: str, headers: dict[str, str],
                                 kind: str) -> None:
    assert classify(method, target, headers) == kind


@pytest.fixture
def proxied(s3server: S3Server, bucket: str) -> Iterator[tuple[FaultProxy, object]]:
    with FaultProxy(s3server.endpoint_url) as proxy:
        client = boto3.client(
            "s3", endpoint_url=proxy.endpoint_url, region_name=s3server.region,
            aws_access_key_id=s3server.access_key, aws_secret_access_key=s3server.secret_key,
            config=Config(retries={"mode": "standard", "total_max_attempts": 2}))
        yield proxy, client


def test_signed_requests_pass_unchanged_and_503_is_s3s_slowdown(proxied, bucket: str) -> None:
    proxy, client = proxied
    client.put_object(Bucket=bucket, Key="p/a.pdf", Body=b"abc")  # SigV4 verified upstream
    proxy.set_rules(rule(GET, "503"))
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket=bucket, Key="p/a.pdf")
    error = caught.value.response
    assert error["Error"] == {"Code": "SlowDown", "Message": "Please reduce your request rate."}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    proxy.set_rules(rule(GET, "503", count=1))  # once: the client's retry heals it
    assert client.get_object(Bucket=bucket, Key="p/a.pdf")["Body"].read() == b"abc"


def _raw_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /b/k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return sock.recv(100)


def test_reset_is_an_rst_and_an_outage_refuses_until_healed(proxied) -> None:
    proxy, _ = proxied
    proxy.set_rules(rule(GET, "reset"))
    with pytest.raises(ConnectionResetError):
        _raw_get(proxy.port)
    proxy.set_rules(rule(GET, "outage"))
    with pytest.raises(ConnectionResetError):
        _raw_get(proxy.port)
    with pytest.raises(ConnectionRefusedError):
        _raw_get(proxy.port)
    proxy.heal()
    assert _raw_get(proxy.port).startswith(b"HTTP/1.1 ")  # forwarded again, same port


def test_an_acked_put_is_not_stored_but_its_head_answers(proxied, bucket: str) -> None:
    proxy, client = proxied
    proxy.set_rules(rule(PUT, "ack"))
    etag = client.put_object(Bucket=bucket, Key="p/lost.pdf", Body=b"abc")["ETag"]
    assert etag == '"900150983cd24fb0d6963f7d28e17f72"'  # MD5 of b"abc", as S3 answers
    assert client.head_object(Bucket=bucket, Key="p/lost.pdf")["ContentLength"] == 3
    assert client.list_objects_v2(Bucket=bucket, Prefix="p/")["KeyCount"] == 0
