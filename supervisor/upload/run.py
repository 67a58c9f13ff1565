"""One upload run, start to finish, to each of the job's destinations:

    once for the job:     preflight each destination -> list the source (each mirror listed
                          meanwhile) -> in-progress checks (a deferral defers the whole run)
    per destination:      deletion guard -> anything to do? -> hard links copied server-side ->
                          sync -> judge -> post-sync check -> sentinel in that bucket

One destination failing (down, wrong key, refused by its guard) ends that destination only; the
others go on, each in its own thread (PARALLEL). run_job never raises for a failed run: it
returns a RunReport that says why, per destination, so the CLI and the daemon treat every
outcome the same way. dry_run walks the same steps read-only (_Job, _Destination).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

import docker
from loguru import logger

from supervisor.config import bwlimit
from supervisor.config.load import Config, JobConfig
from supervisor.config.values import MTIME, SIZE
from supervisor.containers import engine as docker_runner
from supervisor.containers import rclone
from supervisor.containers.engine import ContainerRun, DockerError
from supervisor.containers.jobs import (
    LIST_TIMEOUT_S,
    SYNC_STEP,
    JobContainers,
    Listing,
    instance_of,
    list_source,
)
from supervisor.core.clock import now_utc
from supervisor.core.states import DEFERRED, FAILED, REFUSED, SUCCESS
from supervisor.core.text import printable
from supervisor.postgres import gocron as dbbackup
from supervisor.record.report import DestinationResult, RunReport, new_run_id, worst_result
from supervisor.storage import cryptform, s3
from supervisor.storage.destination import Destination
from supervisor.upload import compare, guard, servercopy
from supervisor.upload.dryrun import DRY_RUN_STEP, DryRun, DryRuns, parse_skipped

# Young files are excluded one by one on the sync's command line; beyond these bounds the run is
# deferred instead (Linux takes ~2 MiB of arguments; a small business writes far fewer receipts
# within one quiet period).
MAX_SKIPPED_YOUNG = 1000
MAX_SKIP_PATTERN_BYTES = 256 * 1024
MAX_NAMED_YOUNG = 20  # in the log line that names the skipped files
# The destinations of a run go on in parallel, a thread each: a dead or hung destination then
# delays no other's copy, and their fixed costs overlap (benchmarks/destinations.py: two
# destinations took 1.14x one in parallel, 1.68x in sequence; docs/design.md).
PARALLEL = True
# Ctrl-C kills a run's containers at once, as a run without threads removes its own (force).
STOP_TIMEOUT_S = 0.0

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


class _Job:
    """The steps a run takes once for the whole job, whatever its destinations: Docker (the
    image, a killed run's leftovers), the source listing, the in-progress checks. Shared by the
    run and its dry run (`dry`), which reaps nothing and records a deferral instead of raising."""

    def __init__(self, config: Config, job: JobConfig, run_id: str,
                 client: docker.DockerClient | None, choice: compare.Choice,
                 force_deletes: bool, dry: bool = False) -> None:
        self.config, self.job, self.run_id, self.choice = config, job, run_id, choice
        self.force_deletes, self.dry = force_deletes, dry
        self.log = logger.bind(job=job.name, run_id=run_id)
        self._client = client
        self.young: list[rclone.ListedFile] = []
        self.listing = Listing([], 0)
        # When the source listing began, to the second S3 keeps: an object the post-sync check
        # finds outside the listing but written since then is a file created after the listing.
        self.listed_at = now_utc()
        self.deferred = ""  # a dry run's: why a real run would be deferred
        self._source: JobContainers | None = None  # the listing's containers
        self.interrupted = False  # Ctrl-C: no destination starts a sync or writes a sentinel

    def containers(self, dest: Destination) -> JobContainers:
        """The run's containers that talk to `dest` (its settings, its writer label)."""
        run_id = f"dryrun-{self.run_id}" if self.dry else self.run_id
        if self._client is None:
            self._client = docker_runner.connect()
        return JobContainers(self.config, self.job, run_id, self._client, dest)

    def prepare(self, dest: Destination) -> None:
        """The image, and (a run only) the containers a killed run of the job left behind."""
        run = self.containers(dest)
        docker_runner.ensure_image(run.client, self.config.rclone.image)
        if self.dry:
            return
        if reaped := docker_runner.reap_orphans(run.client, self.job.name,
                                                instance=run.instance):
            self.log.warning(f"{self.job.name}: removed {reaped} finished container(s) left by "
                             f"a killed run")

    def list_source(self, dest: Destination) -> None:
        self.listed_at = now_utc().replace(microsecond=0)
        self._source = self.containers(dest)
        self.listing = list_source(self._source)

    def in_progress(self) -> None:
        """Step 4's in-progress guards, once for every destination: a deferral defers the run."""
        assert self._source is not None  # after list_source
        try:
            self.young = check_in_progress(self._source, self.listing.files)
        except Deferred as exc:
            if not self.dry:
                raise
            self.deferred = str(exc)
        if self.young and not self.dry:
            _log_young(self._source, self.young)

    @property
    def settled(self) -> list[rclone.ListedFile]:
        return settled_files(self.listing.files, self.young)

    def stop_containers(self) -> None:
        """Ctrl-C while destinations run in threads: only the main thread hears it, so the
        run's containers are stopped here, and each thread ends (removing its container) as
        its container exits."""
        self.interrupted = True
        if self._client is not None:
            docker_runner.stop_own_containers(self._client, self.job.name, STOP_TIMEOUT_S,
                                              instance=instance_of(self.config))


class _Destination:
    """One destination's steps of a run: preflight, its S3 listing, the deletion guard,
    anything to do?, hard links copied server-side, the sync, its verdict, the post-sync check,
    its sentinel. A step that cannot go on raises (Refused, S3Error, DockerError); _each ends
    the destination there with its result (`outcome`), and the others go on. A dry run
    (`dry`: this destination's plan) writes what it meets in the plan and goes on."""

    def __init__(self, run: _Job, dest: Destination, dry: DryRun | None = None) -> None:
        self.run, self.dest, self.dry = run, dest, dry
        self.url = dest.url(run.job.prefix)
        self.log = run.log.bind(destination=dest.name)
        self.mirror: dict[str, s3.S3Object] = {}
        self.copies = servercopy.Outcome()
        self.outcome: DestinationResult | None = None

    @property
    def name(self) -> str:
        return self.dest.name

    def end(self, result: str, message: str, said: bool = False, **counts: Any) -> None:
        """This destination is done: its result, and one log line naming it (DESTINATION=)
        unless the run's own final line says it all (`said`: the whole run ended so)."""
        self.outcome = DestinationResult(self.name, self.url, result, message=message, **counts)
        if self.dry:
            self.dry.error = self.dry.error or message
            return
        if said:
            return
        level = "INFO" if result == SUCCESS else "WARNING" if result == DEFERRED else "ERROR"
        self.log.bind(destination_result=result).log(
            level, f"{self.run.job.name}: {self.name} ({self.url}) {result}: {message}")

    def preflight(self) -> None:
        s3.preflight(self.dest, self.run.job.prefix)

    def list_mirror(self) -> None:
        """The mirror for the guard, after making sure no other sync writes to it."""
        if not self.dry:
            _check_no_sync_running(self.run.containers(self.dest))
        raw = s3.list_objects(self.dest, self.run.job.prefix, raw=True)
        if mixed := cryptform.problem(self.dest, self.run.job.prefix, raw):
            raise Refused(mixed)
        self.mirror = s3.shown(self.dest, raw)

    def walk(self, started: datetime) -> ContainerRun | None:
        """The steps up to the sync; its container's result, or None when none was needed."""
        containers = self.run.containers(self.dest)
        listed = self.run.listing.files
        self.guard(containers, listed)
        if not self.needs_sync(listed):
            return None
        extra = upload_flags(self.run.config, self.run.job, started)
        self.copy(containers, extra)
        return self.sync(containers, extra)

    def guard(self, containers: JobContainers, listed: list[rclone.ListedFile]) -> None:
        """The deletion guard: Refused when it says no (unless --force-deletes)."""
        plan = guard.plan_sync(listed, self.mirror)
        reason = guard.deletion_refusal(plan, self.run.config.guard)
        name = self.run.job.name
        if self.dry:
            self.dry.guard_numbers, self.dry.refusal = plan.numbers(), reason
        elif not reason:
            self.log.info(f"{name}: deletion guard passed: {plan.numbers()}")
        elif self.run.force_deletes:
            self.log.warning(f"{name}: deletion guard overridden by --force-deletes: "
                             f"{reason}; {plan.numbers()}")
        else:
            raise Refused(f"deletion guard: {reason} ({plan.numbers()}) under "
                          f"{containers.target}. Nothing was changed. If this is intended, run "
                          f"once with --force-deletes")

    def needs_sync(self, listed: list[rclone.ListedFile]) -> bool:
        young, choice = self.run.young, self.run.choice
        difference = guard.first_difference(choice.mode, listed, self.mirror,
                                            {f.path for f in young})
        if self.dry:
            self.dry.difference = difference
            return True  # the dry run lists what rclone would do either way
        if difference is None:
            self.log.info(f"{self.run.job.name}: S3 already holds the source's "
                          f"{len(listed) - len(young)} settled file(s) ({choice.reason}): no "
                          f"sync needed, none started")
            return False
        self.log.info(f"{self.run.job.name}: source holds {len(listed)} file(s); syncing "
                      f"({difference}), {choice.reason}")
        return True

    def copy(self, containers: JobContainers, extra: list[str]) -> None:
        """Hard links in S3 as server-side copies instead of uploads (upload.hardlinks). Never
        fails the run: what it does not do, the sync uploads. A dry run only plans them."""
        job = self.run.job
        try:
            plans = servercopy.plan(containers.container, self.run.settled, self.mirror,
                                    min(LIST_TIMEOUT_S, job.timeout_s), self.dest.encrypted)
            if self.dry:
                self.dry.copies = plans
                return
            if plans:
                _check_no_sync_running(containers)  # the seed step writes to the prefix
            self.copies = servercopy.carry_out(containers.container, self.dest, job.prefix,
                                               plans, job.timeout_s, self.log, extra)
        except DockerError as exc:
            if self.dry:
                self.dry.copy_note = f"not planned: {exc}"
            else:
                self.log.warning(f"{job.name}: no server-side copies this run: {exc}")
            return
        if plans:
            out = self.copies
            self.log.info(f"{job.name}: {out.copied} key(s) copied server-side "
                          f"({out.bytes_saved} B not uploaded), {out.seed_files} uploaded to "
                          f"copy from, {out.failed} left to the sync")

    def sync(self, containers: JobContainers, extra: list[str]) -> ContainerRun:
        self.check_interrupted()
        if self.dry:
            step, extra = DRY_RUN_STEP, [*extra, "--dry-run"]
        else:
            step = SYNC_STEP
            _check_no_sync_running(containers)  # again: another sync may have started meanwhile
        job = self.run.job
        command = rclone.sync_command(self.dest, job.prefix, job.timeout_s,
                                      self.run.choice.flags, extra,
                                      exclude=[f.path for f in self.run.young])
        return containers.container(step, command, job.timeout_s)

    def upload(self, started: datetime) -> None:
        """The run's steps at this destination, to its verdict and its sentinel."""
        result = self.walk(started)
        if result is None:
            note = (f"; S3 already matched the source ({self.run.choice.mode} pass), no sync "
                    f"was needed")
            self.succeed(None, note, skipped_symlinks=self.run.listing.skipped_symlinks)
            return
        summary = rclone.parse_log(result.stderr)
        for line in summary.retried_lines:
            self.log.warning(f"{self.run.job.name}: rclone (an attempt it retried): {line}")
        for line in summary.error_lines:
            self.log.warning(f"{self.run.job.name}: rclone: {line}")
        copies = self.copies
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
            self.end(FAILED, verdict.reason, exit_code=result.exit_code, **counts)
        elif problem := self.post_sync_problem():
            self.end(FAILED, problem, exit_code=result.exit_code, **counts)
        else:
            self.succeed(result.exit_code, "", **counts)

    def post_sync_problem(self) -> str:
        """The mirror listed again must match the settled source listing (key and size): rclone
        said it is done, S3 must agree. "" when it does."""
        try:
            after = s3.list_objects(self.dest, self.run.job.prefix)
        except s3.S3Error as exc:
            return f"post-sync check: {self.url}: {exc}"
        difference = post_sync_difference(self.run.choice.mode, self.run.listing.files,
                                          self.run.young, after, self.run.listed_at)
        if difference is None:
            self.log.info(f"{self.run.job.name}: post-sync check: {self.url} holds every "
                          f"settled source file, key and size")
            return ""
        return f"post-sync check: {self.url}: {printable(difference)}"  # keys from the bucket

    def check_interrupted(self) -> None:
        if self.run.interrupted:
            raise DockerError("interrupted by Ctrl-C")

    def succeed(self, exit_code: int | None, note: str, **counts: Any) -> None:
        """Only a destination whose every step succeeded gets its sentinel."""
        self.check_interrupted()
        try:
            body = s3.write_sentinel(self.dest, self.run.job.prefix, now_utc())
        except s3.S3Error as exc:
            self.end(FAILED, str(exc), exit_code=exit_code, **counts)
            return
        message = f"sentinel {body.strip()}{note}"
        if young := self.run.young:
            message += (f"; {len(young)} file(s) changed within guard.quiet_period left "
                        f"for the next run")
        self.end(SUCCESS, message, exit_code=exit_code, sentinel_written=True, **counts)


def post_sync_difference(mode: str, listed: list[rclone.ListedFile],
                         young: list[rclone.ListedFile], mirror: dict[str, s3.S3Object],
                         listed_at: datetime) -> str | None:
    """What keeps the mirror from matching the source listing by key and size (young files
    left out), or None. An object outside the listing that S3 received at or after `listed_at`
    is a file created after the listing, which the sync saw and uploaded: not a difference.
    Nor, in an `mtime` pass, a key S3 received after the file's mtime: `--update` leaves it by
    design (the documented miss of that mode, until the deep pass)."""
    known = {f.path: f for f in listed}
    kept = {rel: obj for rel, obj in mirror.items()
            if rel in known or obj.last_modified < listed_at}
    left = {f.path for f in young}
    if mode == MTIME:
        left |= {rel for rel, obj in kept.items()
                 if rel in known and obj.last_modified >= known[rel].modified}
    return guard.first_difference(SIZE, listed, kept, left)


def _each(destinations: list[_Destination], step: Callable[[_Destination], None],
          parallel: bool) -> None:
    """`step` for every destination still going, each in its own thread (or one after the
    other), every log line bound to its destination; a destination whose step raises ends
    there with its result, and the others go on."""
    live = [d for d in destinations if d.outcome is None]

    def one(d: _Destination) -> None:
        with logger.contextualize(destination=d.name):
            try:
                step(d)
            except Refused as exc:
                d.end(REFUSED, str(exc))
            except (DockerError, s3.S3Error) as exc:
                d.end(FAILED, str(exc))

    if parallel and len(live) > 1:
        with ThreadPoolExecutor(max_workers=len(live)) as pool:
            futures = [pool.submit(one, d) for d in live]
            try:
                wait(futures)
            except KeyboardInterrupt:
                live[0].run.stop_containers()
                raise
        for future in futures:
            future.result()  # a bug in a step is the run's crash, as without threads
    else:
        for d in live:
            one(d)


def _end_all(destinations: list[_Destination], result: str, message: str) -> None:
    """The whole run ended before the destinations' own steps (a deferral, Docker)."""
    for d in destinations:
        if d.outcome is None:
            d.end(result, message, said=True)


def _source_steps(run: _Job, destinations: list[_Destination], parallel: bool) -> None:
    """Preflight every destination; then, once for the job, Docker and the source listing (the
    mirrors listed meanwhile) and the in-progress checks. Raises what ends the whole run
    (Deferred, a DockerError); a destination that fails its own steps has ended by itself."""
    _each(destinations, _Destination.preflight, parallel)
    live = [d for d in destinations if d.outcome is None]
    if not live:
        return
    run.prepare(live[0].dest)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Each mirror is listed for its guard while the source listing container runs.
        mirrors = pool.submit(_each, live, _Destination.list_mirror, parallel)
        try:
            run.list_source(live[0].dest)
        finally:
            mirrors.result()
    run.in_progress()


def run_job(
    config: Config,
    job_name: str,
    *,
    client: docker.DockerClient | None = None,
    force_deletes: bool = False,
    run_id: str | None = None,
    deep: bool = False,
    parallel: bool = PARALLEL,
) -> RunReport:
    """One upload run to each of the job's destinations; its report says how it ended at each
    (record.sinks records it)."""
    job = config.job(job_name)
    run_id = run_id or new_run_id()
    started = now_utc()
    targets = config.destinations_of(job)
    logger.bind(job=job.name, run_id=run_id).info(
        f"{job.name}: run {run_id} started: {job.source} -> "
        f"{', '.join(f'{d.name} {d.url(job.prefix)}' for d in targets)}")
    choice = compare.for_run(config.state_dir, job.name, job.compare, job.deep_every_s, started,
                             deep)
    run = _Job(config, job, run_id, client, choice, force_deletes)
    destinations = [_Destination(run, d) for d in targets]
    try:
        _source_steps(run, destinations, parallel)
    except Deferred as exc:
        _end_all(destinations, DEFERRED, str(exc))
    except (DockerError, s3.S3Error) as exc:
        _end_all(destinations, FAILED, str(exc))
    _each(destinations, lambda d: d.upload(started), parallel)
    return _report(run, started, [d.outcome for d in destinations if d.outcome])


def _report(run: _Job, started: datetime, ends: list[DestinationResult]) -> RunReport:
    """The job's report: SUCCESS only when every destination succeeded, else the worst
    destination's result, its exit code and its last error; counts summed."""
    result = worst_result([e.result for e in ends])
    worst = next(e for e in ends if e.result == result)
    finished = now_utc()
    return RunReport(
        job=run.job.name, run_id=run.run_id, result=result, exit_code=worst.exit_code,
        started_at=started, finished_at=finished,
        duration_s=(finished - started).total_seconds(), compare=run.choice.mode,
        destination=", ".join(e.url for e in ends), message=job_message(ends),
        source_files=len(run.listing.files), skipped_young=len(run.young),
        files=sum(e.files for e in ends), bytes=sum(e.bytes for e in ends),
        deletes=sum(e.deletes for e in ends), errors=sum(e.errors for e in ends),
        retries=sum(e.retries for e in ends),
        copied_server_side=sum(e.copied_server_side for e in ends),
        bytes_saved=sum(e.bytes_saved for e in ends),
        skipped_symlinks=max(e.skipped_symlinks for e in ends),
        last_error=worst.last_error or next((e.last_error for e in ends if e.last_error), ""),
        sentinel_written=all(e.sentinel_written for e in ends), destinations=ends,
    )


def job_message(ends: list[DestinationResult]) -> str:
    """The run's one-line reason (final journal line, ledger, the summary's last line): the
    destination's own with one destination (or one reason for all); else the destinations that
    did not succeed first, each named with its result, reason and rclone's last error."""
    if len({(e.result, e.message) for e in ends}) == 1:
        return ends[0].message
    failed = [f"{e.name} {e.result}: {e.message}"
              + (f" ({_cut(e.last_error)})" if e.last_error and e.last_error not in e.message
                 else "") for e in ends if not e.ok]
    return "; ".join(failed + [f"{e.name}: {e.message}" for e in ends if e.ok])


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def dry_run(config: Config, job_name: str, *, client: docker.DockerClient | None = None,
            force_deletes: bool = False, deep: bool = False) -> DryRuns:
    """`run-once JOB --dry-run`: the run's own steps in read-only mode, one plan per
    destination (see _Job and _Destination)."""
    job = config.job(job_name)
    started = now_utc()
    choice = compare.for_run(config.state_dir, job.name, job.compare, job.deep_every_s, started,
                             deep)
    targets = config.destinations_of(job)
    plans = [DryRun(job.name, d.url(job.prefix) + (f"  ({d.name})" if len(targets) > 1 else ""),
                    force_deletes, compare=choice.mode, compare_reason=choice.reason,
                    quiet_period_s=config.guard.quiet_period_s) for d in targets]
    run = _Job(config, job, new_run_id(), client, choice, force_deletes, dry=True)
    destinations = [_Destination(run, d, plan) for d, plan in zip(targets, plans, strict=True)]
    try:
        _source_steps(run, destinations, parallel=True)
    except DockerError as exc:
        _end_all(destinations, FAILED, str(exc))
    listed = run.listing.files
    for plan in plans:
        plan.source_files, plan.source_bytes = len(listed), sum(f.size for f in listed)
        plan.young, plan.deferred = run.young, run.deferred
    _each(destinations, lambda d: _plan(d, started), parallel=True)
    return DryRuns(plans)


def _plan(d: _Destination, started: datetime) -> None:
    """The dry run at one destination: what `rclone --dry-run` says the sync would do."""
    plan = d.dry
    assert plan is not None
    result = d.walk(started)
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
