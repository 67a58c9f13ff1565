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

import shutil
import subprocess
import tempfile
from pathlib import Path

import botocore.exceptions

from tests.harness.poll import poll
from tests.harness.s3server import S3Server
from tests.harness.server import Server, free_port, output_tail, stop_group, venv_binary

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


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
                [str(venv_binary("moto_server", "moto[server]")), "-H", HOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True,
            )
        client = self.client(retries=0, timeout=2)

        def answers() -> bool:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited during start:\n{self.output_tail()}")
            try:
                client.list_buckets()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                return False
            return True

        # Stopped by Server.__enter__ (close) when this fails.
        poll(answers, lambda: f"moto_server on {self.endpoint_url}:\n{self.output_tail()}",
             timeout, interval=0.1)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc, timeout)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def output_tail(self, n: int = 40) -> str:
        return output_tail(self.dir / "moto.out", n)

    # The same path-style client with bounded retries as SeaweedFS's (moto ignores the keys).
    client = S3Server.client

    def create_bucket(self, name: str, *, lock: bool = True) -> str:
        """A bucket; with lock, created with Object Lock (and so versioning) on."""
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
        return name
