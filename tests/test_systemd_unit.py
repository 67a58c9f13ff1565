"""The shipped unit passes `systemd-analyze verify` silently and keeps its exposure score."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "ardua-backup.service"
EXEC_START = "ExecStart=/usr/local/bin/ardua-backup run --config /etc/ardua-backup/config.toml"
# Measured with systemd 252; raise only with a reason in docs/operations.md#systemd-unit.
MAX_EXPOSURE = 1.3

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def installed_copy(tmp_path: Path) -> Path:
    """The unit, byte for byte, except that ExecStart names an executable present here.

    verify checks that ExecStart exists; on a test machine the product is not installed under
    /usr/local/bin, so only that path is swapped for this interpreter.
    """
    text = UNIT.read_text()
    assert text.count(EXEC_START) == 1
    target = tmp_path / UNIT.name  # verify derives the unit name from the file name
    target.write_text(text.replace("/usr/local/bin/ardua-backup", sys.executable))
    return target


def test_verify_prints_nothing(tmp_path: Path) -> None:
    # verify exits 0 on unknown keys and typos: stderr is the real verdict.
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(installed_copy(tmp_path))], capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_verify_catches_a_typo(tmp_path: Path) -> None:
    unit = installed_copy(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert "ProtectHom" in proc.stderr


def test_security_exposure(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(installed_copy(tmp_path))],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for ardua-backup.service: ([\d.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_notify_reload_watchdog_settings() -> None:
    lines = set(UNIT.read_text().splitlines())
    for required in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=ardua-backup",
        "SupplementaryGroups=docker",
        "StateDirectory=ardua-backup",
    ):
        assert required in lines
    assert any(line.startswith("WatchdogSec=") for line in lines)
