"""A sync that hangs for real: the S3 server and the rclone process inside the container are
frozen with SIGSTOP, driven by Docker events (no timing guesses)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import docker

from supervisor import docker_runner
from tests.harness.s3server import S3Server


class SyncFreezer:
    """Freezes the S3 server when a sync container is created (it cannot start before its
    create call returns, so the sync must hang), then freezes rclone inside it and keeps its
    inspect data. close() thaws both."""

    def __init__(self, client: docker.DockerClient, server: S3Server):
        self.client, self.server = client, server
        self.sync_attrs: dict | None = None
        self.stream = client.events(decode=True, filters={"type": "container",
                                                          "label": docker_runner.LABEL_STEP})
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        for event in self.stream:
            step = event.get("Actor", {}).get("Attributes", {}).get(docker_runner.LABEL_STEP)
            if event.get("Action") == "create" and step == "sync":
                self.server.pause()
            if event.get("Action") == "start" and step == "sync":
                container = self.client.containers.get(event["id"])
                os.kill(container.attrs["State"]["Pid"], signal.SIGSTOP)
                self.sync_attrs = container.attrs
                return

    def close(self) -> None:
        self.stream.close()
        self.server.resume()
        if self.sync_attrs:
            # Gone already when it was killed at its timeout, or removed.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.sync_attrs["State"]["Pid"], signal.SIGCONT)
