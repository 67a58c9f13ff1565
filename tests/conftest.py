"""Shared fixtures: private Docker engine, local images, SeaweedFS S3, PostgreSQL, configs."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.harness import dockerd
from tests.harness.images import ensure_rclone_image
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

JOB_LABEL = "ardua-backup.job"

# What this session created. The test engine is shared with other sessions (another developer's
# pytest may run at the same time), so leftover checks only touch containers that use these.
_OURS: dict[str, set[str]] = {"endpoints": set(), "volumes": set(), "paths": set()}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: builds something big (cached by tag afterwards)")
    config.addinivalue_line("markers", "docker: needs the test Docker engine")


# Every fixture that reaches the test engine depends on docker_client (rclone_image, pg_volume,
# write_config, postgres_image, ...), and item.fixturenames is the whole closure.
DOCKER_FIXTURES = frozenset({"docker_client"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark docker every test that uses the test engine through a fixture, so that
    `pytest -m "not docker"` runs on a machine without one. Tests that start containers another
    way (the CLI in a subprocess, dockerd directly) carry the mark explicitly."""
    for item in items:
        if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    host = dockerd.ensure_dockerd()
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    client = docker.DockerClient(base_url=host, timeout=120)
    try:
        yield client
    finally:
        client.close()
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old


@pytest.fixture(scope="session")
def rclone_image(docker_client: docker.DockerClient) -> str:
    return ensure_rclone_image(docker_client)


def _serving() -> Iterator[S3Server]:
    with S3Server() as server:
        _OURS["endpoints"].add(server.endpoint_url)
        yield server


def _fresh_bucket(server: S3Server, name: str) -> str:
    if not server.running:  # a test stopped it for fault injection and failed before restarting
        server.start()
    return server.create_bucket(f"{name}-{secrets.token_hex(6)}")


@pytest.fixture(scope="session")
def s3server() -> Iterator[S3Server]:
    yield from _serving()


@pytest.fixture
def bucket(s3server: S3Server) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    return _fresh_bucket(s3server, "ardua-test")


@pytest.fixture(scope="session")
def offsite_s3server() -> Iterator[S3Server]:
    """A second S3 server process: the off-site destination of multi-destination tests."""
    yield from _serving()


@pytest.fixture
def offsite_bucket(offsite_s3server: S3Server) -> str:
    """A fresh, empty bucket on the second S3 server."""
    return _fresh_bucket(offsite_s3server, "ardua-offsite")


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    with PgServer() as server:
        yield server


@pytest.fixture
def pg_volume(docker_client: docker.DockerClient) -> Iterator[str]:
    """Name of a fresh empty named volume; force-removed afterwards."""
    name = f"ardua-test-pgb-{secrets.token_hex(6)}"
    docker_client.volumes.create(name=name, driver="local", labels={"ardua-test": "1"})
    _OURS["volumes"].add(name)
    try:
        yield name
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.volumes.get(name).remove(force=True)


def _is_ours(container) -> bool:
    """Does this container use this session's S3 endpoint, volumes or temp paths?"""
    attrs = container.attrs
    cfg = attrs.get("Config") or {}
    text = " ".join([*(cfg.get("Env") or []), *(cfg.get("Cmd") or []), *(attrs.get("Args") or [])])
    if any(ep in text for ep in _OURS["endpoints"]):
        return True
    for m in attrs.get("Mounts") or []:
        if m.get("Name") in _OURS["volumes"]:
            return True
        src = m.get("Source") or ""
        if any(src == p or src.startswith(p.rstrip("/") + "/") for p in _OURS["paths"]):
            return True
    return False


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_job_containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At session end, no container labelled ardua-backup.job may remain on the test engine.

    The engine is shared, so only containers that belong to this session (they use its S3
    endpoint, its volumes or its temp dirs) count. Those are force-removed and the session fails
    loudly; other sessions' containers are left alone.
    """
    _OURS["paths"].add(str(tmp_path_factory.getbasetemp()))
    yield
    if not dockerd.ping():
        return
    client = docker.DockerClient(base_url=dockerd.DOCKER_HOST, timeout=60)
    try:
        # ignore_removed: another session may remove its container while this one lists.
        labelled = client.containers.list(all=True, filters={"label": JOB_LABEL},
                                          ignore_removed=True)
        leftovers = [c for c in labelled if _is_ours(c)]
        desc = [f"{c.name} ({c.status}, {JOB_LABEL}={c.labels.get(JOB_LABEL)})" for c in leftovers]
        for c in leftovers:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
    finally:
        client.close()
    if desc:
        pytest.fail(f"job containers left behind (removed now): {', '.join(desc)}", pytrace=False)


# -- config writer ---------------------------------------------------------------------------


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge overrides into base recursively; an override value of None deletes the key."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def write_credentials(
    path: Path, access_key: str, secret_key: str, profile: str = "default"
) -> Path:
    path.write_text(
        f"[{profile}]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
    )
    path.chmod(0o600)
    return path


WriteConfig = Callable[..., Path]


def destination_table(server: S3Server, bucket: str, credentials: Path) -> dict[str, Any]:
    """A [destinations.NAME] table for `bucket` on a test server."""
    return {"bucket": bucket, "region": server.region, "endpoint_url": server.endpoint_url,
            "credentials_file": str(credentials), "profile": "default"}


def two_destinations(tmp_path: Path, primary: S3Server, primary_bucket: str,
                     offsite: S3Server, offsite_bucket: str) -> dict[str, Any]:
    """Overrides for write_config: [s3] replaced by [destinations.primary] (the first server)
    and [destinations.offsite] (the second, with its own credentials file)."""
    own = write_credentials(Path(tmp_path) / "offsite-credentials", offsite.access_key,
                            offsite.secret_key)
    return {"s3": None, "destinations": {
        "primary": destination_table(primary, primary_bucket, Path(tmp_path) / "aws-credentials"),
        "offsite": destination_table(offsite, offsite_bucket, own)}}


@pytest.fixture
def write_config(rclone_image: str) -> WriteConfig:
    """Returns ``write_config(tmp_path, s3server, bucket, *, db_volume, receipts_dir,
    overrides=None, **more_overrides) -> Path`` (path of the config TOML).

    Writes ``tmp_path/aws-credentials`` (0600, [default]) and ``tmp_path/ardua-backup.toml``.
    ``overrides`` / keyword overrides are deep-merged into the TOML data (None deletes a key),
    e.g. ``jobs={"db-upload": {"timeout": "30s"}}`` or ``s3={"profile": None}``.
    """

    def _write(
        tmp_path: Path,
        s3server: S3Server,
        bucket: str,
        *,
        db_volume: str = "pg_backups",
        receipts_dir: Path | str = "/data/receipts",
        overrides: dict[str, Any] | None = None,
        **more: Any,
    ) -> Path:
        tmp_path = Path(tmp_path)
        creds = write_credentials(
            tmp_path / "aws-credentials", s3server.access_key, s3server.secret_key
        )
        data: dict[str, Any] = {
            "timezone": "America/Los_Angeles",
            "state_dir": str(tmp_path / "state"),
            "s3": {
                "bucket": bucket,
                "region": s3server.region,
                "endpoint_url": s3server.endpoint_url,
                "credentials_file": str(creds),
                "profile": "default",
            },
            "rclone": {"image": rclone_image, "network_mode": "host"},
            "jobs": {
                "db-upload": {
                    "schedule": "15 * * * *",
                    "source": f"volume:{db_volume}",
                    "prefix": "postgres",
                    "timeout": "45m",
                },
                "receipts-upload": {
                    "schedule": "45 * * * *",
                    "source": str(receipts_dir),
                    "prefix": "receipts",
                    "timeout": "2h",
                },
            },
        }
        data = deep_merge(data, overrides or {})
        data = deep_merge(data, more)
        path = tmp_path / "ardua-backup.toml"
        path.write_text(toml_dumps(data))
        return path

    return _write
