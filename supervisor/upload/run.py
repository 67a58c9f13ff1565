"""One upload run, start to finish: preflight -> list source -> guards -> sync -> judge ->
sentinel.

run_job never raises for a failed run: it returns a RunReport that says why, so the CLI and the
daemon treat every outcome the same way.
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
from supervisor.containers.engine import DockerError
from supervisor.containers.jobs import (
    LIST_TIMEOUT_S,
    SYNC_STEP,
    JobContainers,
    destination_of,
    list_source,
)
from supervisor.postgres import gocron as dbbackup
from supervisor.record.report import (
    DEFERRED,
    FAILED,
    REFUSED,
    SUCCESS,
    RunReport,
    new_run_id,
    now_utc,
)
from supervisor.storage import s3
from supervisor.upload import compare, guard, servercopy

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
    destination = destination_of(run.config, run.job)
    busy = docker_runner.target_containers(run.client, destination)
    if busy:
        raise Refused(
            f"a sync to {destination} is already running (run "
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


def _check_deletions(
    run: JobContainers, listed: list[rclone.ListedFile], force: bool, mirror: dict[str, s3.S3Object]
) -> None:
    """Raises Refused when the guard says no."""
    plan = guard.plan_sync(listed, mirror)
    log = logger.bind(job=run.job.name, run_id=run.run_id)
    reason = guard.deletion_refusal(plan, run.config.guard)
    if not reason:
        log.info(f"{run.job.name}: deletion guard passed: {plan.numbers()}")
        return
    if force:
        log.warning(f"{run.job.name}: deletion guard overridden by --force-deletes: {reason}; "
                    f"{plan.numbers()}")
        return
    raise Refused(
        f"deletion guard: {reason} ({plan.numbers()}) under "
        f"{destination_of(run.config, run.job)}. Nothing was changed. If this is "
        f"intended, run once with --force-deletes"
    )


def upload_flags(config: Config, job: JobConfig, now: datetime) -> list[str]:
    """Flags of every container that uploads: the job's bandwidth limit, else rclone's."""
    return bwlimit.flags(job.bwlimit or config.rclone.bwlimit, config.timezone, now)


def _copy_same_files(
    run: JobContainers, listed: list[rclone.ListedFile], mirror: dict[str, s3.S3Object],
    extra: list[str],
) -> servercopy.Outcome:
    """Hard links in S3 as server-side copies instead of uploads (upload.hardlinks). Never
    fails the run: what it does not do, the sync uploads."""
    log = logger.bind(job=run.job.name, run_id=run.run_id)
    try:
        plans = servercopy.plan(run.container, listed, mirror,
                                min(LIST_TIMEOUT_S, run.job.timeout_s))
        if plans:
            _check_no_sync_running(run)  # the seed step writes to the prefix
        outcome = servercopy.carry_out(run.container, run.config.s3, run.job.prefix, plans,
                                       run.job.timeout_s, log, extra)
    except DockerError as exc:
        log.warning(f"{run.job.name}: no server-side copies this run: {exc}")
        return servercopy.Outcome()
    if plans:
        log.info(f"{run.job.name}: {outcome.copied} key(s) copied server-side "
                 f"({outcome.bytes_saved} B not uploaded), {outcome.seed_files} uploaded to "
                 f"copy from, {outcome.failed} left to the sync")
    return outcome


def run_job(
    config: Config,
    job_name: str,
    *,
    client: docker.DockerClient | None = None,
    force_deletes: bool = False,
    run_id: str | None = None,
    deep: bool = False,
) -> RunReport:
    """One upload run; its report says how it ended (supervisor.record.recorder records it)."""
    job = config.job(job_name)
    run_id = run_id or new_run_id()
    log = logger.bind(job=job.name, run_id=run_id)
    started = now_utc()
    destination = destination_of(config, job)
    log.info(f"{job.name}: run {run_id} started: {job.source} -> {destination}")
    choice = compare.for_run(config.state_dir, job.name, job.compare, job.deep_every_s, started,
                             deep)
    base = {"job": job.name, "run_id": run_id, "started_at": started, "destination": destination,
            "compare": choice.mode}

    def finish(result: str, exit_code: int | None = None, **extra: object) -> RunReport:
        finished = now_utc()
        return RunReport(
            result=result, exit_code=exit_code, finished_at=finished,
            duration_s=(finished - started).total_seconds(), **base, **extra,  # type: ignore[arg-type]
        )

    young: list[rclone.ListedFile] = []

    def succeed(exit_code: int | None, note: str, **counts: object) -> RunReport:
        """Only a run whose every step succeeded writes the sentinel."""
        try:
            body = s3.write_sentinel(config.s3, job.prefix, now_utc())
        except s3.S3Error as exc:
            return finish(FAILED, exit_code, message=str(exc), **counts)
        message = f"sentinel {body.strip()}{note}"
        if young:
            message += (f"; {len(young)} file(s) changed within guard.quiet_period left for the "
                        f"next run")
        return finish(SUCCESS, exit_code, sentinel_written=True, message=message, **counts)

    try:
        s3.preflight(config.s3, job.prefix)
        run = JobContainers(config, job, run_id, client or docker_runner.connect())
        docker_runner.ensure_image(run.client, config.rclone.image)
        if reaped := docker_runner.reap_orphans(run.client, job.name, instance=run.instance):
            log.warning(f"{job.name}: removed {reaped} finished container(s) left by a killed run")
        _check_no_sync_running(run)
        with ThreadPoolExecutor(max_workers=1) as pool:
            # S3 is listed for the guard while the source listing container runs.
            mirror_listing = pool.submit(s3.list_objects, config.s3, job.prefix)
            listing = list_source(run)
            mirror = mirror_listing.result()
        listed = listing.files
        base["source_files"] = len(listed)
        young = check_in_progress(run, listed)
        base["skipped_young"] = len(young)
        _check_deletions(run, listed, force_deletes, mirror)
        if young:
            _log_young(run, young)
        difference = guard.first_difference(choice.mode, listed, mirror, {f.path for f in young})
        if difference is None:
            log.info(f"{job.name}: S3 already holds the source's {len(listed) - len(young)} "
                     f"settled file(s) ({choice.reason}): no sync needed, none started")
            return succeed(None, f"; S3 already matched the source ({choice.mode} pass), no "
                                 f"sync was needed", skipped_symlinks=listing.skipped_symlinks)
        extra = upload_flags(config, job, started)
        copies = _copy_same_files(run, settled_files(listed, young), mirror, extra)
        log.info(f"{job.name}: source holds {len(listed)} file(s); syncing ({difference}), "
                 f"{choice.reason}")
        _check_no_sync_running(run)  # again: another sync may have started while we listed
        command = rclone.sync_command(config.s3.bucket, job.prefix, job.timeout_s, choice.flags,
                                      extra, exclude=[f.path for f in young])
        result = run.container(SYNC_STEP, command, job.timeout_s)
    except Refused as exc:
        return finish(REFUSED, message=str(exc))
    except Deferred as exc:
        return finish(DEFERRED, message=str(exc))
    except (DockerError, s3.S3Error) as exc:
        return finish(FAILED, message=str(exc))

    summary = rclone.parse_log(result.stderr)
    for line in summary.error_lines:
        log.warning(f"{job.name}: rclone: {line}")
    counts = {
        "files": summary.stat("transfers") + copies.seed_files,
        "bytes": summary.stat("bytes") + copies.seed_bytes,
        "copied_server_side": copies.copied,
        "bytes_saved": copies.bytes_saved,
        "deletes": summary.stat("deletes"),
        "errors": max(summary.stat("errors"), summary.error_count),
        "skipped_symlinks": summary.skipped_symlinks,
        "last_error": summary.last_error,
    }
    verdict = rclone.judge_sync(result.exit_code, result.timed_out, summary)
    if not verdict.ok:
        return finish(FAILED, result.exit_code, message=verdict.reason, **counts)
    return succeed(result.exit_code, "", **counts)
