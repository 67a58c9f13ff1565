"""One upload run, start to finish: preflight -> list source and S3 -> in-progress checks ->
deletion guard -> anything to do? -> hard links copied server-side -> sync -> judge -> sentinel.

run_job never raises for a failed run: it returns a RunReport that says why, so the CLI and the
daemon treat every outcome the same way. dry_run walks the same steps read-only (_Steps).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import docker
from loguru import logger

from supervisor.config import bwlimit
from supervisor.config.load import Config, JobConfig
from supervisor.containers import engine as docker_runner
from supervisor.containers import rclone
from supervisor.containers.engine import ContainerRun, DockerError
from supervisor.containers.jobs import (
    LIST_TIMEOUT_S,
    SYNC_STEP,
    JobContainers,
    Listing,
    list_source,
)
from supervisor.core.clock import now_utc
from supervisor.core.states import DEFERRED, FAILED, REFUSED, SUCCESS
from supervisor.postgres import gocron as dbbackup
from supervisor.record.report import RunReport, new_run_id
from supervisor.storage import s3
from supervisor.upload import compare, guard, servercopy
from supervisor.upload.dryrun import DRY_RUN_STEP, DryRun, parse_skipped

# Young files are excluded one by one on the sync's command line; beyond these bounds the run is
# deferred instead (Linux takes ~2 MiB of arguments; a small business writes far fewer receipts
# within one quiet period).
MAX_SKIPPED_YOUNG = 1000
MAX_SKIP_PATTERN_BYTES = 256 * 1024
MAX_NAMED_YOUNG = 20  # in the log line that names the skipped files



class Refused(Exception):
    """A safety guard said no. Nothing was launched that could change S3."""


class Deferred(Exception):
    """The source is still being written; nothing was launched, try again later."""


def _check_no_sync_running(run: JobContainers) -> None:
    """Refuses while a sync container writes to the same prefix, whoever started it. Listings
    (of a run, of `status`) do not count: they only read."""
    busy = docker_runner.target_containers(run.client, run.target)
    if busy:
        raise Refused(
            f"a sync to {run.target} is already running (run "
            f"{busy[0].labels.get(docker_runner.LABEL_RUN, busy[0].short_id)}); "
            f"two syncs of one prefix must never run at once"
        )


def skips_young(config: Config, job: JobConfig) -> bool:
    """Does this job sync what has settled and leave younger files for the next run? A plain
    folder (receipts) does. The dump job, and any volume, defers the whole run instead: a
    postgres-backup-local run writes a dump and its daily/weekly/monthly links as one set, and
    half a set in S3 is wrong."""
    return job.source.kind == "path" and job.name != config.health.dump_job


def _young_to_skip(run: JobContainers, listed: list[rclone.ListedFile]) -> list[rclone.ListedFile]:
    """The source files modified within guard.quiet_period: they may still be written. Where
    skips_young, the sync leaves exactly these out on both sides (not uploaded, not deleted);
    otherwise, or when they are all there is or too many to name, raises Deferred."""
    quiet = run.config.guard.quiet_period_s
    recent = guard.recently_modified(listed, now_utc(), quiet)
    if not recent:
        return []
    newest = max(recent, key=lambda f: f.modified)
    what = (f"{len(recent)} source file(s) changed within guard.quiet_period ({quiet:.0f} s), "
            f"e.g. {newest.path} at {newest.mod_time}")
    if not skips_young(run.config, run.job):
        raise Deferred(f"{what}; it may still be written. Nothing was uploaded")
    if len(recent) == len(listed):
        raise Deferred(f"{what}: nothing has settled yet. Nothing was uploaded")
    pattern_bytes = sum(len(rclone.exact_pattern(f.path).encode()) for f in recent)
    if len(recent) > MAX_SKIPPED_YOUNG or pattern_bytes > MAX_SKIP_PATTERN_BYTES:
        raise Deferred(
            f"{what}: too many to leave out of one sync (at most {MAX_SKIPPED_YOUNG} files, "
            f"{MAX_SKIP_PATTERN_BYTES // 1024} KiB of names). Nothing was uploaded"
        )
    return recent


def _check_settled(run: JobContainers, listed: list[rclone.ListedFile]) -> None:
    """Raises Deferred while the dump container reports a backup in progress."""
    health = run.config.health
    if run.job.name != health.dump_job or not health.db_health_url:
        return
    try:
        running = dbbackup.cron_state(health.db_health_url).running
    except dbbackup.ProbeError as exc:
        # The quiet period above still protects a dump in progress.
        logger.bind(job=run.job.name).warning(f"{run.job.name}: {exc}")
        return
    if running:
        raise Deferred(
            f"the dump container reports a backup in progress ({health.db_health_url}); "
            f"nothing was uploaded"
        )


def check_in_progress(
    run: JobContainers, listed: list[rclone.ListedFile]
) -> list[rclone.ListedFile]:
    """Step 4's in-progress guards, for the run and the dry run alike: returns the young files
    the sync leaves out on both sides, or raises Deferred."""
    young = _young_to_skip(run, listed)
    _check_settled(run, listed)
    return young


def settled_files(listed: list[rclone.ListedFile],
                  young: list[rclone.ListedFile]) -> list[rclone.ListedFile]:
    """The listed files but the young ones, which are neither hashed, copied nor synced. By
    path: comparing whole entries against a list was 100,000 x 1,000 comparisons at worst."""
    left_out = {f.path for f in young}
    return [f for f in listed if f.path not in left_out]


def _log_young(run: JobContainers, young: list[rclone.ListedFile]) -> None:
    """One line naming the files left for the next run (the first MAX_NAMED_YOUNG)."""
    names = ", ".join(f.path for f in young[:MAX_NAMED_YOUNG])
    more = f" and {len(young) - MAX_NAMED_YOUNG} more" if len(young) > MAX_NAMED_YOUNG else ""
    log = logger.bind(job=run.job.name, run_id=run.run_id, skipped_young=len(young))
    log.info(
        f"{run.job.name}: leaving {len(young)} file(s) changed within guard.quiet_period "
        f"({run.config.guard.quiet_period_s:.0f} s) for the next run, in S3 neither uploaded "
        f"nor deleted: {names}{more}"
    )


def upload_flags(config: Config, job: JobConfig, now: datetime) -> list[str]:
    """Flags of every container that uploads: the job's bandwidth limit, else rclone's."""
    return bwlimit.flags(job.bwlimit or config.rclone.bwlimit, config.timezone, now)


class _Steps:
    """The steps of one upload run, shared by the run and its dry run (`dry`: the plan being
    filled in). A dry run writes nothing: it reaps no leftovers, seeds and copies nothing, its
    sync is `rclone --dry-run` in a container labelled as a reader (so it never makes a real
    sync refuse), and it writes no sentinel. What would end a run (a deferral, the guard's
    refusal, nothing to sync) ends it by raising; a dry run writes it in the plan and goes on,
    so the plan shows everything the run would meet."""

    def __init__(self, config: Config, job: JobConfig, run_id: str,
                 client: docker.DockerClient | None, choice: compare.Choice,
                 force_deletes: bool, dry: DryRun | None = None) -> None:
        self.config, self.job, self.run_id, self.choice = config, job, run_id, choice
        self.force_deletes, self.dry = force_deletes, dry
        self.dest = config.destination()
        self.log = logger.bind(job=job.name, run_id=run_id)
        self._client = client
        self.young: list[rclone.ListedFile] = []
        self.listing = Listing([], 0)
        self.copies = servercopy.Outcome()

    def walk(self, started: datetime) -> ContainerRun | None:
        """Every step in order; the sync container's result, or None when a run needs none."""
        s3.preflight(self.dest, self.job.prefix)
        run = self.containers()
        with ThreadPoolExecutor(max_workers=1) as pool:
            # S3 is listed for the guard while the source listing container runs.
            mirror_listing = pool.submit(s3.list_objects, self.dest, self.job.prefix)
            self.listing = list_source(run)
            mirror = mirror_listing.result()
        listed = self.listing.files
        self.in_progress(run, listed)
        self.guard(run, listed, mirror)
        if not self.needs_sync(listed, mirror):
            return None
        extra = upload_flags(self.config, self.job, started)
        self.copy(run, settled_files(listed, self.young), mirror, extra)
        return self.sync(run, extra)

    def containers(self) -> JobContainers:
        run_id = f"dryrun-{self.run_id}" if self.dry else self.run_id
        run = JobContainers(self.config, self.job, run_id,
                            self._client or docker_runner.connect())
        docker_runner.ensure_image(run.client, self.config.rclone.image)
        if self.dry:
            return run
        if reaped := docker_runner.reap_orphans(run.client, self.job.name,
                                                instance=run.instance):
            self.log.warning(f"{self.job.name}: removed {reaped} finished container(s) left by "
                             f"a killed run")
        _check_no_sync_running(run)
        return run

    def in_progress(self, run: JobContainers, listed: list[rclone.ListedFile]) -> None:
        try:
            self.young = check_in_progress(run, listed)
        except Deferred as exc:
            if not self.dry:
                raise
            self.dry.deferred = str(exc)
        if self.young and not self.dry:
            _log_young(run, self.young)

    def guard(self, run: JobContainers, listed: list[rclone.ListedFile],
              mirror: dict[str, s3.S3Object]) -> None:
        """The deletion guard: Refused when it says no (unless --force-deletes)."""
        plan = guard.plan_sync(listed, mirror)
        reason = guard.deletion_refusal(plan, self.config.guard)
        if self.dry:
            self.dry.guard_numbers, self.dry.refusal = plan.numbers(), reason
        elif not reason:
            self.log.info(f"{self.job.name}: deletion guard passed: {plan.numbers()}")
        elif self.force_deletes:
            self.log.warning(f"{self.job.name}: deletion guard overridden by --force-deletes: "
                             f"{reason}; {plan.numbers()}")
        else:
            raise Refused(f"deletion guard: {reason} ({plan.numbers()}) under {run.target}. "
                          f"Nothing was changed. If this is intended, run once with "
                          f"--force-deletes")

    def needs_sync(self, listed: list[rclone.ListedFile], mirror: dict[str, s3.S3Object]) -> bool:
        difference = guard.first_difference(self.choice.mode, listed, mirror,
                                            {f.path for f in self.young})
        if self.dry:
            self.dry.difference = difference
            return True  # the dry run lists what rclone would do either way
        if difference is None:
            self.log.info(f"{self.job.name}: S3 already holds the source's "
                          f"{len(listed) - len(self.young)} settled file(s) "
                          f"({self.choice.reason}): no sync needed, none started")
            return False
        self.log.info(f"{self.job.name}: source holds {len(listed)} file(s); syncing "
                      f"({difference}), {self.choice.reason}")
        return True

    def copy(self, run: JobContainers, settled: list[rclone.ListedFile],
             mirror: dict[str, s3.S3Object], extra: list[str]) -> None:
        """Hard links in S3 as server-side copies instead of uploads (upload.hardlinks). Never
        fails the run: what it does not do, the sync uploads. A dry run only plans them."""
        try:
            plans = servercopy.plan(run.container, settled, mirror,
                                    min(LIST_TIMEOUT_S, self.job.timeout_s))
            if self.dry:
                self.dry.copies = plans
                return
            if plans:
                _check_no_sync_running(run)  # the seed step writes to the prefix
            self.copies = servercopy.carry_out(run.container, self.dest, self.job.prefix, plans,
                                               self.job.timeout_s, self.log, extra)
        except DockerError as exc:
            if self.dry:
                self.dry.copy_note = f"not planned: {exc}"
            else:
                self.log.warning(f"{self.job.name}: no server-side copies this run: {exc}")
            return
        if plans:
            out = self.copies
            self.log.info(f"{self.job.name}: {out.copied} key(s) copied server-side "
                          f"({out.bytes_saved} B not uploaded), {out.seed_files} uploaded to "
                          f"copy from, {out.failed} left to the sync")

    def sync(self, run: JobContainers, extra: list[str]) -> ContainerRun:
        if self.dry:
            step, extra = DRY_RUN_STEP, [*extra, "--dry-run"]
        else:
            step = SYNC_STEP
            _check_no_sync_running(run)  # again: another sync may have started meanwhile
        command = rclone.sync_command(self.dest, self.job.prefix, self.job.timeout_s,
                                      self.choice.flags, extra,
                                      exclude=[f.path for f in self.young])
        return run.container(step, command, self.job.timeout_s)


def run_job(
    config: Config,
    job_name: str,
    *,
    client: docker.DockerClient | None = None,
    force_deletes: bool = False,
    run_id: str | None = None,
    deep: bool = False,
) -> RunReport:
    """One upload run; its report says how it ended (record.sinks records it)."""
    job = config.job(job_name)
    run_id = run_id or new_run_id()
    log = logger.bind(job=job.name, run_id=run_id)
    started = now_utc()
    dest = config.destination()
    log.info(f"{job.name}: run {run_id} started: {job.source} -> {dest.url(job.prefix)}")
    choice = compare.for_run(config.state_dir, job.name, job.compare, job.deep_every_s, started,
                             deep)
    steps = _Steps(config, job, run_id, client, choice, force_deletes)
    report = _Reporter(job.name, run_id, started, dest.url(job.prefix), choice.mode)
    try:
        result = steps.walk(started)
    except Refused as exc:
        return report.finish(steps, REFUSED, message=str(exc))
    except Deferred as exc:
        return report.finish(steps, DEFERRED, message=str(exc))
    except (DockerError, s3.S3Error) as exc:
        return report.finish(steps, FAILED, message=str(exc))
    if result is None:
        return report.succeed(steps, None, f"; S3 already matched the source ({choice.mode} "
                                           f"pass), no sync was needed",
                              skipped_symlinks=steps.listing.skipped_symlinks)
    summary = rclone.parse_log(result.stderr)
    for line in summary.retried_lines:
        log.warning(f"{job.name}: rclone (an attempt it retried): {line}")
    for line in summary.error_lines:
        log.warning(f"{job.name}: rclone: {line}")
    copies = steps.copies
    counts = {
        "files": summary.stat("transfers") + copies.seed_files,
        "bytes": summary.stat("bytes") + copies.seed_bytes,
        "copied_server_side": copies.copied,
        "bytes_saved": copies.bytes_saved,
        "deletes": summary.stat("deletes"),
        "errors": max(summary.stat("errors"), summary.error_count),
        "retries": summary.retries,
        "skipped_symlinks": summary.skipped_symlinks,
        "last_error": summary.last_error,
    }
    verdict = rclone.judge_sync(result.exit_code, result.timed_out, summary)
    if not verdict.ok:
        return report.finish(steps, FAILED, result.exit_code, message=verdict.reason, **counts)
    return report.succeed(steps, result.exit_code, "", **counts)


class _Reporter:
    """Builds the run's report; only a run whose every step succeeded writes the sentinel."""

    def __init__(self, job: str, run_id: str, started: datetime, destination: str,
                 mode: str) -> None:
        self.base = {"job": job, "run_id": run_id, "started_at": started,
                     "destination": destination, "compare": mode}

    def finish(self, steps: _Steps, result: str, exit_code: int | None = None,
               **extra: object) -> RunReport:
        finished = now_utc()
        return RunReport(
            result=result, exit_code=exit_code, finished_at=finished,
            duration_s=(finished - self.base["started_at"]).total_seconds(),  # type: ignore[operator]
            source_files=len(steps.listing.files), skipped_young=len(steps.young),
            **self.base, **extra,  # type: ignore[arg-type]
        )

    def succeed(self, steps: _Steps, exit_code: int | None, note: str,
                **counts: object) -> RunReport:
        try:
            body = s3.write_sentinel(steps.dest, steps.job.prefix, now_utc())
        except s3.S3Error as exc:
            return self.finish(steps, FAILED, exit_code, message=str(exc), **counts)
        message = f"sentinel {body.strip()}{note}"
        if steps.young:
            message += (f"; {len(steps.young)} file(s) changed within guard.quiet_period left "
                        f"for the next run")
        return self.finish(steps, SUCCESS, exit_code, sentinel_written=True, message=message,
                           **counts)


def dry_run(config: Config, job_name: str, *, client: docker.DockerClient | None = None,
            force_deletes: bool = False, deep: bool = False) -> DryRun:
    """`run-once JOB --dry-run`: the run's own steps in read-only mode (see _Steps)."""
    job = config.job(job_name)
    started = now_utc()
    plan = DryRun(job.name, config.destination().url(job.prefix), force_deletes,
                  quiet_period_s=config.guard.quiet_period_s)
    choice = compare.for_run(config.state_dir, job.name, job.compare, job.deep_every_s, started,
                             deep)
    plan.compare, plan.compare_reason = choice.mode, choice.reason
    steps = _Steps(config, job, new_run_id(), client, choice, force_deletes, dry=plan)
    try:
        result = steps.walk(started)
    except (DockerError, s3.S3Error) as exc:
        plan.error = str(exc)
        return plan
    listed = steps.listing.files
    plan.source_files, plan.source_bytes = len(listed), sum(f.size for f in listed)
    plan.young = steps.young
    assert result is not None  # a dry run always reaches its sync
    summary = rclone.parse_log(result.stderr)
    verdict = rclone.judge_sync(result.exit_code, result.timed_out, summary)
    if not verdict.ok:
        plan.error = (f"rclone --dry-run: {verdict.reason}: "
                      f"{summary.last_error or 'no error text'}")
    plan.skipped = parse_skipped(result.stderr)
    if result.stderr_dropped:
        plan.log_note = (f"rclone's log was too long to keep whole ({result.stderr_dropped} "
                         f"bytes dropped): the upload and delete lists above are incomplete")
    return plan
