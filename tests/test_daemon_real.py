"""`ardua-backup run` as systemd would start it, with the real pipeline, Docker and S3."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from tests.cli_helpers import run_cli, service
from tests.harness.files import settle

ROOT = Path(__file__).resolve().parent.parent


def test_service_catches_up_uploads_and_stops_cleanly(s3server, bucket, write_config,
                                                      tmp_path) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r1.pdf").write_bytes(b"receipt one")
    settle(receipts)
    # Every minute: at start-up the fire of the current minute was missed (within the grace
    # window), so catch-up starts the run at once; no waiting for the clock.
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts,
                       jobs={"receipts-upload": {"schedule": "* * * * *"},
                             "db-upload": {"schedule": "0 0 1 1 *", "catch_up": False}})
    with service(cfg, tmp_path, WATCHDOG_USEC="2000000") as (proc, notify):
        notify.expect("READY", "1")
        status = notify.expect("STATUS")["STATUS"]
        while "receipts-upload: success" not in status:
            status = notify.expect("STATUS", timeout=60)["STATUS"]
        assert "next " in status
        # The `status` verdict joins the line once the health check has read the real signals.
        while not re.match(r"(OK|WARNING|CRITICAL|UNKNOWN): .* \| .*receipts-upload: success",
                           status):
            status = notify.expect("STATUS", timeout=60)["STATUS"]
        assert s3server.get(bucket, "receipts/r1.pdf") == b"receipt one"
        assert s3server.get(bucket, "receipts/.last_success").endswith(b"Z OK\n")
        notify.expect("WATCHDOG", "1")

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
