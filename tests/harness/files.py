"""Source files as a finished writer leaves them."""

from __future__ import annotations

import os
import time
from pathlib import Path

SETTLED_AGE_S = 3600  # far past any guard.quiet_period the tests use


def settle(root: Path) -> Path:
    """Dates every file under root an hour back, so the in-progress guard (files modified within
    guard.quiet_period may still be written) lets them through. Returns root."""
    when = time.time() - SETTLED_AGE_S
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, (when, when))
    return root
