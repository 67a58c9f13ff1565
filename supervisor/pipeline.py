"""One upload run, start to finish: preflight -> list source -> guards -> sync -> judge ->
sentinel.

run_job never raises for a failed run: it returns a RunReport that says why, so the CLI and the
daemon treat every outcome the same way.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import docker
from docker.errors import DockerException
from docker.types import Mount
from loguru import logger
from requests import RequestException

from supervisor import (
    bwlimit,
    compare,
    dbbackup,
    docker_runner,
    guard,
    hardlinks,
    rclone,
    s3,
    servercopy,
)
from supervisor.config import Config, JobConfig
from supervisor.docker_runner import DockerError
from supervisor.report import (
    DEFERRED,
    FAILED,
    REFUSED,
    SUCCESS,
    RunReport,
    new_run_id,
    now_utc,
)

# Read-only container, but it must read every file whatever its owner and mode.
READ_ANY_FILE = ["DAC_READ_SEARCH"]
LIST_TIMEOUT_S = 300.0
LIST_STEP, SYNC_STEP = "list", "sync"
WRITER_STEPS = frozenset({SYNC_STEP, hardlinks.SEED_STEP})  # containers that write to S3


def destination_of(config: Config, job: JobConfig) -> str:
    return f"s3://{config.s3.bucket}/{job.prefix}/"


class Refused(Exception):
    """A safety guard said no. Nothing was launched that could change S3."""


class Deferred(Exception):
    """The source is still being written; nothing was launched, try again later."""


@dataclass
class _Run:
    """What the steps of one run share: config, job, the open Docker client."""

    config: Config
    job: JobConfig
    run_id: str
    client: docker.DockerClient

    def labels(self, step: str) -> dict[str, str]:
        """Every container carries the job (so a killed run's leftovers are reaped) and the run.
        Only the sync writes to S3: it alone carries the writer label LABEL_TARGET, which makes
        a second sync of the prefix refuse and the daemon skip a run. Any other step only reads
        the source and says so (LABEL_READS): `status` lists the dump volume this way every few
        minutes, and that must never block an upload."""
        labels = {
            docker_runner.LABEL_JOB: self.job.name,
            docker_runner.LABEL_RUN: self.run_id,
            docker_runner.LABEL_STEP: step,
        }
        if step in WRITER_STEPS:
            labels[docker_runner.LABEL_TARGET] = destination_of(self.config, self.job)
        else:
            labels[docker_runner.LABEL_READS] = str(self.job.source)
        return labels

    def container(self, step: str, command: list[str], timeout_s: float):
        spec = rclone_spec(
            self.config, command,
            docker_runner.source_mount(self.client, self.job.source, rclone.SOURCE_MOUNT),
            self.labels(step),
        )  # fmt: skip
        return docker_runner.run_oneshot(self.client, spec, timeout_s)


def rclone_spec(
    config: Config, command: list[str], mount: Mount, labels: dict[str, str],
    user: str | None = None,
) -> docker_runner.Spec:
    """An rclone one-shot container: the configured image and network, the S3 settings as
    environment, the credentials file read-only, and `mount` (a job's source, a restore's
    target)."""
    return docker_runner.Spec(
        image=config.rclone.image,
        command=command,
        mounts=[mount, *docker_runner.credentials_mounts(config.s3, rclone.CREDENTIALS_MOUNT)],
        env=rclone.environment(config.s3),
        labels=labels,
        network_mode=config.rclone.network_mode,
        cap_add=READ_ANY_FILE,
        user=user,
    )


def _check_no_sync_running(run: _Run) -> None:
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


def _list_source(run: _Run) -> list[rclone.ListedFile]:
    result = run.container(LIST_STEP, rclone.list_command(), min(LIST_TIMEOUT_S, run.job.timeout_s))
    log = rclone.parse_log(result.stderr)
    if result.exit_code != 0 or log.error_count:
        raise DockerError(
            f"listing source {run.job.source} failed (exit {result.exit_code}): "
            f"{log.last_error or 'no error text'}"
        )
    try:
        return rclone.parse_listing(result.stdout)
    except (ValueError, KeyError, TypeError) as exc:
        raise DockerError(
            f"listing source {run.job.source} gave unreadable output: {exc}"
        ) from None


def list_source(
    config: Config, job: JobConfig, client: docker.DockerClient, run_id: str
) -> list[rclone.ListedFile]:
    """The job's source as rclone sees it, listed in a read-only one-shot container."""
    return _list_source(_Run(config, job, run_id, client))


def _check_settled(run: _Run, listed: list[rclone.ListedFile]) -> None:
    """Raises Deferred while the source may still be written."""
    recent = guard.recently_modified(listed, now_utc(), run.config.guard.quiet_period_s)
    if recent:
        newest = max(recent, key=lambda f: f.modified)
        raise Deferred(
            f"{len(recent)} source file(s) changed within guard.quiet_period "
            f"({run.config.guard.quiet_period_s:.0f} s), e.g. {newest.path} at "
            f"{newest.mod_time}; it may still be written. Nothing was uploaded"
        )
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


def _check_deletions(
    run: _Run, listed: list[rclone.ListedFile], force: bool, mirror: dict[str, s3.S3Object]
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
    run: _Run, listed: list[rclone.ListedFile], mirror: dict[str, s3.S3Object],
    extra: list[str],
) -> servercopy.Outcome:
    """Hard links in S3 as server-side copies instead of uploads (supervisor.hardlinks). Never
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
    """One upload run; its report says how it ended (supervisor.recorder records it)."""
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

    try:
        s3.preflight(config.s3, job.prefix)
        run = _Run(config, job, run_id, client or docker_runner.connect())
        docker_runner.ensure_image(run.client, config.rclone.image)
        if reaped := docker_runner.reap_exited(run.client, job.name):
            log.warning(f"{job.name}: removed {reaped} finished container(s) left by a killed run")
        _check_no_sync_running(run)
        with ThreadPoolExecutor(max_workers=1) as pool:
            # S3 is listed for the guard while the source listing container runs.
            mirror_listing = pool.submit(s3.list_objects, config.s3, job.prefix)
            listed = _list_source(run)
            mirror = mirror_listing.result()
        base["source_files"] = len(listed)
        _check_settled(run, listed)
        _check_deletions(run, listed, force_deletes, mirror)
        extra = upload_flags(config, job, started)
        copies = _copy_same_files(run, listed, mirror, extra)
        log.info(f"{job.name}: source holds {len(listed)} file(s); syncing, {choice.reason}")
        _check_no_sync_running(run)  # again: another sync may have started while we listed
        result = run.container(SYNC_STEP, rclone.sync_command(
            config.s3.bucket, job.prefix, job.timeout_s, choice.flags, extra), job.timeout_s)
    except Refused as exc:
        return finish(REFUSED, message=str(exc))
    except Deferred as exc:
        return finish(DEFERRED, message=str(exc))
    except (DockerError, s3.S3Error) as exc:
        return finish(FAILED, message=str(exc))
    except (DockerException, RequestException) as exc:
        return finish(FAILED, message=f"Docker API error: {exc}")

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
    try:
        body = s3.write_sentinel(config.s3, job.prefix, now_utc())
    except s3.S3Error as exc:
        return finish(FAILED, result.exit_code, message=str(exc), **counts)
    return finish(SUCCESS, result.exit_code, sentinel_written=True,
                  message=f"sentinel {body.strip()}", **counts)
