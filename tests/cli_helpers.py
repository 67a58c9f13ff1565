"""Run the real `ardua-backup` CLI in a subprocess, the way an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness import dockerd


def run_cli(
    *args: str, config: Path | None = None, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "supervisor"]
    if config is not None:
        command += ["--config", str(config)]
    full_env = {**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST, **(env or {})}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, env=full_env,
        cwd=Path(__file__).resolve().parent.parent,
    )
