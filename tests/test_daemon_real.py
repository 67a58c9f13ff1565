"""`ardua-backup run` as systemd would start it, with the real pipeline, Docker and S3."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.containers import engine as docker_runner
from tests.harness.cli import minutely_receipts_config, next_fire_shown, run_cli, service
from tests.harness.freeze import SyncFreezer
from tests.harness.poll import poll
from tests.harness.s3server import S3Server

ROOT = Path(__file__).resolve().parent.parent


def test_service_catches_up_uploads_and_stops_cleanly(s3server, bucket, write_config,
                                                      tmp_path) -> None:
    with socket.socket() as probe:  # a free loopback port for /metrics
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = minutely_receipts_config(write_config, tmp_path, s3server, bucket,
                                   metrics={"port": port})
    with service(cfg, tmp_path, WATCHDOG_USEC="2000000") as (proc, notify):
        notify.expect("READY", "1")
        status = notify.status_until(lambda s: "receipts-upload: success" in s, timeout=90)
        assert "next " in status
        # The `status` verdict joins the line once the health check has read the real signals.
        verdict = re.compile(r"(OK|WARNING|CRITICAL|UNKNOWN): .* \| .*receipts-upload: success")
        if not verdict.match(status):
            notify.status_until(verdict.match, timeout=90)
        assert s3server.get(bucket, "receipts/r1.pdf") == b"receipt one"
        assert s3server.get(bucket, "receipts/.last_success").endswith(b"Z OK\n")
        notify.expect("WATCHDOG", "1")

        # The daemon serves the run's values on /metrics (loopback only).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for family in text_string_to_metric_families(resp.read().decode())
                       for s in family.samples}
        job = (("job", "receipts-upload"),)
        assert samples[("ardua_backup_last_run_files", job)] == 1
        assert samples[("ardua_backup_last_run_bytes", job)] == len(b"receipt one")
        assert samples[("ardua_backup_last_run_result", (*job, ("result", "success")))] == 1

        history = run_cli("history", "receipts-upload", "--json", config=cfg)
        runs = json.loads(history.stdout)
        assert runs[0]["result"] == "success"
        assert runs[0]["files"] == 1
        assert runs[0]["job"] == "receipts-upload"

        proc.send_signal(signal.SIGTERM)
        notify.expect("STOPPING", "1")
        assert proc.wait(timeout=30) == 0
    text = (tmp_path / "daemon.log").read_text()
    # Without a journal the lines carry sd-daemon priority prefixes for journald to parse.
    assert any(line.startswith("<6>") for line in text.splitlines()), text
    assert s3server.secret_key not in text


def test_daemon_starts_with_s3_down_and_says_why(write_config, s3server, bucket,
                                                 tmp_path) -> None:
    cfg = write_config(tmp_path, s3server, bucket,
                       s3={"endpoint_url": "http://127.0.0.1:9"})
    with service(cfg, tmp_path) as (proc, notify):
        started = time.monotonic()
        msg = notify.expect("READY", "1", timeout=60)
        assert "preflight failed: S3 endpoint http://127.0.0.1:9 is unreachable" in msg["STATUS"]
        assert time.monotonic() - started < 30
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_mistyped_reload_keeps_the_schedule_and_a_fresh_start_exits_78(
        write_config, s3server, bucket, tmp_path) -> None:
    """Issue 8 item 6: `timeout = ["45m"]` then `systemctl reload` killed the daemon with an
    AttributeError, and every start after that crashed with exit 1 (restarted by systemd)."""
    jobs = {"db-upload": {"schedule": "0 0 1 1 *", "catch_up": False},
            "receipts-upload": {"schedule": "0 4 * * *", "catch_up": False}}
    cfg = write_config(tmp_path, s3server, bucket, jobs=jobs, health={"db_container": ""})
    good = cfg.read_text()
    assert 'schedule = "0 4 * * *"' in good and 'timeout = "2h"' in good
    # The edit also moves the schedule: if any of it were applied, STATUS would say 05:00.
    mistyped = good.replace('schedule = "0 4 * * *"', 'schedule = "0 5 * * *"').replace(
        'timeout = "2h"', 'timeout = ["45m"]')
    problem = (f"reload failed, previous schedule kept: {cfg}: jobs.receipts-upload.timeout: "
               "must be a duration like '45m', got an array ['45m']")
    with service(cfg, tmp_path, WATCHDOG_USEC="2000000") as (proc, notify):
        status = notify.expect("READY", "1", timeout=60)["STATUS"]
        assert next_fire_shown(status, "receipts-upload").endswith(" 04:00"), status

        cfg.write_text(mistyped)
        proc.send_signal(signal.SIGHUP)
        notify.expect("RELOADING", "1")
        status = notify.expect("READY", "1")["STATUS"]
        assert status.startswith(problem), status
        assert next_fire_shown(status, "receipts-upload").endswith(" 04:00"), status
        notify.expect("WATCHDOG", "1")  # the loop goes on
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        notify.expect("STOPPING", "1")
        assert proc.wait(timeout=30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log and problem in log, log

    # The next start with the same file: exit 78 (the unit's RestartPreventExitStatus), one line.
    again = tmp_path / "again"
    again.mkdir()
    with service(cfg, again) as (proc, notify):
        assert proc.wait(timeout=30) == 78
    log = (again / "daemon.log").read_text()
    assert "Traceback" not in log, log
    assert log.strip().splitlines() == [
        f"<3>{cfg}: jobs.receipts-upload.timeout: must be a duration like '45m', "
        "got an array ['45m']"], log


def test_sigkill_mid_sync_then_restart_never_runs_two_syncs(docker_client, write_config,
                                                            tmp_path) -> None:
    with S3Server() as server:
        bucket = server.create_bucket("ardua-test-sigkill")
        cfg = minutely_receipts_config(write_config, tmp_path, server, bucket)
        target = {"label": f"{docker_runner.LABEL_TARGET}=s3://{bucket}/receipts/"}
        freezer = SyncFreezer(docker_client, server)
        try:
            first = tmp_path / "first"
            first.mkdir()
            with service(cfg, first) as (proc, notify):
                notify.expect("READY", "1")
                poll(lambda: freezer.sync_attrs, "the first daemon's sync to hang", timeout=60)
                proc.kill()  # SIGKILL: no cleanup runs
                proc.wait()
            orphan = freezer.sync_attrs["Id"]
            server.resume()  # S3 answers again; the orphaned rclone itself stays frozen
            assert [c.id for c in docker_client.containers.list(filters=target)] == [orphan]

            second = tmp_path / "second"
            second.mkdir()
            with service(cfg, second) as (proc, notify):
                notify.expect("READY", "1")
                poll(lambda: "not starting another" in (second / "daemon.log").read_text(),
                     "the second daemon to see the running container", timeout=60)
                # Still exactly one sync of that prefix.
                assert [c.id for c in docker_client.containers.list(all=True, filters=target)
                        ] == [orphan]
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
            history = json.loads(run_cli("history", "receipts-upload", "--json",
                                         config=cfg).stdout)
            assert history[0]["result"] == "interrupted"
        finally:
            freezer.close()  # the orphan finishes its sync and exits; nobody removes it
        poll(lambda: docker_client.containers.get(orphan).status == "exited",
             "the orphan to finish", timeout=60)

        result = run_cli("run-once", "receipts-upload", config=cfg)

        assert result.returncode == 0, result.stdout + result.stderr
        assert "removed 1 finished container(s) left by a killed run" in result.stderr
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(orphan)
        assert server.get(bucket, "receipts/r1.pdf") == b"receipt one"




def test_sigterm_mid_sync_stops_the_container_after_the_grace(docker_client, write_config,
                                                              tmp_path) -> None:
    with S3Server() as server:
        bucket = server.create_bucket("ardua-test-sigterm")
        cfg = minutely_receipts_config(write_config, tmp_path, server, bucket, stop_grace="2s")
        freezer = SyncFreezer(docker_client, server)
        try:
            with service(cfg, tmp_path) as (proc, notify):
                notify.expect("READY", "1")
                poll(lambda: freezer.sync_attrs, "the sync to hang", timeout=60)
                server.resume()
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                notify.expect("STOPPING", "1")
                assert proc.wait(timeout=60) == 0
                elapsed = time.monotonic() - started
        finally:
            freezer.close()
        # The grace (2 s) passed, then the container was stopped (SIGKILL after 10 s for a
        # process that cannot take SIGTERM) and removed by its run.
        assert 2 <= elapsed < 30, elapsed
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(freezer.sync_attrs["Id"])
        log = (tmp_path / "daemon.log").read_text()
        assert "still running after the grace period: stop" in log
        history = json.loads(run_cli("history", "receipts-upload", "--json", config=cfg).stdout)
        assert history[0]["result"] == "failed"
        assert "receipts/.last_success" not in server.list_sizes(bucket)
