"""Reading every signal `status` judges (supervisor.health.verdict.evaluate, pure, judges them): the
dump volume through a read-only listing container, each destination's S3 (sentinels, the dumps
held, versioning, the drill marker), the dump container and its go-cron endpoint, whether
state_dir can record runs. Reading a signal never raises: a failure is recorded in the signal, so
the verdict can say what could not be read.
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import docker

from supervisor.config.load import Config, JobConfig
from supervisor.containers import engine as docker_runner
from supervisor.containers import jobs as rclone_containers
from supervisor.core import schedule
from supervisor.core.clock import now_utc
from supervisor.core.states import SUCCESS
from supervisor.health.verdict import Copy, Sentinel, Signals, Verdict, evaluate
from supervisor.postgres import dumps, hooks
from supervisor.postgres import gocron as dbbackup
from supervisor.postgres.dumps import DatabaseDumps
from supervisor.record import ledger, metrics, proofs
from supervisor.record.report import new_run_id
from supervisor.storage import markers, s3
from supervisor.storage.destination import Destination
from supervisor.storage.markers import Marker

# Less free space than this in state_dir's filesystem and the ledger's next write (SQLite
# grows it a page at a time, its WAL too) or metrics.json may fail: as good as full.
MIN_FREE_BYTES = 1 << 20


def gather(config: Config, client: docker.DockerClient | None = None,
           now: datetime | None = None) -> Signals:
    """Reads every signal; a failure to read one is recorded in it, never raised."""
    found: dict[str, object] = {"dump_job": config.health.dump_job,
                                "metrics": metrics.serving(config),
                                "state_dir_problem": _state_dir_problem(config.state_dir)}
    _gather_docker(config, client, found)
    _gather_s3(config, found)
    _gather_push(config, found)
    _gather_verified(config, found, now or now_utc())
    if "drill" not in found:
        _first_drill(config, found, now or now_utc())
    if config.health.db_health_url:
        try:
            found["cron"] = dbbackup.cron_state(config.health.db_health_url)
        except dbbackup.ProbeError as exc:
            found["cron_error"] = str(exc)
    return Signals(**found)  # type: ignore[arg-type]


def _gather_docker(config: Config, client: docker.DockerClient | None,
                   found: dict[str, object]) -> None:
    health = config.health
    try:
        client = client or docker_runner.connect()
    except docker_runner.DockerError as exc:
        found["dump_error"] = found["container_error"] = str(exc)
        return
    if health.db_container:
        try:
            found["container"] = dbbackup.container_state(client, health.db_container)
        except dbbackup.ProbeError as exc:
            found["container_error"] = str(exc)
    if health.dump_job:
        try:
            docker_runner.ensure_image(client, config.rclone.image)
            listed = rclone_containers.list_source(rclone_containers.JobContainers(
                config, config.job(health.dump_job), f"status-{new_run_id()}", client)).files
            found["databases"] = dumps.by_database(
                ((f.path, f.size, f.modified) for f in listed), health.dump_dir,
                health.databases)
        except docker_runner.DockerError as exc:
            found["dump_error"] = str(exc)


def _gather_s3(config: Config, found: dict[str, object]) -> None:
    """Every destination at once, each read bounded by its own timeouts: a frozen one costs
    status its own timeout, not one per destination."""
    databases: tuple[DatabaseDumps, ...] = found.get("databases", ())  # type: ignore[assignment]
    with ThreadPoolExecutor(max_workers=len(config.destinations),
                            thread_name_prefix="status-s3") as pool:
        read = list(pool.map(lambda dest: _read_copy(config, dest, databases),
                             config.destinations))
    found["copies"] = tuple(copy for copy, _ in read)
    drills = [(marker, dest) for (_, marker), dest in zip(read, config.destinations, strict=True)
              if marker is not None]
    good = [(m, d) for m, d in drills if isinstance(m, Marker)]
    unread = [c.destination for c, _ in read if c.error and any(
        s.job == config.drill.db_job for s in c.sentinels)]
    if good:  # the newest drill of any destination: the drill restores from one of them
        found["drill"], dest = max(good, key=lambda md: md[0].at)  # type: ignore[union-attr]
        found["drill_destination"] = dest.name
    elif drills:
        found["drill_error"] = str(drills[0][0])
    elif unread:  # it may be there: never say "no drill yet" about a copy not read
        found["drill_error"] = f"not read: {', '.join(unread)} could not be read"


def _read_copy(config: Config, dest: Destination, databases: tuple[DatabaseDumps, ...]
               ) -> tuple[Copy, Marker | str | None]:
    """One destination's signals, and its drill record (a Marker, why it is unreadable, or
    None); S3 not readable is recorded in the Copy, never raised."""
    jobs = [j for j in config.jobs.values() if dest in config.destinations_of(j)]
    try:
        s3.preflight(dest, jobs[0].prefix if jobs else None)
        versioning = s3.versioning_status(dest)
        sentinels = tuple(_read_sentinel(dest, job) for job in jobs)
        held: dict[str, bool] = {}
        dump_dir = config.health.dump_dir
        if config.health.dump_job in {j.name for j in jobs} and any(d.newest for d in databases):
            listing = s3.list_objects(dest, f"{config.job(config.health.dump_job).prefix}/"
                                            f"{dump_dir}")
            held = {d.database: _holds(d, listing, dump_dir) for d in databases if d.newest}
        drill = _read_drill(config, dest) if config.drill.db_job in {j.name for j in jobs} \
            else None
    except s3.S3Error as exc:
        return Copy(dest.name, str(exc), tuple(
            Sentinel(j.name, j.prefix, None, "S3 not readable") for j in jobs)), None
    return Copy(dest.name, "", sentinels, versioning, held), drill


def _gather_push(config: Config, found: dict[str, object]) -> None:
    """An error the dump container reported by webhook (daemon.webhook records it), and when
    the dump job's first verified upload after the newest dump ended (the run ledger)."""
    state = hooks.read_state(config.state_dir)
    if state.error_at and state.job == config.health.dump_job:
        found["hook_error_at"] = state.error_at
    databases: tuple[DatabaseDumps, ...] = found.get("databases", ())  # type: ignore[assignment]
    ends = [d.newest.modified for d in databases if d.newest]
    if ends and config.health.dump_job:
        found["dump_uploaded_at"] = _first_upload_after(config, config.health.dump_job,
                                                         max(ends))


def _first_upload_after(config: Config, job: str, dump_end: datetime) -> datetime | None:
    """The end of the first successful run of `job` that started after `dump_end` (its
    sentinel), or None: none yet, or the ledger is not readable here."""
    try:
        reader = ledger.Ledger.reader(config.state_dir)
        runs = reader.history(job, 200) if reader else []
    except (OSError, sqlite3.Error):
        return None
    after = [r for r in runs if r.result == SUCCESS and r.started_at >= dump_end]
    return min(after, key=lambda r: r.started_at).finished_at if after else None


def _holds(db: DatabaseDumps, held: dict[str, s3.S3Object], dump_dir: str) -> bool:
    """S3 holds the newest dump: the same key with the same size; for a directory dump, every
    file of it. Encrypted: the `.bin` key with the size crypt gives the local size (the
    listing is mapped in s3.shown: storage.crypt.plain)."""
    assert db.newest is not None
    files = db.newest.files or ((db.newest.key, db.newest.size),)
    return all((obj := held.get(key[len(dump_dir) + 1:])) is not None and obj.size == size
               for key, size in files)


def _read_sentinel(dest: Destination, job: JobConfig) -> Sentinel:
    body = s3.read_text(dest, markers.sentinel_key(job.prefix))
    if body is None:
        return Sentinel(job.name, job.prefix, None)
    try:
        return Sentinel(job.name, job.prefix, markers.parse_sentinel(body))
    except ValueError as exc:
        return Sentinel(job.name, job.prefix, None, f"unreadable .last_success: {exc}")


def _read_drill(config: Config, dest: Destination) -> Marker | str | None:
    # Where the drill writes it (drill.db_job), which need not be health.dump_job.
    body = s3.read_text(dest, config.drill_marker_key)
    if body is None:
        return None
    try:
        return markers.parse_marker(body)
    except ValueError as exc:
        return str(exc)


def _first_drill(config: Config, found: dict[str, object], now: datetime) -> None:
    """No drill recorded: when the first one is due. Counted from the first run the ledger
    holds (when this installation started working), or from now when it holds none yet; so
    the answer needs no state of its own."""
    if not config.drill.schedule:
        return
    since = _first_recorded_run(config) or now
    found["drill_first_at"] = schedule.next_fire(config.drill.schedule, config.tz, since)
    found["drill_grace_s"] = config.drill.timeout_s


def _gather_verified(config: Config, found: dict[str, object], now: datetime) -> None:
    """What `verify` proved of every object the destinations hold (the "verified" row): only
    once verify is in use (a schedule, or a proof recorded). Proofs read read-only."""
    try:
        known = proofs.read_only(config.state_dir)
    except sqlite3.Error as exc:
        found["verified_error"] = f"proofs in {config.state_dir} not readable: {exc}"
        return
    if known is None and not config.verify.schedule:
        return
    held: list[proofs.Held] = []
    try:
        for dest in config.destinations:
            for job in (j for j in config.jobs.values() if dest in config.destinations_of(j)):
                held += [proofs.Held(dest.name, o.key, o.etag, o.size)
                         for rel, o in s3.list_objects(dest, job.prefix).items()
                         if rel not in markers.MARKER_NAMES]
    except s3.S3Error as exc:
        found["verified_error"] = f"not read: {exc}"
        return
    found["verified"] = proofs.coverage(held, known or {}, now, config.verify.max_age_s)
    found["verified_max_age_s"] = config.verify.max_age_s


def _first_recorded_run(config: Config) -> datetime | None:
    """The start of the oldest run in the ledger, read without writing (status may run where
    state_dir is read-only); None when there is none or it cannot be read."""
    try:
        reader = ledger.Ledger.reader(config.state_dir)
        return reader.first_started() if reader else None
    except (sqlite3.Error, ValueError):
        return None


def _state_dir_problem(state_dir: Path) -> str:
    """Why runs cannot be recorded in state_dir ("" when they can, or it is not made yet):
    read from the filesystem, writing nothing."""
    try:
        if not state_dir.exists():
            return ""
        if not state_dir.is_dir():
            return f"state_dir {state_dir} is not a directory: runs are not being recorded"
        fs = os.statvfs(state_dir)
    except OSError as exc:
        return f"state_dir {state_dir} cannot be read ({exc.strerror}): runs are not being " \
               f"recorded"
    if fs.f_flag & os.ST_RDONLY:
        return f"state_dir {state_dir} is read-only: runs are not being recorded"
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES or (fs.f_files and not fs.f_favail):
        return (f"state_dir {state_dir} is full ({free // 1024} KiB free): runs are not being "
                f"recorded")
    return ""


def evaluate_status(config: Config, client: docker.DockerClient | None = None) -> Verdict:
    """gather + evaluate: what `status` and the daemon call (each then writes the metrics)."""
    now = now_utc()
    return evaluate(gather(config, client, now), config.health, now,
                    config.guard.quiet_period_s)
