"""No credential material in any message (docs/security.md): with a wrong secret, an unknown key,
the S3 server stopped, and a listing whose connection is reset, the presigned listing's
`X-Amz-Signature`/`X-Amz-Credential`, the access key id and the secret appear nowhere the
product writes: stdout, stderr (loguru's journal lines), the ledger (sqlite, raw bytes), the
metrics textfile and the alert body a real apprise json:// post delivers. Real CLI runs against
a real SeaweedFS, real rclone."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_credentials
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.receiver import receiving

TOKEN = "hook-" + "a11e47" * 4
MARKERS = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token")

pytestmark = pytest.mark.docker


class ListingResetProxy:
    """TCP proxy to the S3 server that resets (RST, as a dropped connection does: SO_LINGER 0)
    every connection that sends a presigned ListObjectsV2 request: its request line carries
    `list-type=2` and `X-Amz-Signature=` (botocore's presigned URL, query-string auth:
    https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html). Header-signed
    calls (the preflight, rclone) pass. botocore then raises ConnectionClosedError, whose text
    holds the whole URL it was sending (botocore/exceptions.py: "Connection was closed before we
    received a valid response from endpoint URL: \"{endpoint_url}\".")."""

    LISTING = re.compile(rb"GET \S*list-type=2\S*X-Amz-Signature=")

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.resets = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            upstream = stack.enter_context(socket.create_connection(("127.0.0.1",
                                                                     self.upstream)))
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            while chunk := _recv(client):
                if self.LISTING.search(chunk):
                    self.resets += 1
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
                    break
                upstream.sendall(chunk)
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _pump(src: socket.socket, dst: socket.socket) -> None:
    while chunk := _recv(src):
        try:
            dst.sendall(chunk)
        except OSError:
            return
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def receiver() -> Iterator:
    with receiving() as server:
        yield server


def _setup(tmp_path: Path, s3server, bucket: str, write_config, receiver,
           endpoint: str | None = None) -> Path:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r1.pdf").write_bytes(b"receipt one")
    settle(receipts)
    urls = tmp_path / "alert-urls"
    urls.write_text(f"json://127.0.0.1:{receiver.server_port}/{TOKEN}\n")
    urls.chmod(0o600)
    return write_config(tmp_path, s3server, bucket, receipts_dir=receipts,
                        s3={"endpoint_url": endpoint or s3server.endpoint_url},
                        alerts={"urls_file": str(urls)},
                        metrics={"textfile": str(tmp_path / "ardua.prom")})


def _everything_written(tmp_path: Path, results, receiver) -> str:
    """Every byte the product wrote where a person or another program reads it."""
    state = tmp_path / "state"
    files = [p for p in state.rglob("*") if p.is_file()] if state.exists() else []
    written = [p.read_bytes().decode("utf-8", "replace")
               for p in [*files, tmp_path / "ardua.prom"] if p.exists()]
    outputs = [r.stdout + r.stderr for r in results]
    bodies = [str(body) for _, body in receiver.posts]
    return "\n".join(outputs + written + bodies)


def _assert_clean(text: str, *secrets: str) -> None:
    for marker in (*MARKERS, *secrets):
        assert marker not in text, f"{marker!r} leaked:\n" + "\n".join(
            line for line in text.splitlines() if marker in line)


def test_bad_credentials_leave_no_secret_anywhere(
        tmp_path, s3server, bucket, write_config, receiver) -> None:
    cfg = _setup(tmp_path, s3server, bucket, write_config, receiver)
    creds = tmp_path / "aws-credentials"
    results, secrets = [], [s3server.secret_key]
    for access, secret, commands in (
            (s3server.access_key, "Wr0ngS3cretWr0ngS3cret", (("run-once", "receipts-upload"),
                                                            ("status",))),
            ("AKIAUNKNOWNKEY000001", "Unkn0wnS3cretUnkn0wnS3cret",
             (("run-once", "receipts-upload"), ("restore", "list")))):
        write_credentials(creds, access, secret)
        secrets += [access, secret]
        results += [run_cli(*command, config=cfg) for command in commands]
    assert [r.returncode for r in results] == [1, 2, 1, 1], [r.stdout for r in results]
    assert "refused the credentials" in results[0].stdout
    assert receiver.posts, "the failed run alerted"
    _assert_clean(_everything_written(tmp_path, results, receiver), *secrets)


def test_a_stopped_server_and_a_reset_listing_leave_no_signature(
        tmp_path, s3server, bucket, write_config, receiver) -> None:
    proxy = ListingResetProxy(int(s3server.endpoint_url.rsplit(":", 1)[1]))
    try:
        cfg = _setup(tmp_path, s3server, bucket, write_config, receiver,
                     endpoint=f"http://127.0.0.1:{proxy.port}")
        reset = [run_cli("run-once", "receipts-upload", config=cfg),
                 run_cli("restore", "list", config=cfg)]
    finally:
        proxy.close()
    assert proxy.resets >= 2  # the listing of each command was refused
    assert reset[0].returncode == 1, reset[0].stdout + reset[0].stderr
    assert "closed the connection before answering (reset)" in reset[0].stdout  # the cause
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=tmp_path / "receipts",
                       alerts={"urls_file": str(tmp_path / "alert-urls")},
                       metrics={"textfile": str(tmp_path / "ardua.prom")})
    s3server.stop()
    try:
        stopped = [run_cli("run-once", "receipts-upload", config=cfg)]
    finally:
        s3server.start()
    assert stopped[0].returncode == 1
    assert len(receiver.posts) >= 1
    _assert_clean(_everything_written(tmp_path, reset + stopped, receiver),
                  s3server.access_key, s3server.secret_key)
