"""A prefix as S3 held it at a past time, from a versioned bucket's object versions.

`rclone sync` mirrors local mistakes too (a wiped folder forced through, a dump overwritten by
a broken one). With bucket versioning on, S3 keeps every overwritten or deleted object as a
noncurrent version and a deletion as a delete marker, so the state at any earlier time can be
read back from ListObjectVersions: for each key, the newest entry with LastModified <= TIME;
the key existed then unless that entry is a delete marker.

Seams (the lead wires config keys and CLI flags; everything here takes plain inputs):

    parse_at(text: str) -> datetime
        `--at TIME`: ISO 8601 with `Z` or an offset -> aware UTC datetime; ValueError (one
        line, asks for an offset) for a naive or unreadable time.
    state_at(dest: Destination, prefix: str, at: datetime) -> dict[str, ObjectVersion]
        rel key (under `prefix/`) -> the version live at `at`. Raises VersioningOff (an
        S3Error, one line with the command that turns versioning on) when the bucket never had
        versioning, S3Error for any other S3 problem.
    require_versioning(dest: Destination) -> str
        'Enabled' or 'Suspended' (old versions still exist), else VersioningOff.
    choose(entries: Iterable[Entry], at: datetime) -> dict[str, ObjectVersion]
        the pure choice, separated from boto3 (unit- and property-tested).

LastModified has one-second resolution on SeaweedFS (and in S3 listings generally), so several
entries of one key can share a LastModified. S3 lists each key's entries newest first; boto3
splits them into `Versions` and `DeleteMarkers` and loses how the two interleave, so the raw
XML's document order is kept (an after-call hook) and decides between entries of one second.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from supervisor.core import clock
from supervisor.storage import s3
from supervisor.storage.destination import Destination

_ORDER_KEY = "ArduaDocumentOrder"  # added to each parsed ListObjectVersions page by _keep_order
_HOOK_ID = "ardua-backup-version-order"


class VersioningOff(s3.S3Error):
    """The bucket never had versioning: there are no earlier versions to read."""


def versioning_off_message(bucket: str) -> str:
    return (f"bucket versioning is off on s3://{bucket}, so S3 kept no earlier versions to "
            f"restore from; turn it on (it protects changes from then on): aws s3api "
            f"put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled")


def parse_at(text: str) -> datetime:
    """ISO 8601 with a UTC `Z` or an offset -> aware UTC datetime."""
    raw = text.strip()
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"--at {text!r} is not an ISO 8601 time; write e.g. "
                         f"2026-03-02T09:30:00Z or 2026-03-02T10:30:00+01:00") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"--at {text!r} has no UTC offset; say which time zone you mean, "
                         f"e.g. {raw}Z for UTC or {raw}+01:00")
    return parsed.astimezone(UTC)


def format_at(at: datetime) -> str:
    """RFC 3339 in UTC with `Z`, as messages show it and rclone's --s3-version-at reads it."""
    return clock.rfc3339(at)


@dataclass(frozen=True)
class ObjectVersion:
    """One object version. Duck-types s3.S3Object (key, size, etag, last_modified) plus the
    version to ask for."""

    key: str
    version_id: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class Entry:
    """One row of ListObjectVersions: a version or a delete marker."""

    key: str
    version_id: str
    last_modified: datetime
    delete_marker: bool = False
    size: int = 0
    etag: str = ""


def choose(entries: Iterable[Entry], at: datetime) -> dict[str, ObjectVersion]:
    """For each key, its newest entry with LastModified <= at, unless that entry is a delete
    marker (the key did not exist then). Newest: the latest LastModified; between entries of
    the same LastModified, the one listed first (S3 lists each key's entries newest first)."""
    if at.tzinfo is None:
        raise ValueError("choose() needs an aware datetime")
    newest: dict[str, Entry] = {}
    for entry in entries:
        if entry.last_modified > at:
            continue
        held = newest.get(entry.key)
        if held is None or entry.last_modified > held.last_modified:
            newest[entry.key] = entry
    return {
        key: ObjectVersion(e.key, e.version_id, e.size, e.etag, e.last_modified)
        for key, e in sorted(newest.items())
        if not e.delete_marker
    }


# -- boto3 ---------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _keep_order(http_response: Any = None, parsed: Any = None, **_: Any) -> None:
    """after-call hook: record the XML's order of <Version> and <DeleteMarker> elements as
    (is_marker, key, version_id) in the parsed page, which boto3 splits into two lists."""
    if not isinstance(parsed, dict) or http_response is None:
        return
    try:
        root = ET.fromstring(http_response.content)
    except ET.ParseError:
        return
    order = []
    for element in root:
        kind = _local(element.tag)
        if kind in ("Version", "DeleteMarker"):
            fields = {_local(child.tag): child.text or "" for child in element}
            order.append((kind == "DeleteMarker", fields.get("Key", ""),
                          fields.get("VersionId", "")))
    parsed[_ORDER_KEY] = order


def page_entries(page: Mapping[str, Any]) -> list[Entry]:
    """A parsed ListObjectVersions page -> entries in listing order. Without the recorded
    document order (the hook did not run), each key's versions and markers are merged by
    LastModified, newest first, the current one (IsLatest) first among equals."""
    versions = {(False, v["Key"], v["VersionId"]): (v, False) for v in page.get("Versions", [])}
    markers = {(True, m["Key"], m["VersionId"]): (m, True) for m in page.get("DeleteMarkers", [])}
    rows = {**versions, **markers}
    order = [ident for ident in page.get(_ORDER_KEY, ()) if ident in rows]
    if len(order) != len(rows):  # no (or an incomplete) document order: merge
        order = sorted(rows, key=lambda i: (i[1], -rows[i][0]["LastModified"].timestamp(),
                                            not rows[i][0].get("IsLatest", False)))
    entries = []
    for ident in order:
        item, is_marker = rows[ident]
        entries.append(Entry(
            key=item["Key"], version_id=item["VersionId"],
            last_modified=item["LastModified"], delete_marker=is_marker,
            size=0 if is_marker else int(item.get("Size", 0)),
            etag="" if is_marker else str(item.get("ETag", "")).strip('"'),
        ))
    return entries


def require_versioning(dest: Destination) -> str:
    """'Enabled' or 'Suspended' (versions made while it was on are still there)."""
    status = s3.versioning_status(dest)
    if status not in ("Enabled", "Suspended"):
        raise VersioningOff(versioning_off_message(dest.bucket))
    return status


def list_entries(dest: Destination, prefix: str, page_size: int | None = None) -> Iterator[Entry]:
    """Every version and delete marker under prefix/, in listing order, all pages (up to 1000
    entries each, or page_size)."""
    client = s3.client(dest)
    client.meta.events.register("after-call.s3.ListObjectVersions", _keep_order,
                                unique_id=_HOOK_ID)
    paginator = client.get_paginator("list_object_versions")
    paging = {"PaginationConfig": {"PageSize": page_size}} if page_size else {}
    try:
        for page in paginator.paginate(Bucket=dest.bucket, Prefix=f"{prefix}/", **paging):
            yield from page_entries(page)
    except (BotoCoreError, ClientError) as exc:
        raise s3.S3Error(f"listing the object versions under {dest.url(prefix)} "
                         f"failed: {s3.describe(exc, dest)}") from None


def state_at(dest: Destination, prefix: str, at: datetime) -> dict[str, ObjectVersion]:
    """The objects under prefix/ as S3 held them at `at`, keyed by the path relative to the
    prefix as s3.list_objects keys them (an encrypted destination's by file name)."""
    if at.tzinfo is None:
        raise ValueError("state_at() needs an aware datetime (see parse_at)")
    require_versioning(dest)
    chosen = choose(list_entries(dest, prefix), at)
    return s3.shown(dest, {key[len(prefix) + 1:]: version for key, version in chosen.items()})
