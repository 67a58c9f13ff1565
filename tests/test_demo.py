"""The README's first command, `scripts/demo`, end to end: set-up, both uploads, what landed in S3,
a restore drill from S3 with its RTO, the health table (green), the history, and the tear-down."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_main_job_locally(docker_client) -> None:
    res = subprocess.run(
        ["bash", "scripts/demo"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    listing = res.stdout.split("now holds:")[1].split("\nsentinel:")[0]
    assert re.search(r"^ +\d+  postgres/last/ardua-\d{8}-\d{6}\.dump$", listing, re.M)
    assert re.search(r"^ +4096  receipts/2025/12/reçu café\.jpg$", listing, re.M)
    assert "latest" not in listing
    assert re.search(r"^sentinel: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ OK$", res.stdout, re.M)
    status = res.stdout.split("$ ardua-backup status")[1].split("$ ardua-backup history")[0]
    assert "OK: dumps fresh, in S3, uploads verified" in status, status
    assert re.search(r"^dump ardua \(last/\) +OK ", status, re.M), status
    assert re.search(r"^restore drill +OK +OK \d+m \d\ds ago, ", status, re.M), status
    drill = res.stdout.split("$ ardua-backup drill")[1].split("$ ardua-backup status")[0]
    assert re.search(r"^restore-drill  run \S+  OK$", drill, re.M), drill
    assert re.search(r"\(RTO \d+\.\d s\)", drill) and "check ok          orders exist" in drill
    history = res.stdout.split("$ ardua-backup history")[1]
    runs = [line for line in history.strip().splitlines() if not line.startswith(" ")]
    assert [line.split()[1:3] for line in runs] == [
        ["verify", "success"], ["restore-drill", "success"], ["receipts-upload", "success"],
        ["db-upload", "success"]]
    assert re.search(r"^verified +OK +\d+/\d+ objects", status, re.M), status
    # Each upload's destination under it (the demo has one, [destinations.primary]).
    assert re.search(r"^    primary success exit=0 .* sentinel=written", history, re.M), history
    assert not docker_client.volumes.list(filters={"name": "ardua-demo-"})  # torn down
