"""A broken config is one line on stderr and exit 78 (EX_CONFIG) from every command (`status`:
3, UNKNOWN), never a traceback: fixed cases through the real CLI in subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TEXT = (ROOT / "config.example.toml").read_text()
EXIT_CONFIG, EXIT_UNKNOWN = 78, 3

# Issue 8 item 6: this edit, then `systemctl reload`, killed the daemon with an AttributeError.
TIMEOUT_LIST = EXAMPLE_TEXT.replace('timeout = "45m"', 'timeout = ["45m"]', 1)


def _one_line_naming(stderr: str, path: Path, key: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert str(path) in lines[0] and key in lines[0], stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["run"], EXIT_CONFIG),
        (["run-once", "db-upload"], EXIT_CONFIG),
        (["status"], EXIT_UNKNOWN),
        (["status", "--json"], EXIT_UNKNOWN),
        (["next"], EXIT_CONFIG),
        (["next", "db-upload", "-n", "1"], EXIT_CONFIG),
        (["check-config"], EXIT_CONFIG),
        (["history", "db-upload"], EXIT_CONFIG),
        (["restore", "list"], EXIT_CONFIG),
        (["restore", "db", "last/DB.dump", "--target", "postgresql://127.0.0.1:9/x"], EXIT_CONFIG),
        (["restore", "receipts", "/nonexistent/restore-here"], EXIT_CONFIG),
        (["drill"], EXIT_CONFIG),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_every_command_exits_78_on_a_broken_config(tmp_path: Path, args: list[str],
                                                   code: int) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(TIMEOUT_LIST)
    result = run_cli(*args, config=cfg, timeout=60)
    assert result.returncode == code, result.stdout + result.stderr
    _one_line_naming(result.stderr, cfg, "jobs.db-upload.timeout: must be a duration")


BAD_FILES = {
    "timeout-list": (TIMEOUT_LIST, "jobs.db-upload.timeout"),
    "jobs-int": ("jobs = 3\n[s3]\nbucket = 'ardua-backups'\n", "[jobs] must be a table"),
    "health-string": ('health = "x"\n' + EXAMPLE_TEXT.replace("[health]", "[old-health]"),
                      "[health] must be a table"),
    "check-not-table": (EXAMPLE_TEXT.split("[[drill.checks]]")[0]
                        .replace("[drill]\n", "[drill]\nchecks = [7]\n"), "[drill.checks[0]]"),
    "datetime-path": (EXAMPLE_TEXT.replace('state_dir = "/var/lib/ardua-backup"',
                                           "state_dir = 2026-01-02T03:04:05Z"), "state_dir"),
    "nan-min": (EXAMPLE_TEXT.replace("min = 1 ", "min = nan "), "drill.checks[0].min"),
    "huge-port": (EXAMPLE_TEXT.replace("port = 0 ", "port = 1" + "0" * 30 + " "), "metrics.port"),
    "deep": ("x = " + "[" * 800 + "]" * 800 + "\n", "nested too deeply"),
}


def test_check_config_subprocess_on_fixed_bad_files(tmp_path: Path) -> None:
    procs = {}
    for name, (text, _) in BAD_FILES.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        # All at once: each is a fresh interpreter, as an operator's shell starts it.
        procs[name] = (path, subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--config", str(path), "check-config"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    for name, (path, proc) in procs.items():
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_CONFIG, (name, stderr)
        _one_line_naming(stderr, path, BAD_FILES[name][1])
        assert stderr.startswith(f"invalid: {path}: "), stderr
