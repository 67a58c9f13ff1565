"""The restore drill: prove the newest dump in S3 restores and holds the data we expect.

newest dump FROM S3 -> download + verify -> throwaway PostgreSQL container -> pg_restore inside it
-> checks -> receipts spot check -> `.last_restore_drill` marker in S3 + one log line + a report.
run_drill never raises for a failed drill; the container is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import secrets
import socket
import sqlite3
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import docker
from docker.errors import DockerException
from docker.models.containers import Container
from loguru import logger
from requests import RequestException

from supervisor import docker_runner, ledger, metrics, rclone, restore, s3
from supervisor.config import DRILL_JOB, Config, DrillCheck
from supervisor.docker_runner import DockerError
from supervisor.pipeline import new_run_id
from supervisor.report import FAILED, SUCCESS, now_utc
from supervisor.restore import RestoreError

if TYPE_CHECKING:
    from loguru import Logger

DUMP_MOUNT = "/restore"
READY_TIMEOUT_S = 120.0
# The postgres image entrypoint starts as root, prepares PGDATA and drops to the postgres user.
_ENTRYPOINT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"]


class DrillFailed(Exception):
    """A step of the drill failed; the message is the reason shown everywhere."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SpotCheck:
    checked: int = 0  # objects sampled in S3
    mismatched: tuple[str, ...] = ()  # sha256 in S3 differs from the local file
    missing: tuple[str, ...] = ()  # in S3, gone from this host
    checked_local: int = 0  # local files sampled that the last upload must have taken
    not_in_s3: tuple[str, ...] = ()  # of those: absent from S3, or another size there
    note: str = ""

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.not_in_s3)

    @property
    def problems(self) -> int:
        return len(self.mismatched) + len(self.missing) + len(self.not_in_s3)


@dataclass
class DrillReport:
    """One drill. Has the fields the run ledger records (job, run_id, result, exit_code,
    started_at, finished_at, duration_s, bytes, files, deletes, errors, message)."""

    run_id: str
    started_at: datetime
    job: str = DRILL_JOB
    result: str = FAILED
    finished_at: datetime | None = None
    duration_s: float = 0.0  # the whole drill
    dump_key: str = ""
    bytes: int = 0
    verified: str = ""
    download_s: float = 0.0
    restore_s: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    receipts: SpotCheck = field(default_factory=SpotCheck)
    marker: str = ""
    message: str = ""
    exit_code: int | None = None
    deletes: int = 0

    @property
    def ok(self) -> bool:
        return self.result == SUCCESS

    @property
    def rto_s(self) -> float:
        """Recovery time measured: download + pg_restore, what a real restore waits through."""
        return self.download_s + self.restore_s

    @property
    def files(self) -> int:
        return self.receipts.checked + self.receipts.checked_local

    @property
    def errors(self) -> int:
        return sum(not c.ok for c in self.checks) + self.receipts.problems

    def fields(self) -> dict[str, object]:
        return {
            "result": self.result,
            "duration_s": f"{self.duration_s:.1f}",
            "rto_s": f"{self.rto_s:.1f}",
            "download_s": f"{self.download_s:.1f}",
            "restore_s": f"{self.restore_s:.1f}",
            "dump_key": self.dump_key,
            "bytes": self.bytes,
            "errors": self.errors,
        }

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        data["rto_s"] = self.rto_s
        return data

    def summary(self) -> str:
        lines = [
            f"{self.job}  run {self.run_id}  {'OK' if self.ok else 'FAIL'}",
            f"  dump              {self.dump_key or '-'}  ({self.bytes} B)",
            f"  verified          {self.verified or '-'}",
            f"  download          {self.download_s:.1f} s",
            f"  pg_restore        {self.restore_s:.1f} s   (RTO {self.rto_s:.1f} s)",
        ]
        lines += [f"  check {'ok  ' if c.ok else 'FAIL'}        {c.name}: {c.detail}"
                  for c in self.checks]
        r = self.receipts
        lines.append(f"  receipts          {r.checked} from S3 + {r.checked_local} local sampled: "
                     f"{len(r.mismatched)} mismatched, {len(r.missing)} missing locally, "
                     f"{len(r.not_in_s3)} not in S3{'  (' + r.note + ')' if r.note else ''}")
        lines += [f"    mismatch        {k}" for k in r.mismatched]
        lines += [f"    missing locally {k}" for k in r.missing]
        lines += [f"    not in S3       {k}" for k in r.not_in_s3]
        lines.append(f"  marker            {self.marker.strip() or 'not written'}")
        if self.message:
            lines.append(f"  => {self.message}")
        return "\n".join(lines)


# -- the `.last_restore_drill` marker: '<UTC ts> OK|FAIL <dump key> <seconds>s' --------------------


@dataclass(frozen=True)
class Marker:
    at: datetime
    ok: bool
    dump_key: str
    seconds: float


def format_marker(when: datetime, ok: bool, dump_key: str, seconds: float) -> str:
    return (f"{when.astimezone(UTC).strftime(s3.SENTINEL_FORMAT)} {'OK' if ok else 'FAIL'} "
            f"{dump_key or '-'} {seconds:.0f}s\n")


def parse_marker(body: str) -> Marker:
    """What format_marker wrote (read back by `status`); ValueError for anything else."""
    parts = body.strip().split(" ")
    if len(parts) != 4 or parts[1] not in ("OK", "FAIL") or not parts[3].endswith("s"):
        raise ValueError(f"not a restore drill record: {body[:80]!r}")
    at = datetime.strptime(parts[0], s3.SENTINEL_FORMAT).replace(tzinfo=UTC)
    return Marker(at, parts[1] == "OK", parts[2], float(parts[3][:-1]))


# -- the throwaway server ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Server:
    container: Container
    port: int
    password: str
    timeout_s: float

    @property
    def connect(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]

    def run(self, command: list[str], timeout_s: float | None = None) -> docker_runner.ExecResult:
        return docker_runner.exec_in(
            self.container, command, env={"PGPASSWORD": self.password},
            timeout_s=timeout_s or self.timeout_s,
        )

    def query(self, sql: str) -> str:
        res = self.run(["psql", *self.connect, "-d", "postgres", "-XAtq",
                        "-v", "ON_ERROR_STOP=1", "-c", sql], 300)
        if res.exit_code != 0:
            raise DrillFailed(restore.first_error(res.stderr))
        return res.stdout.strip()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_ready(server: _Server, deadline: float) -> None:
    """Polls pg_isready over TCP: the image's init phase serves only the unix socket, so a TCP
    answer means the final server is up."""
    while True:
        server.container.reload()
        if server.container.status in ("exited", "dead"):
            raise DrillFailed(f"the PostgreSQL container exited during start-up: "
                              f"{docker_runner.log_tail(server.container)}")
        if server.run(["pg_isready", *server.connect, "-t", "2"], 10).exit_code == 0:
            return
        if time.monotonic() > deadline:
            raise DrillFailed(f"PostgreSQL was not ready within {READY_TIMEOUT_S:.0f} s: "
                              f"{docker_runner.log_tail(server.container)}")
        time.sleep(0.25)  # poll interval, bounded by the deadline above


def _run_check(server: _Server, check: DrillCheck) -> CheckResult:
    sql = check.sql.strip().rstrip(";")
    if check.max_age_s is not None:
        sql = f"SELECT extract(epoch FROM now() - ({sql}))"
    try:
        raw = server.query(sql)
    except DrillFailed as exc:
        return CheckResult(check.name, False, f"query failed: {exc}")
    try:
        value = float(raw)
    except ValueError:
        return CheckResult(check.name, False, f"expected one number, got {raw[:80]!r}")
    if check.max_age_s is not None:
        days, limit = value / 86400, check.max_age_s / 86400
        return CheckResult(check.name, value <= check.max_age_s,
                           f"newest value is {days:.1f} days old (limit {limit:g})")
    low_ok = check.min is None or value >= check.min
    high_ok = check.max is None or value <= check.max
    bounds = " ".join(f"{n} {v:.15g}" for n, v in (("min", check.min), ("max", check.max))
                      if v is not None)
    return CheckResult(check.name, low_ok and high_ok, f"{value:.15g} ({bounds})")


def _restore_and_check(
    config: Config, client: docker.DockerClient, fetched: restore.Fetched, report: DrillReport,
    labels: dict[str, str],
) -> None:
    drill = config.drill
    if drill.network_mode == "host" and not _port_free(drill.port):
        raise DrillFailed(f"port {drill.port} on 127.0.0.1 is in use; set drill.port to a free one")
    docker_runner.ensure_image(client, drill.image, "drill.image")
    # A drill killed mid-way (daemon SIGKILL, reboot) leaves its container: clear it first.
    docker_runner.remove_job_containers(client, DRILL_JOB)
    # A random password rather than trust: with host networking any local user could connect.
    password = secrets.token_urlsafe(24)
    spec = docker_runner.Spec(
        image=drill.image,
        command=["postgres", "-p", str(drill.port), "-c", "listen_addresses=127.0.0.1"],
        mounts=[docker_runner.file_mount(str(fetched.path.parent), DUMP_MOUNT)],
        env={"POSTGRES_PASSWORD": password},
        labels=labels,
        network_mode=drill.network_mode,
        cap_add=_ENTRYPOINT_CAPS,
    )
    with docker_runner.service(client, spec) as container:
        server = _Server(container, drill.port, password, drill.timeout_s)
        _wait_ready(server, time.monotonic() + READY_TIMEOUT_S)
        archive = f"{DUMP_MOUNT}/{fetched.path.name}"
        # The image's own pg_restore: always the server's major, none needed on the host.
        listed = server.run(restore.list_args(archive), 300)
        if listed.exit_code != 0:
            raise DrillFailed(f"{fetched.key} is not a readable pg_dump archive: "
                              f"{restore.first_error(listed.stderr)}")
        res = server.run(restore.restore_args(
            archive, connect=[*server.connect, "-d", "postgres"], jobs=2, clean=False,
            privileges=False,
        ))
        report.restore_s = res.duration_s
        if res.exit_code != 0:
            why = "timed out" if res.exit_code == 124 else restore.first_error(res.stderr)
            raise DrillFailed(f"pg_restore of {fetched.key} failed (exit {res.exit_code}): {why}")
        tables = int(server.query(restore.USER_TABLES_SQL))
        report.checks.append(CheckResult("schema has tables", tables > 0, f"{tables} table(s)"))
        report.checks += [_run_check(server, check) for check in drill.checks]


# -- receipts ------------------------------------------------------------------------------------


def _sha256_local(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def spot_check_receipts(config: Config, rng: random.Random | None = None) -> SpotCheck:
    """Two samples of K receipts. From S3: each object's sha256 against the local file
    ('mismatched', or 'missing' here). From this host: files that already existed when the last
    successful upload started must be in S3 with their size ('not_in_s3'). "Already existed" is
    judged by ctime, which no copy or touch can set back, against that run's start in the ledger
    (recorded before rclone listed the source)."""
    name, k = config.drill.receipts_job, config.drill.receipts_sample
    if not name or k == 0:
        return SpotCheck(note="disabled")
    if name not in config.jobs:
        return SpotCheck(note=f"no job '{name}' configured")
    job = config.jobs[name]
    if job.source.kind != "path":
        return SpotCheck(note=f"source {job.source} is a volume; local files not readable")
    root = Path(job.source.location)
    objects = {rel: obj for rel, obj in s3.list_objects(config.s3, job.prefix).items()
               if rel not in rclone.MARKER_NAMES}
    rng = rng or random.SystemRandom()
    sample = rng.sample(sorted(objects), min(k, len(objects)))
    mismatched, missing = [], []
    for rel in sample:
        local = _sha256_local(root / rel)
        if local is None:
            missing.append(rel)
            continue
        digest = hashlib.sha256()
        for chunk in s3.read_chunks(config.s3, objects[rel].key):
            digest.update(chunk)
        if digest.hexdigest() != local:
            mismatched.append(rel)
    notes = [] if objects else ["no objects under the receipts prefix"]
    since = _last_upload_start(config, name)
    # Younger than guard.quiet_period at that run: left for the next one (pipeline.skips_young).
    older = _files_changed_before(root, since, config.guard.quiet_period_s) if since else {}
    if since is None:
        notes.append(f"no successful {name} in the ledger: local files not checked")
    local_sample = rng.sample(sorted(older), min(k, len(older)))
    not_in_s3 = [rel for rel in local_sample
                 if rel not in objects or objects[rel].size != older[rel]]
    return SpotCheck(len(sample), tuple(mismatched), tuple(missing), len(local_sample),
                     tuple(not_in_s3), "; ".join(notes))


def _last_upload_start(config: Config, job: str) -> datetime | None:
    try:
        run = ledger.Ledger(config.state_dir).last_success(job)
    except (OSError, sqlite3.Error):
        return None
    return run.started_at if run else None


def _files_changed_before(root: Path, cutoff: datetime, quiet_s: float = 0) -> dict[str, int]:
    """Regular files under root (what rclone uploads: no symlinks, not our marker names at the
    top) whose inode last changed before cutoff, modified quiet_s before it -> their size."""
    found: dict[str, int] = {}
    limit = cutoff.timestamp()
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except FileNotFoundError:  # removed while we walk
                continue
            rel = path.relative_to(root).as_posix()
            if (stat.S_ISREG(st.st_mode) and st.st_ctime < limit
                    and st.st_mtime < limit - quiet_s and rel not in rclone.MARKER_NAMES):
                found[rel] = st.st_size
    return found


# -- the drill -----------------------------------------------------------------------------------


def run_drill(
    config: Config, *, client: docker.DockerClient | None = None, run_id: str | None = None,
    rng: random.Random | None = None,
) -> DrillReport:
    """Runs one drill and returns its report. Raises only ConfigError, before doing anything,
    when the config has no drill.db_job."""
    restore.db_prefix(config)
    run_id = run_id or new_run_id()
    report = DrillReport(run_id=run_id, started_at=now_utc())
    log = logger.bind(job=DRILL_JOB, run_id=run_id)
    labels = {docker_runner.LABEL_JOB: DRILL_JOB, docker_runner.LABEL_RUN: run_id}
    log.info(f"{DRILL_JOB}: run {run_id} started")
    reasons: list[str] = []
    try:
        s3.preflight(config.s3)
        dumps = restore.list_dumps(config)
        if not dumps:
            raise DrillFailed(f"no dumps under s3://{config.s3.bucket}/{restore.db_prefix(config)}/")
        report.dump_key = dumps[0].key
        with tempfile.TemporaryDirectory(dir=restore.workdir_root(config)) as tmp:
            fetched = restore.fetch_dump(config, dumps[0].key, Path(tmp))
            report.bytes, report.verified = fetched.size, fetched.verified
            report.download_s = fetched.seconds
            log.info(f"{DRILL_JOB}: fetched {fetched.key} ({fetched.size} B, {fetched.verified})")
            _restore_and_check(config, client or docker_runner.connect(), fetched, report, labels)
        reasons += [f"check '{c.name}' failed: {c.detail}" for c in report.checks if not c.ok]
    except (DrillFailed, RestoreError, DockerError, s3.S3Error) as exc:
        reasons.append(str(exc))
    except (DockerException, RequestException) as exc:
        reasons.append(f"Docker API error: {exc}")
    with contextlib.suppress(s3.S3Error):  # an S3 outage is already a reason above
        report.receipts = spot_check_receipts(config, rng)
    r = report.receipts
    if not r.ok:
        reasons.append(f"receipts spot check: {len(r.mismatched)} mismatched, "
                       f"{len(r.missing)} missing locally of {r.checked} from S3; "
                       f"{len(r.not_in_s3)} not in S3 of {r.checked_local} local")
    return _finish(config, report, reasons, log)


def marker_key(config: Config) -> str:
    return f"{restore.db_prefix(config)}/{rclone.DRILL_MARKER_NAME}"


def _finish(config: Config, report: DrillReport, reasons: list[str], log: Logger) -> DrillReport:
    report.result = FAILED if reasons else SUCCESS
    report.finished_at = now_utc()
    report.duration_s = (report.finished_at - report.started_at).total_seconds()
    report.message = "; ".join(reasons) or "restore and all checks passed"
    body = format_marker(report.finished_at, report.ok, report.dump_key, report.rto_s)
    try:
        s3.put_text(config.s3, marker_key(config), body, "drill marker")
        report.marker = body
    except s3.S3Error as exc:
        report.message += f"; {exc}"
    metrics.write_run(config, report)
    level = "INFO" if report.ok else "ERROR"
    log.bind(**report.fields()).log(
        level, f"{DRILL_JOB}: run {report.run_id} {'OK' if report.ok else 'FAIL'}: {report.message}"
    )
    return report
