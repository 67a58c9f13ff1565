"""The one file-mode rule, like sshd's StrictModes, for the config file and every file it names.

A file the product reads its orders from (the config: which bucket, which alert URLs) is used
only when nobody but root and the user running the process (or the service user, below) can
change it: owned by one of them, not writable by group or others. A secret file (S3
credentials, alert URLs) must also not be readable by group or others. Which files a config
names, and which are secret, is listed once in config.strict.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from collections.abc import Collection
from pathlib import Path

# The account systemd/ardua-backup.service runs the daemon as (User=). It is in the docker group,
# so as trusted as root: its files (the 0600 credentials) stay usable by root's restores.
SERVICE_USER = "ardua-backup"


def trusted_owners() -> frozenset[int]:
    """root, the user running this process, and the service user where that account exists."""
    uids = {0, os.geteuid()}
    with contextlib.suppress(KeyError):  # not installed: a test host, a development machine
        uids.add(pwd.getpwnam(SERVICE_USER).pw_uid)
    return frozenset(uids)


def user_name(uid: int) -> str:
    """The account's name, or the number where it has none (what chown accepts either way)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def mode_problem(path: Path, st: os.stat_result, *, secret: bool,
                 trusted: Collection[int], me: int) -> str:
    """Why a file with this stat may not be used, or "" (pure: the table of the rule).

    `trusted`: the owners accepted; `me`: the uid the `chown` to run names."""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return f"{path} is a directory, not a file"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file"
    shown = f"mode {stat.S_IMODE(mode):04o}"
    if st.st_uid not in trusted:
        allowed = "root" if me == 0 else f"root or {user_name(me)}"
        return (f"{path} is owned by {user_name(st.st_uid)}, not {allowed}: another user could "
                f"change it; run: chown {user_name(me)} {path}")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        fix = "600" if secret else "go-w"
        return (f"{path} is writable by group or others ({shown}); run: chmod {fix} {path}")
    if secret and mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is readable by other users ({shown}); run: chmod 600 {path}"
    return ""


def file_problem(path: Path, setting: str, *, secret: bool) -> str:
    """Why the file `setting` names may not be used, or "": it must exist, be a regular file
    that passes mode_problem, and be readable by this user."""
    where = f"{setting} {path}"
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{where} does not exist"
    except NotADirectoryError:
        return f"{where} cannot be read: a part of its path is not a directory"
    except OSError as exc:
        return f"{where} cannot be read: {exc.strerror}"
    if problem := mode_problem(path, st, secret=secret, trusted=trusted_owners(),
                               me=os.geteuid()):
        return f"{setting} {problem}"
    if not os.access(path, os.R_OK):
        return f"{where} is not readable by this user"
    return ""


def private_file_problem(path: Path, setting: str) -> str:
    """file_problem of a secret file (credentials, alert URLs): also unreadable by others."""
    return file_problem(path, setting, secret=True)


def directory_problem(path: Path, missing_ok: bool = False) -> str:
    """Why `path` is no usable directory ("PATH does not exist", "PATH is not a directory",
    "PATH: /a/b is not a directory" for a part of it), or ""; a missing one is "" with
    `missing_ok` (made when first needed)."""
    try:
        if stat.S_ISDIR(path.stat().st_mode):
            return ""
    except FileNotFoundError:
        return "" if missing_ok else f"{path} does not exist"
    except NotADirectoryError:
        parent = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()),
                      None)
        return f"{path}: {parent} is not a directory" if parent else f"{path} is not a directory"
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror}"
    return f"{path} is not a directory"


def replace_text(path: Path, text: str) -> None:
    """`path` holds `text` at once or not at all: a reader in another process (`status`)
    never sees half a file."""
    tmp = path.with_suffix(f".tmp.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_private(path: Path, text: str) -> Path:
    """Writes `text` to `path` (mode 0600, its directory 0700, made when missing) unless it
    already holds exactly that: replaced atomically, never readable by others meanwhile."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = text.encode()
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
