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

from tests.conftest import write_credentials
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


NEEDS_JOURNALD = pytest.mark.skipif(os.geteuid() != 0 or not JOURNALD.exists(),
                                    reason="needs root and journald")


def _run_in_journald(cfg: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`run-once receipts-upload` under a private journald: the process and DRIVER's JSON."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, str(driver), str(JOURNALD),
         str(cfg), "receipts-upload", str(tmp_path / "stderr.log")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": dockerd.DOCKER_HOST},
    )
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(proc.stdout)


@NEEDS_JOURNALD
def test_run_once_lines_in_real_journald(s3server, bucket, write_config, tmp_path) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "a.pdf").write_bytes(b"a")
    settle(receipts)
    (receipts / "young.pdf").write_bytes(b"being written")  # left for the next run
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts)
    proc, out = _run_in_journald(cfg, tmp_path)
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


@NEEDS_JOURNALD
def test_rclone_error_lines_reach_the_journal(s3server, bucket, write_config, tmp_path) -> None:
    """A key that may read and list but not write passes the preflight (a listing); the real
    rclone's PUTs are refused (SeaweedFS: AccessDenied), and its error lines reach the journal
    as the run's WARNING lines (PRIORITY 4), then the failed final line."""
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "a.pdf").write_bytes(b"a")
    settle(receipts)
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts)
    reader_key, reader_secret = s3server.keys["reader"]
    write_credentials(tmp_path / "aws-credentials", reader_key, reader_secret)
    proc, out = _run_in_journald(cfg, tmp_path)
    assert out["exit"] == 1, out["stdout"]
    entries = out["entries"]
    rclone_lines = [e for e in entries
                    if e["MESSAGE"].startswith("receipts-upload: rclone: ")]
    assert rclone_lines, [e["MESSAGE"] for e in entries]
    assert {e["PRIORITY"] for e in rclone_lines} == {"4"}
    assert {e["RUN_ID"] for e in rclone_lines} == {out["run_id"]}
    assert any("a.pdf" in e["MESSAGE"] and "AccessDenied" in e["MESSAGE"]
               for e in rclone_lines), [e["MESSAGE"] for e in rclone_lines]
    (final,) = [e for e in entries if "RESULT" in e]
    assert (final["RESULT"], final["EXIT_CODE"], final["PRIORITY"]) == ("failed", "1", "3")
    assert s3server.list_keys(bucket) == {}  # nothing written, no sentinel
    assert reader_secret not in proc.stdout + (tmp_path / "stderr.log").read_text()
