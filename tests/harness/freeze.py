"""A sync that hangs for real: the S3 server and the rclone process inside the container are
frozen with SIGSTOP, driven by Docker events (no timing guesses)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import docker
import docker.errors
import docker.models.containers

from supervisor.containers import engine as docker_runner
from tests.harness.s3server import S3Server


def _uses(attrs: dict, server: S3Server | None = None, mount: str | None = None) -> bool:
    """Does this container talk to `server` / mount `mount` (a volume name or host path)? The
    test engine is shared with other sessions: never freeze one of their containers."""
    env = attrs["Config"].get("Env") or []
    if server is not None and f"RCLONE_S3_ENDPOINT={server.endpoint_url}" not in env:
        return False
    return mount is None or any(mount in (m.get("Name"), m.get("Source"))
                                for m in attrs.get("Mounts") or [])


class SyncFreezer:
    """Freezes the S3 server when a sync container to it is created (it cannot start before its
    create call returns, so the sync must hang), then freezes rclone inside it and keeps its
    inspect data. close() thaws both."""

    def __init__(self, client: docker.DockerClient, server: S3Server):
        self.client, self.server = client, server
        self.sync_attrs: dict | None = None
        self.stream = client.events(decode=True, filters={
            "type": "container", "label": f"{docker_runner.LABEL_STEP}=sync"})
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _ours(self, container_id: str) -> docker.models.containers.Container | None:
        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return None
        return container if _uses(container.attrs, server=self.server) else None

    def _watch(self) -> None:
        for event in self.stream:
            if event.get("Action") == "create" and self._ours(event["id"]):
                self.server.pause()
            if event.get("Action") == "start" and (container := self._ours(event["id"])):
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


class ListingFreezer:
    """Freezes rclone in a source-listing container of `mount` (volume name or host path) whose
    run id starts with `run_prefix` ("status-": the listing `ardua-backup status` makes), keeping
    it alive until close() thaws it; its inspect data is then in `attrs`. Frozen on Docker's
    start event: a listing that finished before the signal landed is missed, and the next
    matching one is taken."""

    def __init__(self, client: docker.DockerClient, run_prefix: str, mount: str):
        self.client, self.run_prefix, self.mount = client, run_prefix, mount
        self.attrs: dict | None = None
        self.missed = 0
        self.stream = client.events(decode=True, filters={
            "type": "container", "event": "start", "label": f"{docker_runner.LABEL_STEP}=list"})
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        for event in self.stream:
            labels = event.get("Actor", {}).get("Attributes", {})
            if not labels.get(docker_runner.LABEL_RUN, "").startswith(self.run_prefix):
                continue
            try:
                container = self.client.containers.get(event["id"])
                if not _uses(container.attrs, mount=self.mount):
                    continue
                os.kill(container.attrs["State"]["Pid"], signal.SIGSTOP)
                container.reload()
            except (docker.errors.NotFound, ProcessLookupError):
                self.missed += 1
                continue
            if container.status != "running":
                self.missed += 1
                continue
            self.attrs = container.attrs
            return

    def close(self) -> None:
        self.stream.close()
        if self.attrs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.attrs["State"]["Pid"], signal.SIGCONT)
