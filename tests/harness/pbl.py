"""postgres-backup-local's webhook hook (tests/harness/pbl/00-webhook, its own file) run as its
backup.sh runs it: `run-parts -a ACTION /hooks`, i.e. `00-webhook ACTION`, with the image's
`WEBHOOK_*` defaults (`**None**`, debian.Dockerfile) and the URLs given."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HOOK = Path(__file__).resolve().parent / "pbl" / "00-webhook"
UNSET = "**None**"


def run_hook(action: str, url: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`00-webhook ACTION` with WEBHOOK_URL (error, post-backup) and WEBHOOK_PRE_BACKUP_URL
    (pre-backup) set to `url`, as compose.yaml sets them; curl's output in stdout/stderr."""
    env = {"PATH": os.environ["PATH"], "WEBHOOK_URL": url, "WEBHOOK_ERROR_URL": UNSET,
           "WEBHOOK_PRE_BACKUP_URL": url, "WEBHOOK_POST_BACKUP_URL": UNSET,
           "WEBHOOK_EXTRA_ARGS": "--silent --show-error --write-out %{http_code}"}
    return subprocess.run(["sh", str(HOOK), action], env=env, capture_output=True, text=True,
                          timeout=timeout)
