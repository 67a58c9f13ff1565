"""Which destination a restore or a drill reads from.

`--destination NAME` names it: exactly that one is used, and its being empty or down is the
error. Without it, the first destination the job copies to (in the file's order) that answers
and holds something under the job's prefix (as of `at`, with --at) is used, and the result says
why each earlier one was passed over: a restore works from the off-site copy when the first
bucket is down, emptied or was wiped by a bad sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from supervisor.config.load import Config
from supervisor.core.text import printable
from supervisor.restore.db import RestoreError
from supervisor.storage import markers, s3, versions
from supervisor.storage.destination import Destination


@dataclass(frozen=True)
class Source:
    dest: Destination
    # What the chosen destination holds under the prefix (as of `at`), relative to it.
    held: Mapping[str, s3.S3Object | versions.ObjectVersion]
    skipped: tuple[str, ...] = ()  # "primary: nothing under s3://b/postgres/", one per dest

    @property
    def note(self) -> str:
        """`from destination offsite (primary: nothing under s3://b/postgres/)`."""
        why = f" ({'; '.join(self.skipped)})" if self.skipped else ""
        return f"from destination {self.dest.name}{why}"


def choose(config: Config, job: str, name: str | None = None,
           at: datetime | None = None) -> Source:
    """The destination to restore `job`'s prefix from. An unknown `name` is a ConfigError
    naming the configured ones; with one candidate its own error is raised (an S3Error, or a
    RestoreError when it holds nothing), with several a RestoreError naming each one's."""
    prefix = config.job(job).prefix
    candidates = ((config.destination(name),) if name is not None
                  else config.destinations_of(config.job(job)))
    skipped: list[str] = []
    for dest in candidates:
        try:
            held = _held(dest, prefix, at)
        except s3.S3Error as exc:
            if len(candidates) == 1:
                raise
            skipped.append(f"{dest.name}: {printable(str(exc))}")
            continue
        if held:
            return Source(dest, held, tuple(skipped))
        when = f" at {versions.format_at(at)}" if at is not None else ""
        if len(candidates) == 1:
            raise RestoreError(f"destination {dest.name} holds nothing under "
                               f"{dest.url(prefix)}{when}")
        skipped.append(f"{dest.name}: nothing under {dest.url(prefix)}{when}")
    raise RestoreError(f"no destination of {job} holds anything to restore: "
                       f"{'; '.join(skipped)}")


def _held(dest: Destination, prefix: str, at: datetime | None,
          ) -> dict[str, s3.S3Object | versions.ObjectVersion]:
    """Every object under prefix/ (as of `at`) but the markers. The fast preflight first: a
    dead endpoint is passed over in seconds, not after the listing's retries."""
    s3.preflight(dest, prefix)
    listed = s3.list_objects(dest, prefix) if at is None else versions.state_at(dest, prefix, at)
    return {rel: obj for rel, obj in listed.items() if rel not in markers.MARKER_NAMES}
