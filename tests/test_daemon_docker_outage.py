"""The daemon keeps running while Docker hangs and recovers when it is back."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from pathlib import Path

from tests.harness import dockerd
from tests.harness.cli import minutely_receipts_config, service

ROOT = Path(__file__).resolve().parent.parent


class SocketProxy:
    """A Docker socket that hangs, then comes back: bound and listening from the start, so the
    kernel accepts every connection and nobody answers (a dockerd that is stuck: worse than a
    missing socket, which is refused at once); start() forwards it to the test engine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(64)

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(dockerd.SOCKET)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
        self.path.unlink(missing_ok=True)


def test_runs_fail_clearly_while_docker_is_down_then_recover(s3server, bucket, write_config,
                                                             tmp_path) -> None:
    cfg = minutely_receipts_config(write_config, tmp_path, s3server, bucket)
    sock = tmp_path / "docker.sock"
    proxy = SocketProxy(sock)
    try:
        with service(cfg, tmp_path, DOCKER_HOST=f"unix://{sock}",
                     WATCHDOG_USEC="60000000") as (proc, notify):  # the unit's WatchdogSec
            # Each of the loop's Docker calls is bounded (daemon.service: 10 s), not docker-py's
            # 60 s: READY was 61 s late and WATCHDOG=1 stopped for 90 s (systemd kills at 60).
            notify.expect("READY", "1", timeout=30)
            # The catch-up run, with Docker hung: its own client gives up after 30 s.
            notify.status_until(lambda s: "receipts-upload: failed" in s, timeout=90)
            assert proc.poll() is None
            text = (tmp_path / "daemon.log").read_text()
            assert f"Docker engine at unix://{sock} is not reachable" in text
            assert "Read timed out" in text
            assert s3server.list_keys(bucket) == {}

            proxy.start()  # Docker is back: the next fire (within a minute) must succeed
            notify.status_until(lambda s: "receipts-upload: success" in s, timeout=120)
            assert s3server.get(bucket, "receipts/r1.pdf") == b"receipt one"
            assert notify.gaps("WATCHDOG") and max(notify.gaps("WATCHDOG")) < 45, notify.gaps(
                "WATCHDOG")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    finally:
        proxy.close()
