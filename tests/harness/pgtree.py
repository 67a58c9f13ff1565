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
    dumps: Iterable[tuple[datetime, bytes]],
    db: str = "ardua",
    suffix: str = ".dump",
) -> list[Path]:
    """Create the postgres-backup-local tree under root; return every regular file path created
    (last/ dumps first, then the daily/weekly/monthly hard links). Symlinks are not included.
    """
    root = Path(root)
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    ordered = sorted(dumps, key=lambda d: d[0])
    created: list[Path] = []
    last_files: list[tuple[datetime, Path]] = []
    for when, body in ordered:
        path = root / "last" / f"{db}-{when:%Y%m%d-%H%M%S}{suffix}"
        path.write_bytes(body)
        ts = when.timestamp()
        os.utime(path, (ts, ts))
        last_files.append((when, path))
        created.append(path)

    # For each period the newest dump wins (the container replaces the link on every run).
    for folder, fmt in PERIOD_FORMATS.items():
        newest: dict[str, Path] = {}
        for when, path in last_files:  # ascending, so later ones overwrite
            newest[when.strftime(fmt)] = path
        for period, src in newest.items():
            dst = root / folder / f"{db}-{period}{suffix}"
            if dst.exists() or dst.is_symlink():
                dst.unlink()
            os.link(src, dst)
            created.append(dst)

    for folder in FOLDERS:
        latest = root / folder / f"{db}-latest{suffix}"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        files = [
            p for p in (root / folder).iterdir()
            if p.is_file() and not p.is_symlink() and p.name.startswith(f"{db}-")
        ]  # fmt: skip
        if files:
            # newest by mtime, name as tie-break (hard links share the dump's mtime)
            target = max(files, key=lambda p: (p.stat().st_mtime, p.name))
            latest.symlink_to(target.name)  # relative, like `ln -s NAME DB-latest<suffix>`
    return created


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
