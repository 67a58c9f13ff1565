"""`ardua-backup verify`: read back what S3 holds, remember each proof, report the coverage.

each destination (or the one named) -> what it holds under each job's prefix (restore.source's
choice of a named destination: its preflight, markers left out) -> the items (plan) -> the due
ones within the budget -> each downloaded into a temporary directory under state_dir (after a
free-space check, removed after it) and proven (prove) -> its proof recorded (record.proofs) ->
the coverage of every retained object -> a VerifyReport for the sinks.

Never beside an upload of the same prefix: before each item, a running sync container that
writes to that prefix (the writer label, whoever started it) leaves the prefix for the next run.
run_verify never raises for a failed proof or an unreachable destination.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from supervisor.config.load import VERIFY_JOB, Config, JobConfig
from supervisor.containers import engine as docker_runner
from supervisor.core.clock import now_utc
from supervisor.core.states import DEFERRED, FAILED, SUCCESS
from supervisor.core.text import printable
from supervisor.postgres import pgtools
from supervisor.record.proofs import Coverage, Held, Proof, Proofs, coverage
from supervisor.record.report import Report, human_size, new_run_id
from supervisor.restore import db as restore
from supervisor.restore.db import RestoreError, StoredDump
from supervisor.restore.source import choose
from supervisor.storage import markers, s3
from supervisor.storage.destination import Destination
from supervisor.verify import plan
from supervisor.verify.plan import DUMP, FILE, RECEIPT, Item
from supervisor.verify.prove import Unreadable, prove_dump, prove_object

# Free space kept in state_dir's filesystem beyond the item being downloaded: the ledger, the
# metrics and the proofs must still be written.
SPARE_BYTES = 64 << 20
EXIT_PROVEN, EXIT_WORK_LEFT, EXIT_PROOF_FAILED = 0, 1, 2
# Objects of one destination that could not be read before the run leaves it for the next.
MAX_UNREAD = 3
# How a run's problems say why work was left: read by _finish to judge the run.
BUDGET_LEFT = "verify.max_bytes_per_run"
UPLOAD_LEFT = "left for the next run, never read beside a sync"


@dataclass
class VerifyReport(Report):
    """One verify run. `bytes` is what was read, `files` the objects proven, `errors` the
    retained objects whose latest proof failed; exit_code is the command's (0, 1, 2)."""

    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, why), retained ones
    coverage: float = 1.0
    oldest_proof: datetime | None = None
    retained: int = 0
    proven: int = 0
    problems: list[str] = field(default_factory=list)  # what left work for the next run

    def fields(self) -> dict[str, object]:
        return super().fields() | {"coverage": f"{self.coverage:.3f}",
                                   "exit_code": self.exit_code}

    def gauges(self) -> dict[str, float]:
        return {"verify_coverage": self.coverage, "verify_failed": float(len(self.failed)),
                "verify_bytes_read": float(self.bytes)}

    def as_json(self) -> dict[str, object]:
        return {"checked": self.files, "bytes_read": self.bytes,
                "failed": [{"key": printable(k), "reason": printable(r)} for k, r in self.failed],
                "coverage": round(self.coverage, 6),
                "oldest_proof": markers.timestamp(self.oldest_proof) if self.oldest_proof
                else None}

    def summary(self) -> str:
        lines = [f"FAILED  {printable(k)}: {printable(r)}" for k, r in self.failed]
        lines += [f"left    {printable(p)}" for p in self.problems]
        oldest = markers.timestamp(self.oldest_proof) if self.oldest_proof else "-"
        lines.append(f"{self.job}  run {self.run_id}: {self.files} object(s) proven, "
                     f"{human_size(self.bytes)} read; {self.proven}/{self.retained} retained "
                     f"objects proven within verify.max_age (coverage {self.coverage:.1%}), "
                     f"oldest proof {oldest}; {len(self.failed)} failed")
        return "\n".join(lines)


@dataclass
class _Run:
    config: Config
    report: VerifyReport
    proofs: Proofs
    budget: int | None
    docker: object = None  # the Docker client, made on first use; False: not reachable
    # What this run proved, by destination and ETag: another key of the same bytes is not read.
    proven: dict[tuple[str, str], Proof] = field(default_factory=dict)

    @property
    def log(self) -> Any:  # loguru's bound logger
        return logger.bind(job=VERIFY_JOB, run_id=self.report.run_id)


def run_verify(config: Config, *, run_id: str | None = None, every: bool = False,
               destination: str | None = None) -> VerifyReport:
    """One verify run. Raises only ConfigError, before doing anything, for an unknown
    `destination`. `every` (--all): no budget."""
    dests = ((config.destination(destination),) if destination is not None
             else config.destinations)
    started = now_utc()
    report = VerifyReport(job=VERIFY_JOB, run_id=run_id or new_run_id(), result=FAILED,
                          exit_code=None, started_at=started, finished_at=started,
                          duration_s=0.0)
    try:
        pgtools.pg_tool("pg_restore")
        proofs = Proofs(config.state_dir)
    except (pgtools.PgToolError, OSError, sqlite3.Error) as exc:
        report.problems.append(f"nothing verified: {exc}")
        report.exit_code, report.message = EXIT_WORK_LEFT, report.problems[0]
        report.coverage = 0.0  # not known: nothing was read
        report.finished_at = now_utc()
        return report
    run = _Run(config, report, proofs, None if every else config.verify.max_bytes_per_run)
    run.log.info(f"{VERIFY_JOB}: run {report.run_id} started")
    held: list[Held] = []
    for dest in dests:
        held += _verify_destination(run, dest)
    return _finish(run, held)


def _verify_destination(run: _Run, dest: Destination) -> list[Held]:
    """Proves what is due in one destination; returns every object it holds (for coverage)."""
    items, complete = _listed(run, dest)
    due = plan.due([i for i, _, _ in items], run.proofs.all(), now_utc(),
                   run.config.verify.max_age_s)
    todo, left = plan.within(due, run.budget, run.report.bytes)
    if left:
        run.report.problems.append(f"{dest.name}: {len(left)} item(s) due left for the next run "
                                   f"({BUDGET_LEFT})")
    by_item = {id(item): (job, dump) for item, job, dump in items}
    busy: set[str] = set()
    unread = 0
    for item in todo:
        job, dump = by_item[id(item)]
        if _copy_proof(run, item):  # its bytes were proven this run under another key
            continue
        if job.prefix in busy or _uploading(run, dest, job):
            busy.add(job.prefix)
            continue
        try:
            if not _prove(run, dest, job, item, dump):
                break
        except Unreadable as exc:
            run.report.problems.append(f"{dest.name}: {printable(item.key)} not read: "
                                       f"{printable(str(exc))}")
            unread += 1
            if unread == MAX_UNREAD:  # S3 gone mid-run: not one line per object
                run.report.problems.append(f"{dest.name}: {MAX_UNREAD} objects not read: the "
                                           f"rest left for the next run")
                break
    for prefix in sorted(busy):
        run.report.problems.append(f"{dest.name}: an upload of {prefix}/ is running: "
                                   f"{UPLOAD_LEFT}")
    held = [h for item, _, _ in items for h in item.objects]
    if complete:  # a prefix not listed keeps its proofs
        run.proofs.forget_gone(dest.name, held)
    return held


def _listed(run: _Run, dest: Destination,
            ) -> tuple[list[tuple[Item, JobConfig, StoredDump | None]], bool]:
    """The items of every job that copies to `dest`, and whether every prefix was listed."""
    items: list[tuple[Item, JobConfig, StoredDump | None]] = []
    complete = True
    for job in (j for j in run.config.jobs.values() if dest in run.config.destinations_of(j)):
        try:
            items += _items(run.config, dest, job)
        except RestoreError:  # the destination holds nothing under the prefix: nothing to prove
            continue
        except s3.S3Error as exc:
            run.report.problems.append(f"{dest.name}: {printable(str(exc))}")
            complete = False
    return items, complete


def _items(config: Config, dest: Destination, job: JobConfig,
           ) -> list[tuple[Item, JobConfig, StoredDump | None]]:
    """What `dest` holds under the job's prefix, as items: the db job's dumps (restore's
    listing, a -Fd directory one item), every other object on its own."""
    held = choose(config, job.name, dest.name).held
    found: list[tuple[Item, JobConfig, StoredDump | None]] = []
    in_dumps: set[str] = set()
    if job.name == config.drill.db_job:
        for dump in restore.dumps_in(config, held, None, dest):
            objects = tuple(Held(dest.name, o.key, o.etag, o.size) for o in dump.objects)
            in_dumps |= {o.key for o in dump.objects}
            found.append((Item(DUMP, dest.name, dump.key, objects), job, dump))
    kind = RECEIPT if job.source.kind == "path" else FILE
    for obj in held.values():
        if obj.key not in in_dumps:
            found.append((Item(kind, dest.name, obj.key,
                               (Held(dest.name, obj.key, obj.etag, obj.size),)), job, None))
    return found


def _uploading(run: _Run, dest: Destination, job: JobConfig) -> bool:
    """Is a sync writing to this prefix now (any process's)? Without Docker here (a user
    outside the docker group), nobody on this host can be running one of ours."""
    if run.docker is None:
        try:
            run.docker = docker_runner.connect()
        except docker_runner.DockerError as exc:
            run.log.info(f"{VERIFY_JOB}: running uploads not checked: {exc}")
            run.docker = False
    if run.docker is False:
        return False
    try:
        return bool(docker_runner.target_containers(run.docker, dest.url(job.prefix)))
    except docker_runner.DockerError:
        return False


def _prove(run: _Run, dest: Destination, job: JobConfig, item: Item,
           dump: StoredDump | None) -> bool:
    """Downloads and proves one item, records its proof; False when the run must stop (no
    room in state_dir). Unreadable: not read now, nothing recorded."""
    root = restore.workdir_root(run.config)
    free = shutil.disk_usage(root).free
    if free < item.size + SPARE_BYTES:
        run.report.problems.append(
            f"{dest.name}: {printable(item.key)} needs {human_size(item.size)} and state_dir has "
            f"{human_size(free)} free: not downloaded, run stopped")
        return False
    local = Path(job.source.location) if item.kind == RECEIPT else None
    with tempfile.TemporaryDirectory(dir=root, prefix="verify-") as tmp:
        if dump is not None:
            why = prove_dump(run.config, dump, Path(tmp))
        else:
            why = prove_object(run.config, dest, item.objects[0], Path(tmp), local,
                               item.key[len(job.prefix) + 1:])
    proof = Proof(not why, why, now_utc(), item.size)
    for held in item.objects:
        run.proofs.record(held, proof, run.report.run_id)
        run.proven[(held.destination, held.etag)] = proof
    run.report.bytes += item.size
    run.report.files += len(item.objects)
    level = "info" if proof.ok else "error"
    getattr(run.log, level)(f"{VERIFY_JOB}: {dest.name} {printable(item.key)} "
                            f"{'proven' if proof.ok else 'FAILED: ' + printable(why)}")
    return True


def _copy_proof(run: _Run, item: Item) -> bool:
    """Records for `item` the proof this run made of the same bytes under another key of its
    destination (same ETag), when every object of it has one; False otherwise."""
    proofs = [run.proven.get((h.destination, h.etag)) for h in item.objects]
    if None in proofs:
        return False
    for held, proof in zip(item.objects, proofs, strict=True):
        assert proof is not None
        run.proofs.record(held, Proof(proof.ok, proof.reason, proof.at, 0), run.report.run_id)
    return True


def _finish(run: _Run, held: list[Held]) -> VerifyReport:
    report = run.report
    cov: Coverage = coverage(held, run.proofs.all(), now_utc(), run.config.verify.max_age_s)
    report.retained, report.proven = cov.total, cov.proven
    report.coverage, report.oldest_proof = cov.ratio, cov.oldest
    several = len(run.config.destinations) > 1
    report.failed = [(f"{h.destination}:{h.key}" if several else h.key, why)
                     for h, why in cov.failed]
    report.errors = len(report.failed)
    report.exit_code = (EXIT_PROOF_FAILED if report.failed else
                        EXIT_WORK_LEFT if report.coverage < 1 or report.problems else EXIT_PROVEN)
    # Work left by the budget is the plan, not a failure; a prefix left because its upload was
    # running is deferred, as an upload that meets a dump being written (no alert); proofs that
    # failed, or a run that could not read what it had to, are failures.
    budget_only = all(BUDGET_LEFT in p for p in report.problems)
    waited = all(BUDGET_LEFT in p or UPLOAD_LEFT in p for p in report.problems)
    report.result = (FAILED if report.failed or not waited else
                     SUCCESS if budget_only else DEFERRED)
    report.finished_at = now_utc()
    report.duration_s = (report.finished_at - report.started_at).total_seconds()
    report.message = (f"{len(report.failed)} object(s) failed their proof"
                      if report.failed else "; ".join(report.problems)
                      or f"{report.files} object(s) proven, coverage {report.coverage:.1%}")
    return report
