"""A real `run-once` logging into a real systemd-journald: one run's lines selected by JOB and
RUN_ID, its final line carrying the result fields, rclone's error lines forwarded, no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import dockerd
from tests.harness.files import settle
from tests.harness.journald import JOURNALD

ROOT = Path(__file__).resolve().parents[1]

# In a private mount namespace with tmpfs over journald's directories: start journald, run the
# CLI with its stderr registered as a journal stream (as systemd does for a service), read back.
DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    from pathlib import Path
    journald_bin, config, job, log_path = sys.argv[1:5]
    for d in ("/run/systemd/journal", "/run/log/journal", "/var/log/journal"):
        Path(d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", d], check=True)
    journald = subprocess.Popen([journald_bin], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path("/run/systemd/journal/socket").exists():
            assert time.monotonic() < deadline, "journald did not start"
            time.sleep(0.02)
        with open(log_path, "w") as err:
            st = os.fstat(err.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            done = subprocess.run([sys.executable, "-m", "supervisor", "--config", config,
                                   "run-once", job], stdout=subprocess.PIPE, stderr=err,
                                  env=env, text=True)
        run_id = done.stdout.split()[2]
        deadline = time.monotonic() + 10
        while True:  # journald stores asynchronously: poll, with a deadline
            out = subprocess.run(["journalctl", "-o", "json", "--no-pager", f"JOB={job}",
                                  f"RUN_ID={run_id}"], capture_output=True, text=True).stdout
            entries = [json.loads(line) for line in out.splitlines()]
            if any("RESULT" in e for e in entries) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        print(json.dumps({"exit": done.returncode, "run_id": run_id, "entries": entries,
                          "stdout": done.stdout}))
    finally:
        journald.terminate()
        journald.wait()
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or not JOURNALD.exists(), reason="needs root and journald")
def test_run_once_lines_in_real_journald(s3server, bucket, write_config, tmp_path) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "a.pdf").write_bytes(b"a")
    settle(receipts)
    (receipts / "young.pdf").write_bytes(b"being written")  # left for the next run
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, str(driver), str(JOURNALD),
         str(cfg), "receipts-upload", str(tmp_path / "stderr.log")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": dockerd.DOCKER_HOST},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["exit"] == 0, out["stdout"]
    entries = out["entries"]
    assert len(entries) >= 3  # started, source listed / guard, final
    assert {e["RUN_ID"] for e in entries} == {out["run_id"]}
    final = [e for e in entries if "RESULT" in e]
    assert len(final) == 1
    fields = {k: final[0][k] for k in ("RESULT", "EXIT_CODE", "FILES", "BYTES", "DELETES",
                                       "ERRORS", "SKIPPED_YOUNG")}
    assert fields == {"RESULT": "success", "EXIT_CODE": "0", "FILES": "1", "BYTES": "1",
                      "DELETES": "0", "ERRORS": "0", "SKIPPED_YOUNG": "1"}
    skipped = [e for e in entries if e["MESSAGE"].startswith("receipts-upload: leaving 1 file")]
    assert len(skipped) == 1 and skipped[0]["MESSAGE"].endswith(": young.pdf")
    assert float(final[0]["DURATION_S"]) > 0
    assert final[0]["PRIORITY"] == "6"
    # Under journald nothing goes to stderr, and no secret reaches the journal.
    assert (tmp_path / "stderr.log").read_text() == ""
    assert s3server.secret_key not in proc.stdout
