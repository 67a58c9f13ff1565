"""Processes that own containers the way the supervisor does (its owner label), for the tests of
reaping and of "is a run in progress": one installation's containers must never be another's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from supervisor.containers import engine as docker_runner
from tests.harness import dockerd

ROOT = Path(__file__).resolve().parents[2]

# Two installations (their state_dir) on the one engine.
HERE = docker_runner.instance_label(Path("/var/lib/ardua-backup"))
OTHER = docker_runner.instance_label(Path("/srv/other/ardua-backup"))
SERVER = ["rcd", "--rc-no-auth", "--rc-addr", "127.0.0.1:0"]  # runs until stopped; any port

# A process that makes one container of JOB the way the supervisor does (exited: it ran
# `rclone version`; created: never started; running: `rclone rcd`, a server that runs until
# stopped, as the drill's database does) for installation INSTANCE ("" for a container made
# before the label existed), prints its id, and holds it until ended.
OWNER = """
import sys
from supervisor.containers import engine as docker_runner
image, job, state, instance = sys.argv[1:]
client = docker_runner.connect()
command = ["rcd", "--rc-no-auth", "--rc-addr", "127.0.0.1:0"] if state == "running" else ["version"]
labels = {docker_runner.LABEL_JOB: job}
if instance:
    labels[docker_runner.LABEL_INSTANCE] = instance
spec = docker_runner.Spec(image=image, command=command, mounts=[], env={},
                          labels=labels, network_mode="host")
container = docker_runner._create(client, spec)
if state != "created":
    container.start()
if state == "exited":
    container.wait()
print(container.id, flush=True)
sys.stdin.read()
"""


def owner_process(image: str, job: str, state: str,
                  instance: str = HERE) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, image, job, state, instance], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def end(*owners: subprocess.Popen) -> None:
    """SIGKILL: no cleanup of their own."""
    for proc in owners:
        proc.kill()
        proc.wait()
