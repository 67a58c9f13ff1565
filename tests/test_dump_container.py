"""The dump container's state (health.db_container) read from real containers on the test
engine: missing, exited, paused, running with a failing HEALTHCHECK, and running healthy; each
as `status` shows it in its "db-backup container" row. Every other live test sets
db_container = "" and so never meets one."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import docker
import pytest

from supervisor import cli
from tests.harness.cli import _detach_cli_logging  # noqa: F401 - autouse fixture
from tests.harness.images import ensure_debian_pg_image
from tests.harness.pgtree import fill_volume, make_backups_tree
from tests.harness.poll import poll

pytestmark = pytest.mark.docker
SECOND_NS = 1_000_000_000


@pytest.fixture(scope="module")
def containers(docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """State -> the name of a real container in it (a plain Debian image: what is judged is
    Docker's view of the container, not what runs in it)."""
    image = ensure_debian_pg_image(docker_client)
    tag = secrets.token_hex(4)
    made = []

    def run(state: str, command: list[str], **kw: object) -> docker.models.containers.Container:
        made.append(docker_client.containers.run(
            image, command, name=f"ardua-test-pbl-{state}-{tag}", detach=True,
            network_mode="host", **kw))
        return made[-1]

    try:
        exited = run("exited", ["true"])
        paused = run("paused", ["sleep", "infinity"])
        # Docker runs the check itself: `false` fails it, one retry makes it "unhealthy".
        unhealthy = run("unhealthy", ["sleep", "infinity"], healthcheck={
            "test": ["CMD", "false"], "interval": SECOND_NS // 5, "timeout": SECOND_NS,
            "retries": 1})
        healthy = run("healthy", ["sleep", "infinity"], healthcheck={
            "test": ["CMD", "true"], "interval": SECOND_NS // 5, "timeout": SECOND_NS,
            "retries": 1})
        paused.pause()
        exited.wait(timeout=30)

        def health(container) -> str:
            container.reload()
            return (container.attrs["State"].get("Health") or {}).get("Status", "")

        poll(lambda: health(unhealthy) == "unhealthy", "the failing HEALTHCHECK", timeout=30)
        poll(lambda: health(healthy) == "healthy", "the passing HEALTHCHECK", timeout=30)
        yield {c.name.split("-")[3]: c.name for c in made} | {
            "missing": f"ardua-test-pbl-missing-{tag}"}
    finally:
        for container in made:
            container.remove(force=True)


@pytest.mark.parametrize(("state", "row", "diagnosis"), [
    ("missing", ("CRITICAL", "missing"),
     "DB backup container is missing: no new dumps will be made"),
    ("exited", ("CRITICAL", "exited"), "DB backup container is exited: no new dumps will be made"),
    ("paused", ("CRITICAL", "paused"), "DB backup container is paused: no new dumps will be made"),
    ("unhealthy", ("WARNING", "running, unhealthy"), "DB backup container is unhealthy"),
    ("healthy", ("OK", "running, healthy"), None),
])
def test_status_reads_the_dump_containers_state(
    containers, state, row, diagnosis, tmp_path, s3server, bucket, pg_volume, docker_client,
    write_config, capsys,
) -> None:
    fresh = datetime.now(UTC) - timedelta(hours=2)
    fill_volume(docker_client, pg_volume, lambda root: make_backups_tree(
        root, [(fresh, os.urandom(2000))]))
    cfg = write_config(tmp_path, s3server, bucket, db_volume=pg_volume,
                       health={"db_container": containers[state]})
    cli.main(["--config", str(cfg), "status", "--json"])
    verdict = json.loads(capsys.readouterr().out)
    rows = {c["name"]: (c["state"], c["detail"]) for c in verdict["checks"]}
    assert rows["db-backup container"] == row
    problems = [p["text"] for p in verdict["problems"] if "container" in p["text"]]
    assert problems == ([diagnosis] if diagnosis else [])
