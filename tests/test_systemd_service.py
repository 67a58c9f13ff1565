"""The shipped unit under a real systemd as PID 1: hardened, Type=notify, watchdog, reload, journal.

A container boots Debian's systemd (host network, the test engine's socket as /run/docker.sock)
and runs systemd/ardua-backup.service as shipped; a drop-in only shortens WatchdogSec so pings
are seen in seconds. The service's own Python is Debian's python3 with this checkout and the
venv's site-packages mounted read-only. Its runs start rclone containers on the test engine,
against the session's SeaweedFS.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.harness import dockerd
from tests.harness.cli import minutely_receipts_config, next_fire_shown
from tests.harness.images import ensure_systemd_image, text_tar
from tests.harness.poll import poll

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "ardua-backup.service"
SERVICE_UID = 990
WATCHDOG_S = 4  # pings every 2 s; long enough not to flake on a loaded 2-core machine
WRAPPER = """#!/bin/sh
PYTHONPATH=/opt/ardua-src:/opt/ardua-site exec /usr/bin/python3 -m supervisor "$@"
"""


class Host:
    """The systemd container: shell commands in it, systemctl properties, journal entries."""

    def __init__(self, container) -> None:
        self.container = container

    def sh(self, script: str, check: bool = True) -> str:
        code, out = self.container.exec_run(["bash", "-c", script])
        text = out.decode(errors="replace")
        if check and code != 0:
            raise AssertionError(f"`{script}` exited {code}:\n{text}\n{self.journal_text()}")
        return text

    def prop(self, name: str) -> str:
        return self.sh(f"systemctl show -p {name} --value ardua-backup").strip()

    def wait_prop(self, name: str, accept, timeout: float = 90) -> str:
        def accepted() -> str | None:  # every value the tests accept is non-empty
            value = self.prop(name)
            return value if accept(value) else None

        return poll(accepted, lambda: f"{name} (now {self.prop(name)!r})\n{self.journal_text()}",
                    timeout, 0.2)

    def journal(self, *matches: str) -> list[dict[str, str]]:
        out = self.sh(f"journalctl -u ardua-backup -o json --no-pager {' '.join(matches)}")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def journal_text(self) -> str:
        _, out = self.container.exec_run("journalctl -u ardua-backup --no-pager -n 40")
        return out.decode(errors="replace")


@pytest.fixture
def systemd_host(docker_client: docker.DockerClient) -> Iterator[tuple[Host, Path]]:
    """A booted systemd container and a shared directory (same path inside and out, outside
    /tmp: PrivateTmp= hides the host's /tmp from the service)."""
    image = ensure_systemd_image(docker_client)
    shared = Path(tempfile.mkdtemp(prefix="sd-", dir="/var/lib/ardua-test"))
    shared.chmod(0o755)
    site = sysconfig.get_paths()["purelib"]
    container = docker_client.containers.run(
        image, detach=True, name=f"ardua-test-systemd-{secrets.token_hex(3)}",
        labels={"ardua-test": "1"}, network_mode="host", cgroupns="host",
        # What systemd as PID 1 needs; CAP_SYS_RESOURCE is not ours to give on this machine.
        cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        tmpfs={"/run": "", "/run/lock": ""}, environment={"container": "docker"},
        volumes={
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            dockerd.SOCKET: {"bind": "/run/docker.sock", "mode": "rw"},
            str(shared): {"bind": str(shared), "mode": "rw"},
            str(ROOT): {"bind": "/opt/ardua-src", "mode": "ro"},
            site: {"bind": "/opt/ardua-site", "mode": "ro"},
        },
    )  # fmt: skip
    host = Host(container)
    try:
        poll(lambda: host.sh("systemctl is-system-running", check=False).strip()
             in ("running", "degraded"),
             lambda: f"systemd to boot\n{host.sh('systemctl --failed', check=False)}", 60, 0.2)
        gid = os.stat(dockerd.SOCKET).st_gid
        host.sh(
            # The socket's group must be "docker" (the unit's SupplementaryGroups=docker).
            f"name=$(getent group {gid} | cut -d: -f1); "
            f'if [ -n "$name" ]; then [ "$name" = docker ] || groupmod -n docker "$name"; '
            f"else groupadd -g {gid} docker; fi; "
            f"useradd --system --uid {SERVICE_UID} --user-group --no-create-home "
            "--shell /usr/sbin/nologin ardua-backup; "
            "install -d -m 755 /etc/ardua-backup /etc/systemd/system/ardua-backup.service.d"
        )
        container.put_archive("/", text_tar([
            ("usr/local/bin/ardua-backup", WRAPPER, 0o755),
            ("etc/systemd/system/ardua-backup.service", UNIT.read_text(), 0o644),
            ("etc/systemd/system/ardua-backup.service.d/watchdog.conf",
             f"[Service]\nWatchdogSec={WATCHDOG_S}s\n", 0o644),
        ]))  # fmt: skip
        host.sh("systemctl daemon-reload")
        yield host, shared
    finally:
        container.remove(force=True)
        shutil.rmtree(shared, ignore_errors=True)


def _install_config(host: Host, config: Path) -> None:
    """The test's config as /etc/ardua-backup/config.toml, state where StateDirectory= puts it,
    the credentials file owned by the service user (0600 stays)."""
    text = config.read_text()
    old_state = str(config.parent / "state")
    assert old_state in text
    config.write_text(text.replace(old_state, "/var/lib/ardua-backup"))
    os.chown(config.parent / "aws-credentials", SERVICE_UID, SERVICE_UID)
    host.sh(f"install -m 644 {config} /etc/ardua-backup/config.toml")


def test_unit_runs_under_systemd(systemd_host, s3server, bucket, write_config) -> None:
    host, shared = systemd_host
    cfg = minutely_receipts_config(write_config, shared, s3server, bucket)
    _install_config(host, cfg)

    # Type=notify: `systemctl start` returns once READY=1 came, after the Docker and S3 checks.
    host.sh("systemctl start ardua-backup")
    assert host.prop("ActiveState") == "active"
    pid = host.prop("MainPID")
    proc_status = host.sh(f"cat /proc/{pid}/status")
    assert f"Uid:\t{SERVICE_UID}\t" in proc_status
    assert "CapEff:\t0000000000000000" in proc_status and "NoNewPrivs:\t1" in proc_status

    # Catch-up runs the minutely job at once; STATUS (systemctl status) shows its result.
    status = host.wait_prop("StatusText", lambda v: "receipts-upload: success" in v)
    assert "next " in status
    assert s3server.get(bucket, "receipts/r1.pdf") == b"receipt one"
    assert s3server.get(bucket, "receipts/.last_success").endswith(b"Z OK\n")

    # The run's final line in the journal, selected by its structured fields.
    final = [e for e in host.journal("JOB=receipts-upload", "RESULT=success") if "FILES" in e]
    assert final, host.journal_text()
    assert final[-1]["FILES"] == "1" and final[-1]["EXIT_CODE"] == "0"
    assert final[-1]["PRIORITY"] == "6" and final[-1]["RUN_ID"]
    assert s3server.secret_key not in host.journal_text()

    # The watchdog is fed: its timestamp moves on, and the service outlives several periods.
    first = host.wait_prop("WatchdogTimestampMonotonic", lambda v: v not in ("", "0"))
    host.wait_prop("WatchdogTimestampMonotonic", lambda v: v != first, timeout=WATCHDOG_S * 3)
    assert host.prop("NRestarts") == "0" and host.prop("MainPID") == pid

    # systemctl reload (ExecReload=/bin/kill -HUP): an invalid file keeps the running schedule
    # and says so in STATUS; a valid one takes over at once.
    assert next_fire_shown(status, "db-upload") == "01-01 00:00", status
    good = cfg.read_text()
    cfg.write_text(good + "timezone = 5\n")
    host.sh(f"install -m 644 {cfg} /etc/ardua-backup/config.toml && systemctl reload ardua-backup")
    # (the signal is handled asynchronously: wait for the STATUS it leads to)
    status = host.wait_prop("StatusText", lambda v: "reload failed" in v, timeout=20)
    assert "previous schedule kept" in status, status
    assert next_fire_shown(status, "db-upload") == "01-01 00:00", status
    assert host.prop("ActiveState") == "active" and host.prop("MainPID") == pid
    cfg.write_text(good.replace('schedule = "0 0 1 1 *"', 'schedule = "0 3 * * *"'))
    host.sh(f"install -m 644 {cfg} /etc/ardua-backup/config.toml && systemctl reload ardua-backup")
    host.wait_prop("StatusText", lambda v: next_fire_shown(v, "db-upload").endswith(" 03:00")
                   and "reload failed" not in v, timeout=20)

    # SIGTERM via systemctl stop: a clean exit, not a failure.
    host.sh("systemctl stop ardua-backup")
    assert host.prop("ActiveState") == "inactive"
    assert host.prop("Result") == "success" and host.prop("ExecMainStatus") == "0"
    assert [e for e in host.journal() if e.get("MESSAGE") == "stopped"]

    # A broken config at start: exit 78, and RestartPreventExitStatus=78 keeps systemd from
    # restarting what a restart cannot fix (the unit goes to failed, not auto-restart).
    cfg.write_text(good + "timezone = 5\n")
    host.sh(f"install -m 644 {cfg} /etc/ardua-backup/config.toml")
    assert "failed" in host.sh("systemctl start ardua-backup", check=False)
    assert host.prop("ExecMainStatus") == "78" and host.prop("SubState") == "failed"
    assert host.prop("NRestarts") == "0"
