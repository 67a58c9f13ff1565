"""How a sync decides a file is unchanged: per job a cheap compare mode for the frequent runs,
and a deep pass (`--checksum`) whenever the last deep success is older than `deep_every`.

- `checksum` (`--checksum`): reads every file every run; misses nothing.
- `size` (`--size-only`): reads no file; misses a file rewritten in place with the same size.
- `mtime` (`--update --use-server-modtime`): reads no file; misses a file written with an mtime
  older than its upload (restored with `cp -p`, `tar x`, `rsync -a`).

All three read the mirror from the listing alone (`--fast-list`, no HEAD per object). New and
deleted files are caught by every mode: only changed content under an existing key can wait
for the deep pass. Pure, but for reading the ledger.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from supervisor.config.values import CHECKSUM, MTIME, SIZE
from supervisor.record.ledger import Ledger

DEEP = CHECKSUM
FLAGS: dict[str, tuple[str, ...]] = {
    CHECKSUM: ("--checksum",),
    SIZE: ("--size-only",),
    # The upload time S3 lists (LastModified), not the mtime metadata that costs a HEAD each.
    MTIME: ("--update", "--use-server-modtime"),
}


@dataclass(frozen=True)
class Choice:
    mode: str
    reason: str

    @property
    def deep(self) -> bool:
        return self.mode == DEEP

    @property
    def flags(self) -> tuple[str, ...]:
        return FLAGS[self.mode]


def choose(mode: str, deep_every_s: float, last_deep: datetime | None, now: datetime,
           force_deep: bool = False) -> Choice:
    """The compare mode of this run: the job's, unless a deep pass is due (or forced)."""
    if mode == DEEP:
        return Choice(DEEP, "compare = 'checksum'")
    if force_deep:
        return Choice(DEEP, "deep pass asked for (--deep)")
    if last_deep is None:
        return Choice(DEEP, "deep pass: no deep pass has succeeded yet")
    age = (now - last_deep).total_seconds()
    if age >= deep_every_s:
        return Choice(DEEP, f"deep pass: the last one started {age / 3600:.1f} h ago "
                            f"(deep_every {deep_every_s / 3600:g} h)")
    return Choice(mode, f"{mode} pass ({' '.join(FLAGS[mode])}); next deep pass in "
                        f"{(deep_every_s - age) / 3600:.1f} h")


def for_run(state_dir: Path, job: str, mode: str, deep_every_s: float, now: datetime,
            force_deep: bool = False) -> Choice:
    """choose(), reading the ledger only when the answer depends on it."""
    needs_ledger = mode != DEEP and not force_deep
    last = last_deep_success(state_dir, job) if needs_ledger else None
    return choose(mode, deep_every_s, last, now, force_deep)


def last_deep_success(state_dir: Path, job: str) -> datetime | None:
    """When the job's last deep pass that succeeded started, from the ledger; None when unknown
    (no ledger, unreadable: the run is then deep, the safe side)."""
    try:
        return Ledger(state_dir).last_deep_success(job)
    except (OSError, sqlite3.Error):
        return None
