"""postgres-backup-local's webhooks against the real daemon (issue 23): its own hook script
(tests/harness/pbl/00-webhook, run as backup.sh runs it) POSTs to `ardua-backup run`, which
uploads to a real S3 server through real rclone containers and alerts a real HTTP receiver."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.config.load import ConfigError, load
from supervisor.daemon import webhook
from supervisor.postgres import hooks
from supervisor.storage import markers
from tests.harness.cli import run_cli, service
from tests.harness.pbl import run_hook
from tests.harness.pgtree import fill_volume, make_backups_tree
from tests.harness.poll import poll
from tests.harness.receiver import receiving

TOKEN = "a1b2c3d4" * 8  # `openssl rand -hex 32`
NEVER = {"schedule": "0 0 1 1 *", "catch_up": False}  # runs only when a webhook asks


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _token_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "webhook-token"
    path.write_text(TOKEN + "\n")
    path.chmod(mode)
    return path


def _hook_config(write_config, tmp_path: Path, s3server, bucket: str, volume: str,
                 port: int, **more) -> Path:
    return write_config(
        tmp_path, s3server, bucket, db_volume=volume,
        jobs={"db-upload": NEVER, "receipts-upload": None},
        health={"db_container": ""},
        webhook={"listen": f"127.0.0.1:{port}", "token_file": str(_token_file(tmp_path))},
        **more)


def _dump(docker_client, volume: str, body: bytes) -> str:
    """A dump written now, as backup.sh writes it (last/ + period links): inside the quiet
    period. Returns its key under the prefix."""
    now = datetime.now(UTC)
    fill_volume(docker_client, volume, lambda root: make_backups_tree(root, [(now, body)]))
    return f"last/ardua-{now:%Y%m%d-%H%M%S}.dump"


def test_post_backup_uploads_at_once_pre_then_post_and_error_alerts(
        tmp_path, s3server, bucket, pg_volume, docker_client, write_config) -> None:
    s3server.client().put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    # A good drill a day ago (as storage.markers.format_marker writes it): the verdict can be OK.
    drilled = markers.format_marker(datetime.now(UTC) - timedelta(days=1), True, "last/x.dump", 40)
    s3server.client().put_object(Bucket=bucket, Key=markers.drill_marker_key("postgres"),
                                 Body=drilled.encode())
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hooks/pbl/{TOKEN}"
    with receiving() as receiver:
        urls = tmp_path / "alert-urls"
        urls.write_text(f"json://127.0.0.1:{receiver.server_port}/notify\n")
        urls.chmod(0o600)
        cfg = _hook_config(write_config, tmp_path, s3server, bucket, pg_volume, port,
                           alerts={"urls_file": str(urls), "check_every": "1h"})
        with service(cfg, tmp_path) as (proc, notify):
            notify.expect("READY", "1", timeout=60)
            poll(lambda: "webhook: listening on" in (tmp_path / "daemon.log").read_text(),
                 "the listener", timeout=10)

            # post-backup right after the dump ends, well inside guard.quiet_period (2 min).
            first = _dump(docker_client, pg_volume, os.urandom(5000))
            hooked = time.monotonic()
            answer = run_hook("post-backup", url)
            assert answer.returncode == 0 and answer.stdout.endswith("202"), answer
            poll(lambda: "postgres/.last_success" in s3server.list_sizes(bucket),
                 "the sentinel", timeout=60)
            lag = time.monotonic() - hooked
            assert f"postgres/{first}" in s3server.list_sizes(bucket)
            runs = json.loads(run_cli("history", "db-upload", "--json", config=cfg).stdout)
            assert runs[0]["result"] == "success", runs
            assert runs[0]["message"].startswith("webhook: sentinel "), runs

            # pre-backup holds the job's scheduled runs; post-backup ends the hold and runs it.
            assert run_hook("pre-backup", url).stdout.endswith("202")
            state = hooks.read_state(tmp_path / "state")
            assert state.event == hooks.PRE and state.pre_at is not None
            second = _dump(docker_client, pg_volume, os.urandom(5000))
            assert run_hook("post-backup", url).stdout.endswith("202")
            poll(lambda: f"postgres/{second}" in s3server.list_sizes(bucket),
                 "the second dump in S3", timeout=60)
            assert hooks.read_state(tmp_path / "state").pre_at is None
            poll(lambda: any(p[1]["type"] == "success" for p in receiver.posts),
                 "the verdict to be OK", timeout=60)

            # error: the verdict turns CRITICAL at once and a person is told within seconds.
            told = len(receiver.posts)
            failed = time.monotonic()
            assert run_hook("error", url).stdout.endswith("202")
            note = poll(lambda: next((p for p in receiver.posts[told:]
                                      if "reported an error" in p[1]["message"]), None),
                        "the error notification", timeout=30)
            alerted = time.monotonic() - failed
            assert note[1]["type"] == "failure"
            status = json.loads(run_cli("status", "--json", config=cfg).stdout)
            assert status["state"] == "CRITICAL"
            assert status["diagnoses"][0].startswith("the dump container reported an error at ")
            assert any(c["name"] == "dump to S3" for c in status["checks"]), status["checks"]

            proc.terminate()
            assert proc.wait(timeout=30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert TOKEN not in log
    assert "REASON=webhook" in log
    print(f"\npost-backup -> sentinel {lag:.1f} s; error -> notification {alerted:.1f} s")
    assert lag < 30 and alerted < 15


def _request(port: int, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body or None, headers=headers or {})
    answer = conn.getresponse()
    answer.read()
    conn.close()
    return answer


def test_hostile_requests_are_refused_and_never_log_the_token(
        tmp_path, s3server, bucket, pg_volume, write_config) -> None:
    port = _free_port()
    cfg = _hook_config(write_config, tmp_path, s3server, bucket, pg_volume, port)
    good = f"/hooks/pbl/{TOKEN}"
    with service(cfg, tmp_path) as (proc, notify):
        notify.expect("READY", "1", timeout=60)
        poll(lambda: "webhook: listening on" in (tmp_path / "daemon.log").read_text(),
             "the listener", timeout=10)
        # pbl's own hook with a wrong token: 404 (curl does not retry a 404).
        wrong = run_hook("post-backup", f"http://127.0.0.1:{port}/hooks/pbl/{'f' * 64}")
        assert wrong.stdout.endswith("404"), wrong
        assert _request(port, "POST", good, b"{not json").status == 400
        assert _request(port, "POST", good, b'{"status": "done"}').status == 400
        assert _request(port, "POST", good, b"x" * 5120).status == 413
        assert _request(port, "GET", good).status == 405
        sent = 5
        # A client that stalls mid-request is cut at the deadline; others are answered meanwhile.
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            stalled.sendall(f"POST {good} HTTP/1.1\r\nContent-Length: 40\r\n\r\n{{".encode())
            started = time.monotonic()
            assert _request(port, "GET", good).status == 405
            sent += 1
            stalled.settimeout(30)
            assert stalled.recv(1024) == b""  # closed by the daemon, no answer
            cut_after = time.monotonic() - started
        assert cut_after < webhook.CONNECTION_DEADLINE_S + 2, cut_after
        sent += 1  # the stalled request was read as far as its headers: it counted
        for _ in range(webhook.RATE_LIMIT - sent):
            assert _request(port, "GET", good).status == 405
        refused = _request(port, "GET", good)
        assert refused.status == 429 and int(refused.getheader("Retry-After")) > 0
        assert not (tmp_path / "state" / hooks.STATE_FILE).exists()  # nothing was accepted
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "a POST from 127.0.0.1 to a path without the right token: 404" in log
    assert TOKEN not in log and "f" * 64 not in log and "Traceback" not in log


def test_token_file_readable_by_others_is_a_config_error(tmp_path, s3server, bucket,
                                                         write_config) -> None:
    token = _token_file(tmp_path, 0o640)
    cfg = write_config(tmp_path, s3server, bucket,
                       webhook={"listen": "127.0.0.1:8187", "token_file": str(token)})
    with pytest.raises(ConfigError) as error:
        load(cfg)
    assert str(error.value) == (f"{cfg}: webhook.token_file {token} is readable by other users "
                                f"(mode 0640); run: chmod 600 {token}")


def test_an_address_taken_by_another_process_is_a_status_problem_not_a_stop(
        tmp_path, s3server, bucket, pg_volume, write_config) -> None:
    with socket.socket() as squatter:  # any local user can take a free port first
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        cfg = _hook_config(write_config, tmp_path, s3server, bucket, pg_volume, port)
        with service(cfg, tmp_path) as (proc, notify):
            status = notify.expect("READY", "1", timeout=60)["STATUS"]
            assert status.startswith(f"webhook: cannot listen on 127.0.0.1:{port} | "), status
            proc.terminate()
            assert proc.wait(timeout=30) == 0
    assert "webhook: cannot listen on 127.0.0.1:" in (tmp_path / "daemon.log").read_text()
