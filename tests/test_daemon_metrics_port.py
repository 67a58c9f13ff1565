"""Issue 27 item 2: a local user who takes metrics.port first cannot stop the daemon. The real
`ardua-backup run` with another process listening on its port: it starts, schedules and runs
its jobs, logs one line, and `status` (another process) shows a WARNING row; the port freed,
a reload (SIGHUP) serves /metrics."""

from __future__ import annotations

import json
import signal
import socket
import urllib.request

from tests.harness.cli import minutely_receipts_config, run_cli, service
from tests.harness.poll import poll


def _metrics_row(cfg) -> dict | None:  # type: ignore[no-untyped-def]
    result = run_cli("status", "--json", config=cfg, timeout=120)
    data = json.loads(result.stdout)
    rows = [c for c in data["checks"] if c["name"] == "metrics"]
    return rows[0] if rows else None


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def test_a_squatter_on_the_metrics_port_is_a_warning_and_a_reload_serves(
        s3server, bucket, write_config, tmp_path) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    cfg = minutely_receipts_config(write_config, tmp_path, s3server, bucket,
                                   metrics={"port": port}, health={"db_container": ""})
    try:
        with service(cfg, tmp_path) as (proc, notify):
            notify.expect("READY", "1", timeout=60)
            notify.status_until(lambda s: "receipts-upload: success" in s,  # a job still runs
                                timeout=120)
            assert proc.poll() is None
            assert _metrics_row(cfg) == {
                "name": "metrics", "state": "WARNING",
                "detail": f"port {port} is taken by another process"}
            log = (tmp_path / "daemon.log").read_text()
            assert "Traceback" not in log, log
            said = [line for line in log.splitlines() if "not serving /metrics" in line]
            assert len(said) == 1 and f"port {port} is taken by another process" in said[0]

            squatter.close()
            proc.send_signal(signal.SIGHUP)
            notify.expect("RELOADING", "1")
            notify.expect("READY", "1", timeout=60)
            exposition = poll(lambda: _scrape(port), "/metrics served after the reload", timeout=30)
            # ardua-backup's own exposition, from the daemon, not whatever held the port.
            assert 'ardua_backup_last_run_result{job="receipts-upload",result="success"} 1.0' \
                in exposition
            assert _metrics_row(cfg) == {"name": "metrics", "state": "OK",
                                         "detail": f"serving /metrics on 127.0.0.1:{port}"}

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        assert _metrics_row(cfg) is None  # no daemon: nothing said about its port
    finally:
        squatter.close()
