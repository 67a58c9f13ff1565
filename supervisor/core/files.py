"""The one rule for files that hold secrets (credentials, notification URLs, keys)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_file_problem(path: Path, setting: str) -> str:
    """Why a file holding secrets may not be used, or "": it must exist, be a regular file, be
    mode 0600 or stricter (like ssh keys) and be readable by this user."""
    where = f"{setting} {path}"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{where} does not exist"
    except OSError as exc:
        return f"{where} cannot be read: {exc.strerror}"
    if not stat.S_ISREG(mode):
        return f"{where} is not a regular file"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"{where} is readable by other users (mode {stat.S_IMODE(mode):04o}); "
                f"run: chmod 600 {path}")
    if not os.access(path, os.R_OK):
        return f"{where} is not readable by this user"
    return ""
