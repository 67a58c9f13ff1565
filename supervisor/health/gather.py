"""Reading every signal `status` judges (supervisor.health.verdict.evaluate, pure, judges them): the
dump volume through a read-only listing container, S3 (sentinels, the dumps held, versioning, the
drill marker), the dump container and its go-cron endpoint. Reading a signal never raises: a
failure is recorded in the signal, so the verdict can say what could not be read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime

import docker

from supervisor.config.load import Config
from supervisor.containers import engine as docker_runner
from supervisor.containers import jobs as rclone_containers
from supervisor.core.clock import now_utc
from supervisor.core.states import SUCCESS
from supervisor.health.verdict import Sentinel, Signals, Verdict, evaluate
from supervisor.postgres import dumps, hooks
from supervisor.postgres import gocron as dbbackup
from supervisor.postgres.dumps import DatabaseDumps
from supervisor.record import metrics
from supervisor.record.ledger import Ledger
from supervisor.record.report import new_run_id
from supervisor.storage import markers, s3


def gather(config: Config, client: docker.DockerClient | None = None) -> Signals:
    """Reads every signal; a failure to read one is recorded in it, never raised."""
    found: dict[str, object] = {"dump_job": config.health.dump_job,
                                "metrics": metrics.serving(config)}
    _gather_docker(config, client, found)
    _gather_s3(config, found)
    _gather_push(config, found)
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
    cfg = config.destination()
    try:
        s3.preflight(cfg, next(iter(config.jobs.values())).prefix)
        found["versioning"] = s3.versioning_status(cfg)
        found["sentinels"] = tuple(_read_sentinel(config, name) for name in config.jobs)
        databases: tuple[DatabaseDumps, ...] = found.get("databases", ())  # type: ignore[assignment]
        if any(d.newest for d in databases):
            job = config.job(str(config.health.dump_job))
            held = s3.list_objects(cfg, f"{job.prefix}/{config.health.dump_dir}")
            found["databases"] = tuple(_with_s3(d, held, config.health.dump_dir)
                                       for d in databases)
        if config.drill.db_job in config.jobs:
            _read_drill(config, found)
    except s3.S3Error as exc:
        found["s3_error"] = str(exc)
        found["sentinels"] = tuple(
            Sentinel(j.name, j.prefix, None, "S3 not readable") for j in config.jobs.values())


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
        runs = Ledger(config.state_dir).history(job, 200)
    except (OSError, sqlite3.Error):
        return None
    after = [r for r in runs if r.result == SUCCESS and r.started_at >= dump_end]
    return min(after, key=lambda r: r.started_at).finished_at if after else None


def _with_s3(db: DatabaseDumps, held: dict[str, s3.S3Object], dump_dir: str) -> DatabaseDumps:
    """S3 holds the newest dump: the same key with the same size; for a directory dump, every
    file of it."""
    if db.newest is None:
        return db
    files = db.newest.files or ((db.newest.key, db.newest.size),)
    in_s3 = all((obj := held.get(key[len(dump_dir) + 1:])) is not None and obj.size == size
                for key, size in files)
    return replace(db, in_s3=in_s3)


def _read_sentinel(config: Config, job_name: str) -> Sentinel:
    job = config.job(job_name)
    body = s3.read_text(config.destination(), markers.sentinel_key(job.prefix))
    if body is None:
        return Sentinel(job.name, job.prefix, None)
    try:
        return Sentinel(job.name, job.prefix, markers.parse_sentinel(body))
    except ValueError as exc:
        return Sentinel(job.name, job.prefix, None, f"unreadable .last_success: {exc}")


def _read_drill(config: Config, found: dict[str, object]) -> None:
    # Where the drill writes it (drill.db_job), which need not be health.dump_job.
    body = s3.read_text(config.destination(), config.drill_marker_key)
    if body is None:
        return
    try:
        found["drill"] = markers.parse_marker(body)
    except ValueError as exc:
        found["drill_error"] = str(exc)


def evaluate_status(config: Config, client: docker.DockerClient | None = None) -> Verdict:
    """gather + evaluate: what `status` and the daemon call (each then writes the metrics)."""
    return evaluate(gather(config, client), config.health, now_utc(),
                    config.guard.quiet_period_s)
