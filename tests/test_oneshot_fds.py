"""A one-shot container's attach connection is closed when its output ends, not left for
Python's cyclic garbage collector (the SDK hangs the HTTP response on the socket it returns:
a cycle). Without that, a daemon's fds rose by one per container between collections (a 22-47
sawtooth over 1,000 runs). Real containers on the test engine, the collector turned off."""

from __future__ import annotations

import gc
import os

import pytest

from supervisor.containers import engine as docker_runner

pytestmark = pytest.mark.docker


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_each_containers_connection_is_closed_at_once(docker_client, rclone_image) -> None:
    spec = docker_runner.Spec(
        image=rclone_image, command=["version"], mounts=[], env={},
        labels={docker_runner.LABEL_JOB: "fds-test"}, network_mode="none")

    def run() -> None:
        result = docker_runner.run_oneshot(docker_client, spec, 60)
        assert result.exit_code == 0 and "rclone v" in result.stdout

    # The client's connection pools fill over the first runs (up to 12 sockets, measured), and
    # stay so: from then on a container costs no fd it keeps.
    for _ in range(4):
        run()
    gc.disable()
    try:
        before = _open_fds()
        for _ in range(8):
            run()
        assert _open_fds() - before <= 1  # was 8: one per container
    finally:
        gc.enable()
