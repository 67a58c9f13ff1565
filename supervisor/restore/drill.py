"""The restore drill: prove the newest dumps in S3 restore and hold the data we expect.

each database's newest dump FROM S3 (the destination restore.source chooses) -> download +
verify -> throwaway PostgreSQL container -> its own pg_restore (custom, directory) or psql
(plain, cluster SQL) inside it -> checks -> receipts spot check -> `.last_restore_drill` marker
in THAT destination + one log line + a report naming it.
run_drill never raises for a failed drill; the container is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.models.containers import Container
from loguru import logger

from supervisor.config.load import DRILL_JOB, Config, DrillCheck
from supervisor.containers import engine as docker_runner
from supervisor.containers.engine import DockerError
from supervisor.containers.jobs import instance_of, run_labels
from supervisor.core.clock import now_utc
from supervisor.core.states import FAILED, SUCCESS
from supervisor.core.text import printable
from supervisor.postgres import dumpformat, pgtools
from supervisor.record.report import Report, new_run_id
from supervisor.restore import db as restore
from supervisor.restore.db import Fetched, KeysRefused, RestoreError
from supervisor.restore.source import Source, choose
from supervisor.restore.spotcheck import SpotCheck, spot_check_receipts
from supervisor.storage import markers, s3
from supervisor.storage.destination import Destination

DUMP_MOUNT = "/restore"
# The server's Unix socket directory: a directory of the drill's workdir, mounted here.
SOCKET_DIR = "/ardua-socket"
CLIENT_USER = "postgres"  # psql, pg_restore and pg_isready run as the image's postgres user
MEM_LIMIT = "2g"
PIDS_LIMIT = 256
# The root filesystem is read-only; PGDATA is the image's VOLUME.
_TMPFS = {"/tmp": "rw,noexec,nosuid,nodev,size=64m",
          "/var/run/postgresql": "rw,noexec,nosuid,nodev,size=16m"}
# PID 1 (root, the entrypoint's caps) makes the socket directory the postgres user's, then
# runs the image's entrypoint, which drops to that user.
_SERVER_START = 'chown postgres:postgres "$0" && chmod 0700 "$0" && exec docker-entrypoint.sh "$@"'
_READY = ('pg_isready -q -t 2 -h "$0" -U postgres '
          '&& [ "$(head -n 1 "$PGDATA/postmaster.pid")" = 1 ]')
TIME_LIMIT_HELP = "start-up + drill.timeout x (databases + 1)"
READY_TIMEOUT_S = 120.0
# A plain SQL dump sets owners and grants to the source's roles; the throwaway server creates
# each one it is told is missing (NOLOGIN) and tries again, up to this many.
MAX_MISSING_ROLES = 20
# The postgres image entrypoint starts as root, prepares PGDATA and drops to the postgres user.
_ENTRYPOINT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"]


class DrillFailed(Exception):
    """A step of the drill failed; the message is the reason shown everywhere."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class DrillReport(Report):
    """One drill. `files` counts the receipts sampled, `errors` the failed checks and receipt
    problems; `duration_s` is the whole drill, `rto_s` what a real restore waits through."""

    dump_key: str = ""  # the restored dumps, comma-separated (one per database)
    verified: str = ""
    download_s: float = 0.0
    restore_s: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    receipts: SpotCheck = field(default_factory=SpotCheck)
    marker: str = ""
    skipped: str = ""  # newer dumps passed over, and why
    destination: str = ""  # the destination restored from, where the marker goes
    passed_over: str = ""  # destinations before it, and why they were not used

    @property
    def rto_s(self) -> float:
        """Recovery time measured: download + pg_restore, what a real restore waits through."""
        return self.download_s + self.restore_s

    def fields(self) -> dict[str, object]:
        return {
            "result": self.result,
            "duration_s": f"{self.duration_s:.1f}",
            "rto_s": f"{self.rto_s:.1f}",
            "download_s": f"{self.download_s:.1f}",
            "restore_s": f"{self.restore_s:.1f}",
            "dump_key": printable(self.dump_key),
            "destination": self.destination,
            "bytes": self.bytes,
            "errors": self.errors,
        }

    def gauges(self) -> dict[str, float]:
        return {"rto_s": self.rto_s}

    def final_line(self) -> str:
        return f"{self.job}: run {self.run_id} {'OK' if self.ok else 'FAIL'}: {self.message}"

    def summary(self) -> str:
        lines = [
            f"{self.job}  run {self.run_id}  {'OK' if self.ok else 'FAIL'}",
            f"  destination       {self.destination or '-'}"
            + (f"  ({self.passed_over})" if self.passed_over else ""),
            f"  dump              {printable(self.dump_key) or '-'}  ({self.bytes} B)",
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
        lines += [f"    mismatch        {printable(k)}" for k in r.mismatched]
        lines += [f"    missing locally {printable(k)}" for k in r.missing]
        lines += [f"    not in S3       {printable(k)}" for k in r.not_in_s3]
        lines += [f"    refused key     {k!r}" for k in r.refused]
        if self.skipped:
            lines.append(f"  skipped           {self.skipped}")
        lines.append(f"  marker            {printable(self.marker.strip()) or 'not written'}")
        if self.message:
            lines.append(f"  => {printable(self.message)}")
        return "\n".join(lines)


# -- the throwaway server ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Server:
    """The drill's PostgreSQL, reached over its Unix socket in SOCKET_DIR only (a directory of
    this run, 0700 of the container's postgres user): no TCP port a local user could take first
    or connect to. Every client command runs in the container as its postgres user, never as
    root, and ends by `deadline` (the container's time limit)."""

    container: Container
    password: str
    timeout_s: float
    deadline: float  # time.monotonic()

    @property
    def connect(self) -> list[str]:
        return ["-h", SOCKET_DIR, "-U", "postgres"]

    def run(self, command: list[str], timeout_s: float | None = None) -> docker_runner.ExecResult:
        left = self.deadline - time.monotonic()
        if left <= 1:
            raise DrillFailed(f"the drill's server reached its time limit ({TIME_LIMIT_HELP})")
        return docker_runner.exec_in(
            self.container, command, env={"PGPASSWORD": self.password},
            timeout_s=min(timeout_s or self.timeout_s, left), user=CLIENT_USER,
        )

    def query(self, sql: str, db: str = "postgres") -> str:
        res = self.run(["psql", *self.connect, "-d", pgtools.dbname(db), "-XAtq",
                        "-v", "ON_ERROR_STOP=1", "-c", sql], 300)
        if res.exit_code != 0:
            raise DrillFailed(pgtools.first_error(res.stderr))
        return res.stdout.strip()

    def create_database(self, db: str) -> None:
        if db != "postgres":  # a dump of `postgres` goes back into the server's own
            self.query(f"CREATE DATABASE {_ident(db)}")

    def restrict_key(self) -> str:
        """A fresh \\restrict key when the image's psql has a restricted mode that holds."""
        res = self.run(["psql", "--version"], 60)
        safe = pgtools.restricted_mode_safe(pgtools.version_of(res.stdout))
        return secrets.token_hex(16) if safe else ""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _wait_ready(server: _Server, deadline: float) -> None:
    """Polls pg_isready on the socket until the final server answers: the one that is the
    container's PID 1 (postmaster.pid), not the official image's init-phase server."""
    while True:
        docker_runner.refresh(server.container)
        if server.container.status in ("exited", "dead"):
            raise DrillFailed(f"the PostgreSQL container exited during start-up: "
                              f"{docker_runner.log_tail(server.container)}")
        if server.run(["sh", "-c", _READY, SOCKET_DIR], 10).exit_code == 0:
            return
        if time.monotonic() > deadline:
            raise DrillFailed(f"PostgreSQL was not ready within {READY_TIMEOUT_S:.0f} s: "
                              f"{docker_runner.log_tail(server.container)}")
        time.sleep(0.25)  # poll interval, bounded by the deadline above


def _run_check(server: _Server, check: DrillCheck, databases: list[str]) -> CheckResult:
    if check.database:
        db = check.database
    elif len(databases) == 1:
        db = databases[0]
    else:
        return CheckResult(check.name, False, f"several databases were restored "
                                              f"({', '.join(databases)}): set its `database`")
    sql = check.sql.strip().rstrip(";")
    if check.max_age_s is not None:
        sql = f"SELECT extract(epoch FROM now() - ({sql}))"
    try:
        raw = server.query(sql, db)
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
    config: Config, client: docker.DockerClient, fetched: dict[str, Fetched], workdir: Path,
    report: DrillReport, labels: dict[str, str],
) -> None:
    drill = config.drill
    # A drill killed mid-way (SIGKILL, a crash) leaves its server running: its owner is gone,
    # so it goes first. A live drill's (the daemon's, while one runs by hand) stays.
    docker_runner.reap_orphans(client, DRILL_JOB, instance=instance_of(config), running=True)
    docker_runner.ensure_image(client, drill.image, "drill.image")
    _readable(workdir)
    sockets = workdir / "socket"
    sockets.mkdir(mode=0o700)
    # A random password on top: only the container's postgres user can open the socket.
    password = secrets.token_urlsafe(24)
    spec = docker_runner.Spec(
        image=drill.image,
        command=["bash", "-c", _SERVER_START, SOCKET_DIR, "postgres",
                 "-c", "listen_addresses=", "-c", f"unix_socket_directories={SOCKET_DIR}",
                 "-c", "unix_socket_permissions=0700"],
        mounts=[docker_runner.file_mount(str(workdir), DUMP_MOUNT),
                docker_runner.file_mount(str(sockets), SOCKET_DIR, read_only=False)],
        env={"POSTGRES_PASSWORD": password},
        labels=labels,
        network_mode=drill.network_mode,
        cap_add=_ENTRYPOINT_CAPS,
        mem_limit=MEM_LIMIT,
        pids_limit=PIDS_LIMIT,
    )
    limit = READY_TIMEOUT_S + drill.timeout_s * (len(fetched) + 1)
    with docker_runner.service(client, spec, tmpfs=_TMPFS) as container:
        server = _Server(container, password, drill.timeout_s, time.monotonic() + limit)
        _wait_ready(server, time.monotonic() + READY_TIMEOUT_S)
        for db, dump in fetched.items():
            report.restore_s += _restore_one(server, db, dump)
        for db in fetched:
            tables = int(server.query(pgtools.USER_TABLES_SQL, db))
            name = "schema has tables" + (f" ({db})" if len(fetched) > 1 else "")
            report.checks.append(CheckResult(name, tables > 0, f"{tables} table(s)"))
        report.checks += [_run_check(server, check, list(fetched)) for check in drill.checks]


def _readable(workdir: Path) -> None:
    """The downloads, readable by the container's postgres user through the read-only mount;
    on this host they stay in state_dir/restore (0700, root's)."""
    for path in [workdir, *workdir.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _restore_one(server: _Server, db: str, dump: Fetched) -> float:
    """Restores one fetched dump with the server image's own tools (always the server's major,
    none needed on the host); returns the seconds the restore took."""
    path = f"{DUMP_MOUNT}/{dump.path.name}"
    if dump.format in dumpformat.ARCHIVES:
        listed = server.run(pgtools.list_args(path), 300)
        if listed.exit_code != 0:
            raise DrillFailed(f"{dump.key} is not a readable pg_dump archive: "
                              f"{pgtools.first_error(listed.stderr)}")
        server.create_database(db)
        res = server.run(pgtools.restore_args(
            path, connect=[*server.connect, "-d", pgtools.dbname(db)], jobs=2, clean=False,
            privileges=False))
        _failed_if(res, f"pg_restore of {dump.key}")
        return res.duration_s
    if dump.format == dumpformat.CLUSTER_GZ:  # creates its roles and databases itself
        res = server.run(pgtools.script_args(path, "psql", connect=[*server.connect, "-d",
                                                                    "postgres"], fmt=dump.format))
        errors = pgtools.script_errors(res.stderr)
        if errors:
            raise DrillFailed(f"psql restore of cluster dump {dump.key} failed: {errors[0]}")
        _failed_if(res, f"psql restore of {dump.key}")
        return res.duration_s
    server.create_database(db)
    spent, key = 0.0, server.restrict_key()
    for _ in range(MAX_MISSING_ROLES):
        res = server.run(pgtools.script_args(path, "psql", connect=[
            *server.connect, "-d", pgtools.dbname(db)], fmt=dump.format, restrict_key=key))
        spent += res.duration_s
        missing = pgtools.MISSING_ROLE.search(pgtools.first_error(res.stderr))
        if res.exit_code == 0 or not missing:
            break
        server.query(f"CREATE ROLE {_ident(missing.group(1))} NOLOGIN")  # then from the top
    _failed_if(res, f"psql restore of {dump.key}")
    return spent


def _failed_if(res: docker_runner.ExecResult, what: str) -> None:
    if res.exit_code != 0:
        why = "timed out" if res.exit_code == 124 else pgtools.first_error(res.stderr)
        raise DrillFailed(f"{what} failed (exit {res.exit_code}): {why}")


# -- the drill -----------------------------------------------------------------------------------


def run_drill(
    config: Config, *, client: docker.DockerClient | None = None, run_id: str | None = None,
    rng: random.Random | None = None, destination: str | None = None,
) -> DrillReport:
    """Runs one drill and returns its report. Raises only ConfigError, before doing anything,
    when the config has no drill.db_job or no destination named `destination`. Without one,
    it restores from the destination restore.source.choose picks, and leaves its marker there
    (in the first of the db job's destinations when none answers)."""
    db_job = config.job(config.drill.db_job)
    marker_dest = (config.destination(destination) if destination is not None
                   else config.destinations_of(db_job)[0])
    run_id = run_id or new_run_id()
    started = now_utc()
    report = DrillReport(job=DRILL_JOB, run_id=run_id, result=FAILED, exit_code=None,
                         started_at=started, finished_at=started, duration_s=0.0)
    log = logger.bind(job=DRILL_JOB, run_id=run_id)
    log.info(f"{DRILL_JOB}: run {run_id} started")
    reasons: list[str] = []
    try:
        source = choose(config, db_job.name, destination)
        marker_dest = source.dest
        report.destination, report.passed_over = source.dest.name, "; ".join(source.skipped)
        log.info(f"{DRILL_JOB}: restoring {source.note}")
        reasons += _restore_newest(config, source, client, report,
                                   run_labels(config, DRILL_JOB, run_id))
    except KeysRefused as exc:
        reasons.append(printable(f"{exc}: {'; '.join(exc.lines)}"))
    except (DrillFailed, RestoreError, DockerError, s3.S3Error) as exc:
        reasons.append(printable(str(exc)))
    with contextlib.suppress(s3.S3Error):  # an S3 outage is already a reason above
        report.receipts = spot_check_receipts(config, rng, marker_dest)
    r = report.receipts
    if not r.ok:
        reasons.append(f"receipts spot check: {len(r.mismatched)} mismatched, "
                       f"{len(r.missing)} missing locally of {r.checked} from S3; "
                       f"{len(r.not_in_s3)} not in S3 of {r.checked_local} local"
                       + (f"; {len(r.refused)} key(s) naming no path inside the folder "
                          f"refused" if r.refused else ""))
    return _finish(marker_dest, config.drill_marker_key, report, reasons)


def _restore_newest(
    config: Config, source: Source, client: docker.DockerClient | None,
    report: DrillReport, labels: dict[str, str],
) -> list[str]:
    """Each database's newest dump in the chosen destination (its listing, as restore.source
    made it), fetched, restored and checked into `report`; returns the reasons it failed
    (raises for one that stops the drill)."""
    log = logger.bind(job=DRILL_JOB, run_id=report.run_id)
    reasons: list[str] = []
    dest = source.dest
    listed, future = restore.split_future(restore.dumps_in(config, source.held, None, dest),
                                          now_utc())
    listed, empty = restore.split_empty(listed)
    report.skipped = "; ".join(n for n in (restore.future_note(future),
                                           restore.skipped_note(empty)) if n)
    if report.skipped:
        log.warning(f"{DRILL_JOB}: {report.skipped}")
    chosen = restore.newest_per_database(listed, config.health.databases)
    if missing := [db for db, dump in chosen.items() if dump is None]:
        reasons.append(f"no dump of database {', '.join(missing)} in S3 (destination {dest.name})")
    picked = {db: dump for db, dump in chosen.items() if dump is not None}
    if not picked:
        raise DrillFailed(f"no dumps under {dest.url(restore.db_prefix(config))}")
    report.dump_key = ",".join(dump.key for dump in picked.values())
    with tempfile.TemporaryDirectory(dir=restore.workdir_root(config)) as tmp:
        fetched = {db: restore.fetch_dump(config, dump, Path(tmp))
                   for db, dump in picked.items()}
        for f in fetched.values():
            report.bytes += f.size
            report.download_s += f.seconds
            log.info(f"{DRILL_JOB}: fetched {printable(f.key)} ({f.format}, {f.size} B, "
                     f"{f.verified})")
        report.verified = "; ".join(f.verified for f in fetched.values())
        _restore_and_check(config, client or docker_runner.connect(), fetched, Path(tmp),
                           report, labels)
    return reasons + [f"check '{c.name}' failed: {c.detail}" for c in report.checks if not c.ok]


def _finish(dest: Destination, marker_key: str, report: DrillReport,
            reasons: list[str]) -> DrillReport:
    """The result, and the marker written to `dest` (the destination restored from)."""
    report.result = FAILED if reasons else SUCCESS
    report.finished_at = now_utc()
    report.duration_s = (report.finished_at - report.started_at).total_seconds()
    report.files = report.receipts.checked + report.receipts.checked_local
    report.errors = sum(not c.ok for c in report.checks) + report.receipts.problems
    report.message = "; ".join(reasons) or "restore and all checks passed"
    # Escaped: a key holding a line break would make the one-line marker two.
    body = markers.format_marker(report.finished_at, report.ok, printable(report.dump_key),
                                 report.rto_s)
    try:
        s3.put_text(dest, marker_key, body, "drill marker")
        report.marker = body
    except s3.S3Error as exc:
        report.message += f"; {exc}"
    return report
