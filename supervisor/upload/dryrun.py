"""`ardua-backup run-once JOB --dry-run`: what the sync would do, changing nothing in S3 and
leaving the sentinel, the ledger and the metrics alone.

Not a copy of the run: upload.run.dry_run walks the run's own steps in read-only mode and fills
in one DryRun plan per destination of the job (DryRuns): the source listing, the in-progress
checks (the young files a receipts run leaves out on both sides, or the deferral), the deletion
guard's numbers and verdict, the hard-link plan (the candidates hashed in a read-only
container), the compare mode, then the sync itself with `rclone --dry-run` in a container
labelled as a reader. Its "Skipped copy/delete as
--dry-run is set" lines are the files and bytes that would be uploaded and the objects that would
be deleted; keys the hard-link step would copy server-side are counted apart from the uploads.
Operators run it before --force-deletes. A step that cannot run (S3 down, Docker) ends the plan
with its reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from supervisor.containers import rclone
from supervisor.core.states import EXIT_DEFERRED, EXIT_FAILED, EXIT_OK
from supervisor.core.text import printable
from supervisor.record.report import human_size
from supervisor.upload import hardlinks

DRY_RUN_STEP = "dry-run"  # not a writer step: the container carries the reader label
SHOWN = 20  # names listed per kind


@dataclass(frozen=True)
class Skipped:
    """One file rclone --dry-run skipped: what it would have copied or deleted."""

    action: str  # "copy" | "delete"
    path: str
    size: int


def parse_skipped(stderr: str) -> list[Skipped]:
    """rclone's `--dry-run` notices (JSON log: "skipped", "object", "size")."""
    found = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("skipped") in ("copy", "delete"):
            found.append(Skipped(str(entry["skipped"]), str(entry.get("object", "")),
                                 int(entry.get("size") or 0)))
    return found


@dataclass
class DryRun:
    job: str
    destination: str
    force_deletes: bool = False
    compare: str = ""
    compare_reason: str = ""
    source_files: int = 0
    source_bytes: int = 0
    quiet_period_s: float = 0.0
    # Changed within guard.quiet_period: left out of the sync on both sides, as a run would.
    young: list[rclone.ListedFile] = field(default_factory=list)
    deferred: str = ""  # why a real run would be deferred now
    guard_numbers: str = ""
    refusal: str = ""  # why the guard would refuse ("" = it passes)
    # What a run's sync would act on first, or None: the listings prove a cheap pass has
    # nothing to do, and a run starts no sync container (guard.first_difference).
    difference: str | None = ""
    copies: list[hardlinks.CopyPlan] = field(default_factory=list)
    copy_note: str = ""
    skipped: list[Skipped] = field(default_factory=list)
    error: str = ""  # a step that could not run
    log_note: str = ""  # rclone's log was longer than what is kept of it: the lists miss some

    @property
    def copied_keys(self) -> set[str]:
        return {t for p in self.copies for t in p.targets}

    @property
    def uploads(self) -> list[Skipped]:
        """What would cross the uplink: rclone's copies minus the keys made server-side."""
        made = self.copied_keys
        return [s for s in self.skipped if s.action == "copy" and s.path not in made]

    @property
    def deletes(self) -> list[Skipped]:
        return [s for s in self.skipped if s.action == "delete"]

    @property
    def verdict(self) -> str:
        if self.error:
            return f"a run would fail: {self.error}"
        if self.deferred:
            return f"a run would be deferred: {self.deferred}"
        if self.refusal and not self.force_deletes:
            return (f"a run would be REFUSED by the deletion guard: {self.refusal}; "
                    f"--force-deletes would let it do what is listed here")
        if self.refusal:
            return f"the deletion guard would refuse, overridden by --force-deletes: {self.refusal}"
        young = (f"; {len(self.young)} file(s) changed within guard.quiet_period left for the "
                 f"next run" if self.young else "")
        if self.difference is None:
            return (f"a run would start no sync: S3 already matches the source ({self.compare} "
                    f"pass){young}")
        return f"a run would sync as listed{young}"

    @property
    def exit_code(self) -> int:
        if self.error or (self.refusal and not self.force_deletes):
            return EXIT_FAILED
        return EXIT_DEFERRED if self.deferred else EXIT_OK

    def summary(self) -> str:
        uploads, deletes = self.uploads, self.deletes
        copied = sum(p.bytes_saved for p in self.copies)
        lines = [
            f"{self.job}  DRY RUN  (nothing changed in S3; sentinel, ledger, metrics untouched)",
            f"  destination       {self.destination}",
            f"  compared by       {self.compare or '-'}  ({self.compare_reason or '-'})",
            f"  source files      {self.source_files}, {human_size(self.source_bytes)}",
            f"  skipped young     {len(self.young)}  (changed within guard.quiet_period, "
            f"{self.quiet_period_s:.0f} s: left for the next run on both sides)",
            f"  deletion guard    {self.guard_numbers or '-'}",
            f"  would upload      {len(uploads)} files, "
            f"{human_size(sum(s.size for s in uploads))}",
            f"  copy in S3        {len(self.copied_keys)} keys, {human_size(copied)} not uploaded "
            f"(hard links){f'; {self.copy_note}' if self.copy_note else ''}",
            f"  would delete      {len(deletes)} objects, "
            f"{human_size(sum(s.size for s in deletes))}",
        ]
        shown = [("upload", uploads), ("delete", deletes),
                 ("young", [Skipped("young", f.path, f.size) for f in self.young])]
        for title, items in shown:
            for s in items[:SHOWN]:
                lines.append(f"    {title:<6} {s.path} ({s.size} B)")
            if len(items) > SHOWN:
                lines.append(f"    ... and {len(items) - SHOWN} more to {title}")
        for p in self.copies:
            for target in p.targets:
                how = "after uploading it" if p.seed else "already in S3"
                lines.append(f"    copy   {p.source} -> {target} ({p.size} B; {how})")
        if self.log_note:
            lines.append(f"  note              {self.log_note}")
        lines.append(f"  => {self.verdict}")
        # Keys from the bucket and names from the source reach the terminal escaped.
        return "\n".join(printable(line) for line in lines)


@dataclass
class DryRuns:
    """The plan of a job with several destinations: one DryRun each, in the config's order."""

    plans: list[DryRun]

    @property
    def exit_code(self) -> int:
        """The worst plan's: one that would fail, else one that would be deferred."""
        codes = {p.exit_code for p in self.plans}
        return next((c for c in (EXIT_FAILED, EXIT_DEFERRED) if c in codes), EXIT_OK)

    def summary(self) -> str:
        return "\n\n".join(p.summary() for p in self.plans)
