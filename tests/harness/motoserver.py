"""moto's S3 server (``moto_server`` from the venv) on a free loopback port: the S3 server of the
tests that need Object Lock kept on every object (SeaweedFS keeps a bucket's lock configuration
but is not the reference here).

What the tests rely on, from moto's docs and source (moto 5.2.6):
- ``moto_server -H HOST -p PORT`` serves every mocked service on one port, S3 path-style
  included; state lives in memory and dies with the process
  (https://docs.getmoto.org/en/latest/docs/server_mode.html).
- Any access key and secret is accepted: moto checks IAM only when ``INITIAL_NO_AUTH_ACTION_COUNT``
  is set (https://docs.getmoto.org/en/latest/docs/iam.html).
- CreateBucket with ObjectLockEnabledForBucket turns versioning and Object Lock on; a PUT or
  CopyObject carrying ``x-amz-object-lock-*`` headers needs Content-MD5 or
  ``x-amz-sdk-checksum-algorithm`` (400 MissingUploadObjectWithObjectLockHeaders), and on a
  bucket without Object Lock is refused (400 InvalidRequest); HEAD answers ObjectLockMode and
  ObjectLockRetainUntilDate (s3/responses.py ``_key_response_put``, ``_get_lock_details``).
- A multipart upload does NOT keep the lock sent on its CreateMultipartUpload (s3/models.py
  ``FakeMultipart`` has no lock fields): keep test files under rclone's upload cutoff.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions

from tests.harness.server import Server, free_port

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def moto_binary() -> Path:
    found = Path(sys.executable).parent / "moto_server"
    if found.is_file() and os.access(found, os.X_OK):
        return found
    on_path = shutil.which("moto_server")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError("moto_server (moto[server]) not found next to the interpreter")


class MotoServer(Server):
    """Attributes as tests.harness.s3server.S3Server's, so write_config takes either:
    ``endpoint_url``, ``access_key``, ``secret_key``, ``region``, ``port``, ``dir``."""

    region = "us-east-1"
    access_key = "AKIAMOTOTEST"  # moto accepts any
    secret_key = "moto-accepts-any-secret"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ardua-moto-"))
        self.port = free_port()
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = START_TIMEOUT) -> MotoServer:
        with open(self.dir / "moto.out", "ab") as log:
            self._proc = subprocess.Popen(
                [str(moto_binary()), "-H", HOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        client = self.client(retries=0, timeout=2)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode} during "
                                   f"start:\n{self.output_tail()}")
            try:
                client.list_buckets()
                return self
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                last = e
            time.sleep(0.1)  # poll interval, bounded by the deadline above
        self.stop()
        raise TimeoutError(f"moto_server not ready in {timeout} s ({last}):\n{self.output_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def output_tail(self, n: int = 40) -> str:
        try:
            lines = (self.dir / "moto.out").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def client(self, *, retries: int = 2, timeout: float = 10):
        """A boto3 S3 client for this server (path-style addressing)."""
        return boto3.session.Session(
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            region_name=self.region,
        ).client("s3", endpoint_url=self.endpoint_url, config=botocore.config.Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": retries + 1, "mode": "standard"},
            connect_timeout=timeout, read_timeout=timeout,
        ))

    def create_bucket(self, name: str, *, lock: bool = True) -> str:
        """A bucket; with lock, created with Object Lock (and so versioning) on."""
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
        return name
