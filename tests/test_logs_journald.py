"""Structured log lines reach a real systemd-journald and are selectable by JOB / RUN_ID."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from supervisor.record import journal as logs
from tests.harness.journald import JOURNALD

# Runs as root inside `unshare -m`: tmpfs over every directory journald writes to, so the host's
# journal (if any) is neither read nor written, then our logger sends and journalctl reads back.
DRIVER = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from pathlib import Path
    for d in ("/run/systemd/journal", "/run/log/journal", "/var/log/journal"):
        Path(d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", d], check=True)
    journald = subprocess.Popen([sys.argv[1]], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path("/run/systemd/journal/socket").exists():
            assert time.monotonic() < deadline, "journald did not start"
            time.sleep(0.02)
        from loguru import logger
        from supervisor.record import journal as logs
        logs.setup(journal=True)
        run = logger.bind(job="db-upload", run_id="r-42")
        run.info("sync started")
        logger.bind(job="receipts-upload", run_id="r-43").warning("other job")
        run.bind(result="success", exit_code=0, duration_s=1.5, bytes=1024, files=3, deletes=0,
                 errors=0, sentinel_written=True, **{"bad key!": "x"}).success("sync done — ok")
        run.error("Zürich\\nsecond line")
        while True:  # journald stores asynchronously: poll, with a deadline
            out = subprocess.run(["journalctl", "-o", "json", "--no-pager", "JOB=db-upload",
                                  "RUN_ID=r-42"], capture_output=True, text=True).stdout
            if len(out.splitlines()) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        print(json.dumps([json.loads(line) for line in out.splitlines()]))
    finally:
        journald.terminate()
        journald.wait()
    """
)


@pytest.mark.skipif(
    os.geteuid() != 0 or not JOURNALD.exists() or not shutil.which("unshare"),
    reason="needs root, unshare and systemd-journald",
)
def test_fields_queryable_in_real_journald(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, str(driver), str(JOURNALD)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)
    messages = [e["MESSAGE"] for e in entries]
    assert messages == ["sync started", "sync done — ok", "Zürich\nsecond line"]
    started, done, error = entries
    assert (started["PRIORITY"], done["PRIORITY"], error["PRIORITY"]) == ("6", "5", "3")
    assert done["SYSLOG_IDENTIFIER"] == "ardua-backup"
    assert {k: done[k] for k in ("RESULT", "EXIT_CODE", "DURATION_S", "BYTES", "FILES")} == {
        "RESULT": "success",
        "EXIT_CODE": "0",
        "DURATION_S": "1.5",
        "BYTES": "1024",
        "FILES": "3",
    }
    assert (done["DELETES"], done["ERRORS"], done["SENTINEL_WRITTEN"]) == ("0", "0", "true")
    assert done["BAD_KEY_"] == "x"
    assert "RESULT" not in started


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("run_id", "RUN_ID"),
        ("duration_s", "DURATION_S"),
        ("bad-key", "BAD_KEY"),
        ("_private", "PRIVATE"),
        ("2fa", "EXTRA_2FA"),
        ("message", "EXTRA_MESSAGE"),
    ],
)
def test_field_names(key: str, name: str) -> None:
    assert logs.field_name(key) == name


@pytest.mark.parametrize(("level", "prio"), [(5, 7), (10, 7), (20, 6), (25, 5), (30, 4), (40, 3)])
def test_priorities(level: int, prio: int) -> None:
    assert logs.priority(level) == prio


def test_stderr_fallback_prefixes_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    record = {
        "message": "boom\nline two",
        "exception": None,
        "level": SimpleNamespace(no=40),
        "extra": {"job": "db-upload", "run_id": "r1", "exit_code": None},
    }
    logs.stderr_sink(SimpleNamespace(record=record))
    assert stream.getvalue() == "<3>boom\n<3>line two [JOB=db-upload RUN_ID=r1]\n"
