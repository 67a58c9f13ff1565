"""Safety checks a sync must pass before its container starts. Pure: listings in, decision out.

rclone's own `--max-delete N` is no guard: it deletes N objects and only then fails (measured), so
the comparison is done here, on the listings, before anything can change S3.

The same listings also tell when a cheap pass (supervisor.upload.compare) has nothing to do
(first_difference): the run then starts no sync container, and S3 is not listed a second time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from supervisor.config.load import GuardConfig
from supervisor.containers.rclone import ListedFile
from supervisor.storage.markers import MARKER_NAMES
from supervisor.storage.s3 import S3Object
from supervisor.upload.compare import CHECKSUM, MTIME


@dataclass(frozen=True)
class SyncPlan:
    """What a sync of `source` onto `mirror` would do, in numbers."""

    source_files: int
    source_bytes: int
    mirror_objects: int
    mirror_bytes: int
    deletes: int  # mirror objects missing from the source: the sync deletes them

    @property
    def delete_share(self) -> float:
        return self.deletes / self.mirror_objects if self.mirror_objects else 0.0

    @property
    def shrink_share(self) -> float:
        """How much smaller the source is than the mirror, in bytes (0 when it grew)."""
        if not self.mirror_bytes:
            return 0.0
        return max(0.0, 1 - self.source_bytes / self.mirror_bytes)

    def numbers(self) -> str:
        return (
            f"source {self.source_files} file(s) / {self.source_bytes} B, mirror "
            f"{self.mirror_objects} object(s) / {self.mirror_bytes} B, would delete "
            f"{self.deletes} ({self.delete_share:.0%}), source smaller by {self.shrink_share:.0%}"
        )


def plan_sync(source: Iterable[ListedFile], mirror: Mapping[str, S3Object]) -> SyncPlan:
    files = {f.path: f.size for f in source}
    kept = {rel: obj.size for rel, obj in mirror.items() if rel not in MARKER_NAMES}
    return SyncPlan(
        source_files=len(files),
        source_bytes=sum(files.values()),
        mirror_objects=len(kept),
        mirror_bytes=sum(kept.values()),
        deletes=sum(1 for rel in kept if rel not in files),
    )


def deletion_refusal(plan: SyncPlan, limits: GuardConfig) -> str:
    """Why this sync must not run, or "" when it may. A single deletion always passes: a mirror
    of one or two objects would otherwise refuse every rotation."""
    if not plan.source_files:
        # Even over an empty mirror: an empty source is a wrong mount or a wiped disk, not a backup.
        if plan.mirror_objects:
            return "the source is empty and the sync would delete the whole mirror"
        return "the source is empty; there is nothing to back up"
    if plan.deletes > 1 and plan.delete_share > limits.max_delete_share:
        return (
            f"the sync would delete {plan.deletes} of {plan.mirror_objects} objects "
            f"({plan.delete_share:.0%} > guard.max_delete_share {limits.max_delete_share:.0%})"
        )
    if plan.shrink_share > limits.max_shrink_share:
        return (
            f"the source holds {plan.shrink_share:.0%} fewer bytes than the mirror "
            f"(> guard.max_shrink_share {limits.max_shrink_share:.0%})"
        )
    return ""


def first_difference(mode: str, source: Iterable[ListedFile], mirror: Mapping[str, S3Object],
                     left_out: Collection[str] = ()) -> str | None:
    """The first thing a sync in compare `mode` would do, judged from the listings alone, or
    None when it would transfer and delete nothing. `left_out`: paths excluded on both sides.

    Stricter than rclone, never looser: `size` skips a file of the same size (--size-only);
    `mtime` one of the same size that S3 received no earlier than its mtime (--update skips a
    destination that is newer, or as old and of the same size). Anything else is a difference,
    and rclone decides. A checksum pass reads the files: always rclone's to make."""
    if mode == CHECKSUM:
        return "a checksum pass compares content"
    skip = {*MARKER_NAMES, *left_out}
    objects = {rel: obj for rel, obj in mirror.items() if rel not in skip}
    for f in source:
        if f.path in skip:
            continue
        obj = objects.pop(f.path, None)
        if obj is None:
            return f"{f.path} is not in S3"
        if obj.size != f.size:
            return f"{f.path} is {f.size} B, in S3 {obj.size} B"
        if mode == MTIME and obj.last_modified < f.modified:
            return f"{f.path} was modified after its upload"
    if objects:
        return f"{next(iter(objects))} is in S3, not in the source"
    return None


def recently_modified(
    source: Iterable[ListedFile], now: datetime, quiet_period_s: float
) -> list[ListedFile]:
    """Files modified within the quiet period: they may still be being written (postgres-backup-
    local writes straight into last/ under the final name). A clock skew into the future counts
    too, but only by the same margin, so a wrong mtime cannot defer the job forever."""
    return [
        f for f in source if abs((now - f.modified).total_seconds()) < quiet_period_s
    ]
