"""Reaping a killed run's leftovers is exact: a job's finished or never started container is
removed only when the process that made it (LABEL_OWNER: boot, pid namespace, pid, start time)
is gone. A live owner's just-exited container (a daemon's run while `run-once` of the same job
reaps) is its owner's to read and remove. Reaping and the shutdown stop see one installation's
containers only (LABEL_INSTANCE, from its state_dir): another installation's job of the same name
on the engine is its own. Real containers on the test engine, all with host networking."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from supervisor.containers import engine as docker_runner
from tests.harness.owners import HERE, OTHER, SERVER, end, owner_process

pytestmark = pytest.mark.docker

@pytest.fixture
def job(docker_client: docker.DockerClient) -> Iterator[str]:
    """A job name of this test alone (the engine is shared); its containers removed after."""
    name = f"reap-test-{secrets.token_hex(4)}"
    yield name
    for c in docker_client.containers.list(
            all=True, filters={"label": f"{docker_runner.LABEL_JOB}={name}"}):
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def ids(client: docker.DockerClient, job: str) -> set[str]:
    return {c.id for c in client.containers.list(
        all=True, filters={"label": f"{docker_runner.LABEL_JOB}={job}"})}


def test_reaps_only_containers_whose_owner_is_gone(docker_client, rclone_image, job) -> None:
    exited_owner, exited = owner_process(rclone_image, job, "exited")
    created_owner, created = owner_process(rclone_image, job, "created")
    try:
        assert docker_client.containers.get(exited).status == "exited"
        assert docker_client.containers.get(created).status == "created"
        # Owners alive: a live run's container is left to its owner, however long it waits.
        assert docker_runner.reap_orphans(docker_client, job, instance=HERE) == 0
        assert ids(docker_client, job) == {exited, created}

        exited_owner.kill()  # SIGKILL: no cleanup of its own
        exited_owner.wait()
        assert docker_runner.reap_orphans(docker_client, job, instance=HERE) == 1
        assert ids(docker_client, job) == {created}

        created_owner.kill()  # killed between create and start
        created_owner.wait()
        assert docker_runner.reap_orphans(docker_client, job, instance=HERE) == 1
        assert ids(docker_client, job) == set()
    finally:
        for proc in (exited_owner, created_owner):
            proc.kill()
            proc.wait()


def test_running_orphans_are_reaped_only_when_asked(docker_client, rclone_image, job) -> None:
    """A killed run's sync is left to finish (the overlap check waits for it); a killed drill's
    server runs forever and holds its port: the drill asks for running orphans too."""
    owner, server = owner_process(rclone_image, job, "running")
    try:
        # Owner alive:
        assert docker_runner.reap_orphans(docker_client, job, instance=HERE, running=True) == 0
        owner.kill()
        owner.wait()
        assert docker_runner.reap_orphans(docker_client, job, instance=HERE) == 0
        assert docker_client.containers.get(server).status == "running"
        assert docker_runner.reap_orphans(docker_client, job, instance=HERE, running=True) == 1
        assert ids(docker_client, job) == set()
    finally:
        owner.kill()
        owner.wait()


def test_shutdown_stops_only_this_process_containers(docker_client, rclone_image, job) -> None:
    """The daemon's shutdown stops what it started, not a `run-once` of the same job running
    beside it (another process) nor another installation's."""
    other, theirs = owner_process(rclone_image, job, "running")
    spec = docker_runner.Spec(image=rclone_image, command=SERVER, mounts=[], env={},
                              labels={docker_runner.LABEL_JOB: job,
                                      docker_runner.LABEL_INSTANCE: HERE},
                              network_mode="host")
    try:
        with docker_runner.service(docker_client, spec) as mine:
            assert docker_runner.stop_own_containers(docker_client, job, 5, instance=HERE) == 1
            mine.reload()
            assert mine.status == "exited"
            assert docker_client.containers.get(theirs).status == "running"
    finally:
        other.kill()
        other.wait()


def test_owner_label_names_one_process(docker_client, rclone_image, job) -> None:
    """A reused pid (same pid, another start time) is not the owner; an owner in another pid
    namespace cannot be looked up from here and is kept; a container without the label (an
    older version made it) keeps the old rule: finished ones go, created ones stay."""
    boot, pidns, pid, _start = docker_runner.owner_label(os.getpid()).split("/")

    def make(owner: str | None, start: bool) -> str:
        labels = {docker_runner.LABEL_JOB: job}
        if owner is not None:
            labels[docker_runner.LABEL_OWNER] = owner
        c = docker_client.containers.create(rclone_image, ["version"], labels=labels,
                                            network_mode="host")
        if start:
            c.start()
            c.wait()
        return c.id

    reused = make(f"{boot}/{pidns}/{pid}/1", start=True)
    elsewhere = make(f"{boot}/1{pidns}/1/1", start=True)
    rebooted = make(f"not-{boot}/{pidns}/{pid}/1", start=False)
    old_exited = make(None, start=True)
    old_created = make(None, start=False)

    assert docker_runner.reap_orphans(docker_client, job, instance=HERE) == 3
    assert ids(docker_client, job) == {elsewhere, old_created}
    assert {reused, rebooted, old_exited}.isdisjoint(ids(docker_client, job))


def test_keeps_this_process_containers_in_use(docker_client, rclone_image, job) -> None:
    spec = docker_runner.Spec(image=rclone_image, command=["version"], mounts=[], env={},
                              labels={docker_runner.LABEL_JOB: job,
                                      docker_runner.LABEL_INSTANCE: HERE},
                              network_mode="host")
    with docker_runner.service(docker_client, spec) as container:
        container.wait()  # exited, not yet read nor removed by its owner: this process
        assert docker_runner.reap_orphans(docker_client, job, instance=HERE) == 0
        assert ids(docker_client, job) == {container.id}
    assert ids(docker_client, job) == set()


def test_reaps_only_this_installations_leftovers(docker_client, rclone_image, job) -> None:
    """Another installation's leftovers of a job of the same name, exited or never started, its
    owner killed: not ours to reap (it reaps them at its next run). One made before the
    installation label existed is reaped by whichever installation runs the job, as before."""
    exited_owner, exited = owner_process(rclone_image, job, "exited", OTHER)
    created_owner, created = owner_process(rclone_image, job, "created", OTHER)
    old_owner, old = owner_process(rclone_image, job, "exited", "")
    end(exited_owner, created_owner, old_owner)
    assert docker_client.containers.get(created).status == "created"

    assert docker_runner.reap_orphans(docker_client, job, instance=HERE, running=True) == 1
    assert ids(docker_client, job) == {exited, created}
    assert old not in ids(docker_client, job)
    assert docker_runner.reap_orphans(docker_client, job, instance=OTHER) == 2
    assert ids(docker_client, job) == set()


def test_running_check_and_shutdown_see_this_installation_only(
        docker_client, rclone_image, job) -> None:
    """Another installation's running container of a job of the same name, made by this very
    process (its owner, alive): it is not a run of ours in progress, and our shutdown leaves it
    running; its own installation sees and stops it."""
    spec = docker_runner.Spec(image=rclone_image, command=SERVER, mounts=[], env={},
                              labels={docker_runner.LABEL_JOB: job,
                                      docker_runner.LABEL_INSTANCE: OTHER},
                              network_mode="host")
    with docker_runner.service(docker_client, spec) as theirs:
        assert docker_runner.job_containers(docker_client, job, instance=HERE) == []
        assert docker_runner.stop_own_containers(docker_client, job, 5, instance=HERE) == 0
        assert docker_runner.reap_orphans(docker_client, job, instance=HERE, running=True) == 0
        theirs.reload()
        assert theirs.status == "running"

        assert [c.id for c in docker_runner.job_containers(
            docker_client, job, instance=OTHER)] == [theirs.id]
        assert docker_runner.stop_own_containers(docker_client, job, 5, instance=OTHER) == 1
        theirs.reload()
        assert theirs.status == "exited"


def test_instance_label_names_the_state_dir(tmp_path: Path) -> None:
    """The same directory however it is written (a symlink, a trailing `/..`), another one
    differs; short enough to read in `docker ps`."""
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "link").symlink_to(state)
    label = docker_runner.instance_label(state)
    assert docker_runner.instance_label(tmp_path / "link") == label
    assert docker_runner.instance_label(state / "sub" / "..") == label
    assert docker_runner.instance_label(tmp_path / "other") != label
    assert len(label) == 12


def test_a_process_hidden_from_proc_is_not_taken_for_gone(monkeypatch) -> None:
    """Under the unit's ProtectProc=invisible the daemon sees no other user's process in /proc:
    the kernel still tells a live pid from a dead one, and only a sure end counts."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()

    def hidden(pid: int) -> list[str]:
        raise FileNotFoundError(f"/proc/{pid}/stat")

    monkeypatch.setattr(docker_runner, "_stat_fields", hidden)
    assert docker_runner._gone(os.getppid(), "1") is False  # alive: kept, whatever its start
    assert docker_runner._gone(ended.pid, "1") is True
