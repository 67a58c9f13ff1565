"""Each file's bytes cross the uplink once: which source files are the same content (hard links),
and which S3 keys can be made with a server-side copy instead of an upload. Pure: listings in,
plans and rclone command lines out (upload.servercopy carries a plan out).

postgres-backup-local writes one dump into `last/` and hard-links it into `daily/`, `weekly/`
and `monthly/`. rclone knows nothing of hard links (its issue #6160), so a plain sync uploads
each dump four times. Here:

1. From the source listing (path, size, mtime), files sharing size and mtime are candidates:
   hard links always do. Only groups S3 does not already hold consistently are looked at, so an
   unchanged day costs nothing.
2. The candidates are hashed (MD5) in one read-only rclone container. Hard links share one
   inode, hence one page cache: the dump is read from disk once however many links it has.
   Files with the same size and MD5 form an identity class; only those are ever copied.
3. A class whose content S3 already holds under one of its keys (the donor: same size, same
   MD5) copies from it. Otherwise one member (the seed) is uploaded first by `rclone copy`
   limited to exactly those files, and the other keys are copied from it.
4. The sync then runs as always and checks every key by checksum: a copy that failed or went
   wrong is simply uploaded by it. The mirror's exactness never rests on this module.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from supervisor.containers import rclone
from supervisor.containers.rclone import ListedFile
from supervisor.storage.destination import Destination
from supervisor.storage.markers import MARKER_NAMES
from supervisor.storage.s3 import S3Object

# Candidate files are named one by one on rclone's command line (an exact --include each).
# Linux allows ~2 MiB of arguments; beyond these bounds the largest groups are taken first and
# the rest is left to the sync's plain uploads.
MAX_CANDIDATE_FILES = 1000
MAX_PATTERN_BYTES = 256 * 1024

_MD5 = re.compile(r"[0-9a-f]{32}")
_GLOB_SPECIAL = frozenset("*?[]{}\\")


def exact_pattern(path: str) -> str:
    """An rclone filter pattern matching exactly `path` (relative to the root): anchored with a
    leading "/", every glob metacharacter escaped."""
    return "/" + "".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in path)


def _includes(paths: Iterable[str]) -> list[str]:
    return [arg for path in paths for arg in ("--include", exact_pattern(path))]


def etag_md5(etag: str) -> str | None:
    """The MD5 an S3 ETag is, or None when it is not one (multipart "-N", SSE-KMS)."""
    etag = etag.strip('"').lower()
    return etag if _MD5.fullmatch(etag) else None


@dataclass(frozen=True)
class Group:
    """Source files with the same size and mtime: maybe the same content (hard links)."""

    size: int
    mod_time: str
    paths: tuple[str, ...]


def _consistent_in_s3(group: Group, mirror: Mapping[str, S3Object]) -> bool:
    """Does S3 hold every member with the group's size and one and the same MD5 ETag? Then there
    is nothing to copy (the sync still verifies each key by checksum)."""
    md5s = set()
    for path in group.paths:
        obj = mirror.get(path)
        if obj is None or obj.size != group.size:
            return False
        md5s.add(etag_md5(obj.etag))
    # Several ETags, or unknown ones (multipart, KMS): leave same-size keys to the sync.
    return len(md5s) == 1 or None in md5s


def candidate_groups(
    listed: Iterable[ListedFile], mirror: Mapping[str, S3Object]
) -> list[Group]:
    """Groups of two or more non-empty files with the same size and mtime that S3 does not
    already hold consistently, largest first, within the command-line bounds."""
    by_key: dict[tuple[int, str], list[str]] = defaultdict(list)
    for f in listed:
        if f.size > 0 and f.path not in MARKER_NAMES:
            by_key[(f.size, f.mod_time)].append(f.path)
    groups = [
        Group(size, mod_time, tuple(sorted(paths)))
        for (size, mod_time), paths in by_key.items()
        if len(paths) > 1
    ]
    groups = [g for g in groups if not _consistent_in_s3(g, mirror)]
    groups.sort(key=lambda g: (-g.size * (len(g.paths) - 1), g.paths))
    kept, files, pattern_bytes = [], 0, 0
    for g in groups:
        more = sum(len(exact_pattern(p).encode()) for p in g.paths)
        if files + len(g.paths) > MAX_CANDIDATE_FILES or pattern_bytes + more > MAX_PATTERN_BYTES:
            continue
        kept.append(g)
        files += len(g.paths)
        pattern_bytes += more
    return kept


def hash_command(paths: Sequence[str]) -> list[str]:
    """MD5 of exactly these source files, listed as JSON (read-only, like the source listing)."""
    return [
        "lsjson", "--recursive", "--files-only", "--hash-type", "md5", f"{rclone.SOURCE_MOUNT}/",
        *_includes(paths), *rclone.LOGGING,
    ]  # fmt: skip


@dataclass(frozen=True)
class Hashed:
    path: str
    size: int
    mod_time: str
    md5: str


def parse_hashes(stdout: str) -> dict[str, Hashed]:
    """`rclone lsjson --hash-type md5` output -> path -> Hashed (files without an MD5 left out).
    Raises ValueError when it is not a JSON list."""
    entries = json.loads(stdout or "null")
    if not isinstance(entries, list):
        raise ValueError("rclone lsjson did not print a JSON list")
    found = {}
    for e in entries:
        md5 = str((e.get("Hashes") or {}).get("md5") or "").lower()
        if e.get("IsDir") or not _MD5.fullmatch(md5):
            continue
        found[str(e["Path"])] = Hashed(str(e["Path"]), int(e["Size"]), str(e.get("ModTime", "")),
                                       md5)
    return found


@dataclass(frozen=True)
class CopyPlan:
    """One identity class: `source` holds (or, with `seed`, will hold once uploaded) the
    content; each of `targets` is made from it with a server-side copy."""

    source: str  # path relative to the prefix
    md5: str
    size: int
    targets: tuple[str, ...]
    seed: bool  # the source is not in S3 yet: upload it first
    donor_unverified: bool = False  # donor's ETag is no MD5: check its md5chksum before copying

    @property
    def bytes_saved(self) -> int:
        return self.size * len(self.targets)


def _holds(obj: S3Object | None, size: int, md5: str, encrypted: bool) -> bool | None:
    """Does this S3 object hold that content? None: same size, but its ETag is no MD5 of the
    file (a multipart or SSE-KMS ETag; encrypted, the MD5 of its ciphertext)."""
    if obj is None or obj.size != size:
        return False
    etag = None if encrypted else etag_md5(obj.etag)
    return None if etag is None else etag == md5


def plan_copies(
    groups: Iterable[Group], hashes: Mapping[str, Hashed], mirror: Mapping[str, S3Object],
    encrypted: bool = False,
) -> list[CopyPlan]:
    """Server-side copies for the candidate groups, from their hashes. A file whose size or
    mtime changed since the listing, or that was not hashed, is left to the sync."""
    plans = []
    for group in groups:
        classes: dict[str, list[str]] = defaultdict(list)
        for path in group.paths:
            h = hashes.get(path)
            if h and h.size == group.size and h.mod_time == group.mod_time:
                classes[h.md5].append(path)
        for md5, members in sorted(classes.items()):
            if len(members) < 2:
                continue
            held = {p: _holds(mirror.get(p), group.size, md5, encrypted) for p in members}
            targets = [p for p in members if held[p] is False]
            if not targets:
                continue
            donors = [p for p in members if held[p] is True]
            unverified = [p for p in members if held[p] is None]
            if donors:
                plans.append(CopyPlan(donors[0], md5, group.size, tuple(targets), seed=False))
            elif unverified:  # an SSE-KMS, multipart or encrypted object: its HEAD decides
                plans.append(CopyPlan(unverified[0], md5, group.size, tuple(targets),
                                      seed=False, donor_unverified=True))
            else:
                seed, *rest = targets
                if rest:
                    plans.append(CopyPlan(seed, md5, group.size, tuple(rest), seed=True))
    return plans


def seed_command(dest: Destination, prefix: str, timeout_s: float, paths: Sequence[str],
                 extra: Sequence[str] = ()) -> list[str]:
    """Uploads exactly these files (one per identity class): `rclone copy`, never deleting, with
    the sync's checks, bounds and `extra` flags (--bwlimit)."""
    return [
        "copy", f"{rclone.SOURCE_MOUNT}/", dest.remote(prefix),
        *rclone.compare_flags(dest, rclone.CHECKSUM), "--fast-list", *_includes(paths),
        *rclone.BOUNDS,
        "--max-duration", f"{rclone.max_duration_s(timeout_s)}s", *extra, *rclone.logging(dest),
    ]  # fmt: skip
