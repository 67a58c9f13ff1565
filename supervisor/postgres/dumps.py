"""postgres-backup-local's /backups, read from its file names: which file is which database's
dump, the newest one of each database and the one before it. Pure: listings in, facts out.

Its backup.sh loops over the databases of POSTGRES_DB (a comma list) and, per database and run,
writes `last/DB-%Y%m%d-%H%M%S<SUFFIX>`, then hard-links it as `daily/DB-%Y%m%d<SUFFIX>`,
`weekly/DB-%G%V<SUFFIX>` and `monthly/DB-%Y%m<SUFFIX>` (`ln -f`, replaced on every run).
`DB-latest<SUFFIX>` is a symlink (rclone skips it), a hard link or absent: it never matches the
dated names below, so it is never taken for a dump. With `pg_dump -Fd` each of these names is a
directory (the period ones built as `NAME-new/` of hard links, then renamed): its files make one
dump.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# The database name is everything before the last dash-and-stamp; DB names may hold dashes.
# The suffix may not start with a digit, so `DB-20251218.dump` is never read as `DB-202512`.
# A directory being built (`NAME-new`) is not a dump yet.
_LAST_NAME = re.compile(r"^(?P<db>.+)-\d{8}-\d{6}(?!\d)[^/]*(?<!-new)$")
_PERIOD_NAME = re.compile(r"^(?P<db>.+)-(?:\d{8}|\d{6})(?!\d)[^/]*(?<!-new)$")
PERIOD_FOLDERS = ("daily", "weekly", "monthly")


@dataclass(frozen=True)
class Dump:
    key: str  # relative to the job's source and S3 prefix, e.g. "last/ardua-20251218-010000.dump"
    size: int  # a directory dump: the sum of its files
    modified: datetime  # a directory dump: its newest file
    files: tuple[tuple[str, int], ...] = ()  # a directory dump's files (key, size); () = a file

    @property
    def is_directory(self) -> bool:
        return bool(self.files)


@dataclass(frozen=True)
class Found:
    database: str
    in_dump_dir: bool  # in dump_dir/ (else a daily/weekly/monthly hard link)
    dump: Dump


@dataclass(frozen=True)
class DatabaseDumps:
    """One database's dumps as the source holds them."""

    database: str
    newest: Dump | None  # None: named in health.databases, but no dump of it in last/
    previous: Dump | None = None  # the newest older dump (last/ or a period folder), if any


def database_of(name: str, in_dump_dir: bool = True) -> str | None:
    """The database a file name belongs to: a last/ name (`DB-%Y%m%d-%H%M%S…`) or a
    daily/weekly/monthly one (`DB-%Y%m%d…`, `DB-%G%V…`, `DB-%Y%m…`); None for anything else."""
    match = (_LAST_NAME if in_dump_dir else _PERIOD_NAME).match(name)
    return match.group("db") if match else None


def find(entries: Iterable[tuple[str, int, datetime]], dump_dir: str) -> list[Found]:
    """Every dump among (path, size, mtime) entries relative to the backup root (the source, or
    the S3 prefix): a file named as backup.sh names it in dump_dir/ or a period folder, or a
    directory so named, whose files make one dump."""
    parent = dump_dir.rpartition("/")[0]
    folders = {dump_dir: True, **{f"{parent}/{f}".lstrip("/"): False for f in PERIOD_FOLDERS}}
    found: list[Found] = []
    directories: dict[str, list[tuple[str, int, datetime]]] = {}
    for path, size, modified in entries:
        folder, _, name = path.rpartition("/")
        if folder in folders and (db := database_of(name, folders[folder])):
            found.append(Found(db, folders[folder], Dump(path, size, modified)))
        else:
            outer, _, dir_name = folder.rpartition("/")
            if outer in folders and database_of(dir_name, folders[outer]):
                directories.setdefault(folder, []).append((path, size, modified))
    for key, files in directories.items():
        outer, _, dir_name = key.rpartition("/")
        db = database_of(dir_name, folders[outer])
        assert db is not None
        found.append(Found(db, folders[outer], Dump(
            key, sum(size for _, size, _ in files), max(m for _, _, m in files),
            tuple(sorted((path, size) for path, size, _ in files)))))
    return found


def by_database(
    entries: Iterable[tuple[str, int, datetime]], dump_dir: str, pinned: Iterable[str] = ()
) -> tuple[DatabaseDumps, ...]:
    """Each database's newest dump in dump_dir/ and the dump before it, sorted by name.

    The databases are `pinned` when given (one that has no dump shows with newest=None), else
    every database seen in dump_dir/. The previous dump may come from daily/weekly/monthly too:
    pbl prunes last/ after a day, and its period folders keep older hard links. A hard link of
    the newest dump shares its mtime, so only a strictly older file counts as previous.
    """
    newest: dict[str, Dump] = {}
    every: dict[str, list[tuple[Dump, bool]]] = {}
    for f in find(entries, dump_dir):
        every.setdefault(f.database, []).append((f.dump, f.in_dump_dir))
        if f.in_dump_dir and (f.database not in newest
                              or _order(f.dump) > _order(newest[f.database])):
            newest[f.database] = f.dump
    names = sorted(set(pinned) or newest)
    return tuple(
        DatabaseDumps(db, newest.get(db), _previous(newest.get(db), every.get(db, [])))
        for db in names
    )


def _order(dump: Dump) -> tuple[datetime, str]:
    return dump.modified, dump.key


def _previous(newest: Dump | None, dumps: list[tuple[Dump, bool]]) -> Dump | None:
    """The newest strictly older dump; of hard links to it, the dump_dir/ name."""
    older = [(d, in_dump_dir) for d, in_dump_dir in dumps
             if newest is not None and d.modified < newest.modified]
    best = max(older, key=lambda o: (o[0].modified, o[1], o[0].key), default=None)
    return best[0] if best else None
