"""Backup trees exactly as prodrigestivill/postgres-backup-local lays them out, and volume helpers.

Layout (names in the dump container's TZ; here: the naive/aware datetimes given)::

    last/DB-%Y%m%d-%H%M%S<suffix>     one per dump, mtime = its time
    daily/DB-%Y%m%d<suffix>           hard link to the newest last/ dump of that day
    weekly/DB-%G%V<suffix>            ... of that ISO week
    monthly/DB-%Y%m<suffix>           ... of that month
    <folder>/DB-latest<suffix>        relative symlink to the newest file in that folder
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import docker
import docker.errors

T = TypeVar("T")

FOLDERS = ("last", "daily", "weekly", "monthly")
PERIOD_FORMATS = {"daily": "%Y%m%d", "weekly": "%G%V", "monthly": "%Y%m"}


def make_backups_tree(
    root: Path,
    dumps: Iterable[tuple[datetime, bytes | Path]],
    db: str = "ardua",
    suffix: str = ".dump",
    latest: str = "symlink",
) -> list[Path]:
    """Create the postgres-backup-local tree under root as its backup.sh does; return every
    regular file path created (last/ dumps first, then the daily/weekly/monthly hard links).

    A dump body is bytes (a file) or a directory (pg_dump -Fd): backup.sh then builds each
    period entry as a directory of hard links to the dump's files. `latest` is
    BACKUP_LATEST_TYPE: "symlink" (relative `ln -s`, the default), "hardlink" (`DB-latest<suffix>`
    a hard link of the newest file, which rclone uploads) or "none".
    """
    root = Path(root)
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    last_files = _write_last_dumps(root, dumps, db, suffix, created)
    _link_periods(root, last_files, db, suffix, created)
    _link_latest(root, db, suffix, latest, created)
    return created


def _write_last_dumps(
    root: Path,
    dumps: Iterable[tuple[datetime, bytes | Path]],
    db: str,
    suffix: str,
    created: list[Path],
) -> list[tuple[datetime, Path]]:
    """Write each dump into last/ (oldest first) with its time as mtime; return (time, path)."""
    last_files: list[tuple[datetime, Path]] = []
    for when, body in sorted(dumps, key=lambda d: d[0]):
        path = root / "last" / f"{db}-{when:%Y%m%d-%H%M%S}{suffix}"
        ts = when.timestamp()
        if isinstance(body, Path):
            shutil.copytree(body, path)
            for f in sorted(path.iterdir()):
                os.utime(f, (ts, ts))
                created.append(f)
        else:
            path.write_bytes(body)
            created.append(path)
        os.utime(path, (ts, ts))
        last_files.append((when, path))
    return last_files


def _link_periods(
    root: Path,
    last_files: list[tuple[datetime, Path]],
    db: str,
    suffix: str,
    created: list[Path],
) -> None:
    """daily/ weekly/ monthly/: for each period the newest dump wins (the container replaces
    the link on every run)."""
    for folder, fmt in PERIOD_FORMATS.items():
        newest: dict[str, Path] = {}
        for when, path in last_files:  # ascending, so later ones overwrite
            newest[when.strftime(fmt)] = path
        for period, src in newest.items():
            _link_period_entry(src, root / folder / f"{db}-{period}{suffix}", created)


def _link_period_entry(src: Path, dst: Path, created: list[Path]) -> None:
    """Replace dst by a hard link of src (a directory dump: a directory of hard links)."""
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists() or dst.is_symlink():
        dst.unlink()
    if src.is_dir():  # `mkdir X-new; ln -f SRC/* X-new/; mv X-new X`
        dst.mkdir()
        for f in sorted(src.iterdir()):
            os.link(f, dst / f.name)
            created.append(dst / f.name)
        os.utime(dst, (src.stat().st_mtime,) * 2)
    else:
        os.link(src, dst)
        created.append(dst)


def _link_latest(root: Path, db: str, suffix: str, latest: str, created: list[Path]) -> None:
    """<folder>/DB-latest<suffix> to each folder's newest entry, as BACKUP_LATEST_TYPE says."""
    for folder in FOLDERS:
        link = root / folder / f"{db}-latest{suffix}"
        if link.is_symlink() or link.is_file():
            link.unlink()
        entries = [
            p for p in (root / folder).iterdir()
            if not p.is_symlink() and p.name.startswith(f"{db}-") and "-latest" not in p.name
        ]  # fmt: skip
        if not entries or latest == "none":
            continue
        # newest by mtime, name as tie-break (hard links share the dump's mtime)
        target = max(entries, key=lambda p: (p.stat().st_mtime, p.name))
        if latest == "symlink":
            link.symlink_to(target.name)  # relative, like `ln -s NAME DB-latest<suffix>`
        elif target.is_file():  # hardlink; for a directory dump backup.sh has no such link
            os.link(target, link)
            created.append(link)


def volume_mountpoint(client: docker.DockerClient, name: str) -> Path:
    """Host path of a local named volume (tests run as root, so they can write there)."""
    return Path(client.volumes.get(name).attrs["Mountpoint"])


def fill_volume(
    client: docker.DockerClient,
    name: str,
    tree_builder: Callable[[Path], T],
    labels: dict[str, str] | None = None,
) -> T:
    """Create the named volume if missing, then call ``tree_builder(mountpoint)`` and return its
    result, e.g. ``fill_volume(c, vol, lambda root: make_backups_tree(root, dumps))``.
    """
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        client.volumes.create(name=name, driver="local", labels=labels or {"ardua-test": "1"})
    return tree_builder(volume_mountpoint(client, name))
