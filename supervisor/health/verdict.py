"""`status`: gather the real signals, then judge them with the design's health table.

No single indicator is trusted alone: the newest local dump, whether S3 holds that very dump, the
.last_success sentinels, the dump container and the restore drill each answer one question, and
`evaluate` (pure) combines them into one verdict with monitoring-plugin exit codes.

The S3 side is judged once per destination (a `Copy`): each has its own "S3 has <db>'s dump",
"last success <prefix>/" and versioning rows, and the dump -> upload -> S3 chain is diagnosed per
destination. With several destinations their rows and diagnoses start with the destination's
name (`offsite: ...`); with one (an `[s3]` config) they read as they always did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from supervisor.config.load import HealthConfig
from supervisor.core.clock import now_utc
from supervisor.core.states import CRITICAL, OK, STATUS_EXIT, UNKNOWN, WARNING, rank
from supervisor.core.text import printable
from supervisor.postgres.dumps import DatabaseDumps
from supervisor.postgres.gocron import ContainerState, CronState
from supervisor.record import metrics, proofs
from supervisor.storage import markers
from supervisor.storage.markers import Marker

JSON_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Sentinel:
    job: str
    prefix: str
    at: datetime | None  # None: no .last_success (or an unreadable one, see error)
    error: str = ""


@dataclass(frozen=True)
class Copy:
    """What one destination holds, as read. `error` set: it could not be read, and every
    signal of it is unknown."""

    destination: str = "s3"
    error: str = ""
    sentinels: tuple[Sentinel, ...] = ()  # one per job that copies here
    versioning: str | None = None  # "Enabled", "Suspended", "" = never enabled
    # database -> this destination holds its newest dump (same key, same size); only for a
    # destination of the dump job, and only databases that have a newest dump.
    dumps: dict[str, bool] = field(default_factory=dict)

    def sentinel(self, job: str | None) -> Sentinel | None:
        return next((s for s in self.sentinels if s.job == job), None)


@dataclass(frozen=True)
class Signals:
    """What was observed. An `*_error` string means that signal could not be read."""

    dump_job: str | None = None
    databases: tuple[DatabaseDumps, ...] = ()  # one per database, by name
    dump_error: str = ""
    copies: tuple[Copy, ...] = ()  # one per destination, in the config's order
    container: ContainerState | None = None
    container_error: str = ""
    cron: CronState | None = None
    cron_error: str = ""
    drill: Marker | None = None  # the newest drill record of every destination that has one
    drill_destination: str = ""  # where it was read
    drill_error: str = ""
    # No drill recorded yet: the first scheduled drill (None: drill.schedule is empty), and how
    # long after it a drill may still be running (drill.timeout) before it counts as missed.
    drill_first_at: datetime | None = None
    drill_grace_s: float = 0.0
    state_dir_problem: str = ""  # why runs are not being recorded ("" = writable)
    metrics: metrics.Serving | None = None  # the running daemon's /metrics (None: no daemon)
    hook_error_at: datetime | None = None  # an error webhook not followed by a post-backup
    dump_uploaded_at: datetime | None = None  # the first verified upload after the newest dump
    # What `verify` proved of the objects held (None: verify not in use), or why not read.
    verified: proofs.Coverage | None = None
    verified_max_age_s: float = 0.0
    verified_error: str = ""

    @property
    def several(self) -> bool:
        """More than one destination: rows and diagnoses then name theirs."""
        return len(self.copies) > 1

    def held(self, db: DatabaseDumps) -> bool | None:
        """Every destination of the dump job holds the database's newest dump: False when one
        does not, None when one could not be read (or no destination holds the job)."""
        seen = [c.dumps.get(db.database) for c in self.copies if c.sentinel(self.dump_job)]
        if not seen or False in seen:
            return None if not seen else False
        return None if None in seen else True


@dataclass(frozen=True)
class Check:
    name: str
    state: str
    detail: str


@dataclass(frozen=True)
class Problem:
    state: str  # WARNING, UNKNOWN or CRITICAL: this problem's own severity
    text: str


@dataclass(frozen=True)
class Verdict:
    state: str
    checked_at: datetime
    problems: tuple[Problem, ...]  # worst first, one line each
    checks: tuple[Check, ...]
    signals: Signals = field(repr=False)

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT[self.state]

    @property
    def diagnoses(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.problems)

    @property
    def stalest(self) -> DatabaseDumps | None:
        """The database whose newest dump is oldest: what the one-dump fields report."""
        held = [d for d in self.signals.databases if d.newest]
        return min(held, key=lambda d: d.newest.modified) if held else None  # type: ignore[union-attr]

    def status_line(self) -> str:
        """One line for the systemd STATUS= field and monitoring plugins."""
        if not self.diagnoses:
            return f"{OK}: dumps fresh, in S3, uploads verified"
        more = f" (+{len(self.diagnoses) - 1} more)" if len(self.diagnoses) > 1 else ""
        return f"{self.state}: {self.diagnoses[0]}{more}"

    def render(self) -> str:
        width = max(len(c.name) for c in self.checks) if self.checks else 5
        lines = [f"{'CHECK':<{width}}  {'STATE':<8}  DETAIL"]
        lines += [f"{c.name:<{width}}  {c.state:<8}  {c.detail}" for c in self.checks]
        lines.append("")
        lines += [f"{p.state}: {p.text}" for p in self.problems] or [self.status_line()]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        sig, stalest = self.signals, self.stalest
        return {
            "schema": JSON_SCHEMA_VERSION,
            "checked_at": _iso(self.checked_at),
            "state": self.state,
            "exit_code": self.exit_code,
            "status_line": self.status_line(),
            "diagnoses": list(self.diagnoses),
            "problems": [{"state": p.state, "text": p.text} for p in self.problems],
            "checks": [{"name": c.name, "state": c.state, "detail": c.detail}
                       for c in self.checks],
            "dump": None if stalest is None else {
                "job": sig.dump_job, **self._dump_json(stalest)},
            "databases": [{"database": d.database, **self._dump_json(d)}
                          for d in sig.databases],
            "sentinels": {
                s.job: self._sentinel_json(s) for s in self._worst_sentinels()
            },
            "bucket_versioning": self._worst_versioning(),
            "destinations": [self._copy_json(c) for c in sig.copies],
            "state_dir": sig.state_dir_problem or None,
            "db_container": None if sig.container is None else {
                "status": sig.container.status, "health": sig.container.health},
            "db_cron": None if sig.cron is None else {
                "running": sig.cron.running, "last_exit_status": sig.cron.last_exit_status,
                "last_exit_time": _iso(sig.cron.last_exit_time) if sig.cron.last_exit_time
                else None, "last_stderr": sig.cron.last_stderr},
            "restore_drill": None if sig.drill is None else {
                "at": _iso(sig.drill.at), "age_s": self.age(sig.drill.at), "ok": sig.drill.ok,
                "dump_key": sig.drill.dump_key, "seconds": sig.drill.seconds,
                "destination": sig.drill_destination},
            "restore_drill_first_at": _iso(sig.drill_first_at)
            if sig.drill is None and sig.drill_first_at else None,
        }

    def _worst_sentinels(self) -> list[Sentinel]:
        """Per job, its sentinel in the destination where it is oldest (missing counts as
        oldest): what the one-destination fields and metrics report."""
        worst: dict[str, Sentinel] = {}
        for copy in self.signals.copies:
            for s in copy.sentinels:
                seen = worst.get(s.job)
                if seen is None or (seen.at is not None and (s.at is None or s.at < seen.at)):
                    worst[s.job] = s
        return list(worst.values())

    def _worst_versioning(self) -> str | None:
        found = [c.versioning for c in self.signals.copies]
        if not found or None in found:
            return None
        return next((v for v in found if v != "Enabled"), "Enabled")

    def _sentinel_json(self, s: Sentinel) -> dict[str, object]:
        return {"prefix": s.prefix, "at": _iso(s.at) if s.at else None,
                "age_s": self.age(s.at) if s.at else None}

    def _copy_json(self, c: Copy) -> dict[str, object]:
        return {"name": c.destination, "error": c.error or None,
                "bucket_versioning": c.versioning,
                "sentinels": {s.job: {**self._sentinel_json(s), "error": s.error or None}
                              for s in c.sentinels},
                "dumps_held": dict(c.dumps)}

    def alert_rows(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
        """The diagnoses as (state, text) and the table as (name, state, detail): what the
        alerts read (alerts.rules knows no Verdict)."""
        return ([(p.state, p.text) for p in self.problems],
                [(c.name, c.state, c.detail) for c in self.checks])

    def values(self) -> metrics.StatusValues:
        """The numbers this check exports as metrics."""
        stalest, sig = self.stalest, self.signals
        return metrics.StatusValues(
            code=self.exit_code, at=self.checked_at.timestamp(),
            dump_age_s=self.age(stalest.newest.modified) if stalest and stalest.newest else None,
            dump_in_s3=sig.held(stalest) if stalest else None,
            database_dump_age_s={d.database: self.age(d.newest.modified) if d.newest else None
                                 for d in sig.databases},
            sentinel_age_s={s.job: self.age(s.at) if s.at else None
                            for s in self._worst_sentinels()},
            destination_sentinel_age_s={
                c.destination: {s.job: self.age(s.at) if s.at else None for s in c.sentinels}
                for c in sig.copies},
            destination_has_dump={c.destination: c.dumps.get(stalest.database) if stalest
                                  else None for c in sig.copies if c.sentinel(sig.dump_job)},
            drill_age_s=self.age(sig.drill.at) if sig.drill else None,
            drill_ok=sig.drill.ok if sig.drill else None, dump_to_s3_s=dump_to_s3(sig))

    def _dump_json(self, d: DatabaseDumps) -> dict[str, object]:
        newest, previous = d.newest, d.previous
        return {
            "key": newest.key if newest else None, "size": newest.size if newest else None,
            "modified": _iso(newest.modified) if newest else None,
            "age_s": self.age(newest.modified) if newest else None,
            "in_s3": self.signals.held(d) if newest else None,
            "previous_key": previous.key if previous else None,
            "previous_size": previous.size if previous else None,
        }

    def age(self, when: datetime) -> float:
        return round((self.checked_at - when).total_seconds(), 1)


def unknown_json(reason: str) -> dict[str, object]:
    """What `status --json` prints when nothing could be checked (a broken config)."""
    return {"schema": JSON_SCHEMA_VERSION, "checked_at": _iso(now_utc()), "state": UNKNOWN,
            "exit_code": STATUS_EXIT[UNKNOWN], "status_line": f"{UNKNOWN}: {reason}",
            "diagnoses": [reason], "problems": [{"state": UNKNOWN, "text": reason}],
            "checks": []}


def _iso(when: datetime) -> str:
    return markers.timestamp(when)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {rest % 60:02d}s"


class _Findings:
    """Collects table rows and diagnoses while evaluate() walks the signals. Their text holds
    names from the bucket and the dump volume (keys, the drill record's dump key): escaped
    here, once, for every output (the table, STATUS=, the alerts, --json)."""

    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.diagnoses: list[tuple[str, str]] = []

    def check(self, name: str, state: str, detail: str, diagnosis: str = "") -> None:
        self.checks.append(Check(name, state, printable(detail)))
        if diagnosis:
            self.diagnose(state, diagnosis)

    def diagnose(self, state: str, text: str) -> None:
        text = printable(text)
        if (state, text) not in self.diagnoses:  # e.g. one stale upload seen from each database
            self.diagnoses.append((state, text))


def evaluate(signals: Signals, limits: HealthConfig, now: datetime,
             settle_s: float = 0.0) -> Verdict:
    """The design's health table plus the supporting checks. Pure: no I/O, `now` given.
    A dump modified within `settle_s` (guard.quiet_period) may still be written: its size is
    not judged yet."""
    f = _Findings()
    if signals.state_dir_problem:
        f.check("state_dir", CRITICAL, signals.state_dir_problem, signals.state_dir_problem)
    for copy in signals.copies:
        if copy.error:
            where = f" ({copy.destination})" if signals.several else ""
            f.diagnose(UNKNOWN, f"S3 unreachable{where}: {copy.error}")
    if signals.dump_job:
        _dumps(signals, limits, now, settle_s, f)
    for copy in signals.copies:
        for sentinel in copy.sentinels:
            _sentinel(sentinel, copy, signals, limits, now, f)
    _container(signals, f)
    _drill(signals, limits, now, f)
    for copy in signals.copies:
        _versioning(copy, signals, f)
    _metrics(signals, f)
    _hook_error(signals, f)
    _dump_lag(signals, f)
    _verified(signals, now, f)
    ranked = sorted(f.diagnoses, key=lambda d: -rank(d[0]))
    state = ranked[0][0] if ranked else OK
    return Verdict(state, now, tuple(Problem(level, text) for level, text in ranked
                                     if level != OK), tuple(f.checks), signals)


def _named(copy: Copy, signals: Signals, text: str) -> str:
    """A row or diagnosis of one destination: its name first when there are several."""
    return f"{copy.destination}: {text}" if signals.several else text


def _dumps(signals: Signals, limits: HealthConfig, now: datetime, settle_s: float,
           f: _Findings) -> None:
    """Each database on its own, so a fresh one cannot hide a stale one."""
    where = f"{limits.dump_dir}/"
    if signals.dump_error:
        f.check(f"newest dump ({where})", UNKNOWN, signals.dump_error,
                f"Cannot read the dumps: {signals.dump_error}")
        return
    if not signals.databases:
        f.check(f"newest dump ({where})", CRITICAL, f"no dump in {where}",
                f"No dump at all in {where} of {signals.dump_job}'s source")
        return
    for db in signals.databases:
        _database(db, signals, limits, now, settle_s, f)


def _database(db: DatabaseDumps, signals: Signals, limits: HealthConfig, now: datetime,
              settle_s: float, f: _Findings) -> None:
    """Rows of the design's table for one database: its newest dump's age (and size against
    the dump before it) x each destination has that dump x the upload job's sentinel age
    there."""
    dump = db.newest
    if dump is None:
        f.check(f"dump {db.database} ({limits.dump_dir}/)", CRITICAL, f"no dump of {db.database}",
                f"No dump at all of database {db.database} in {limits.dump_dir}/ "
                f"(health.databases names it)")
        return
    age = (now - dump.modified).total_seconds()
    _newest_dump(db, signals, limits, now, settle_s, age, f)
    for copy in signals.copies:
        sentinel = copy.sentinel(signals.dump_job)
        if sentinel is not None:  # a destination the dump job copies to
            _copy_of_dump(db, copy, sentinel, signals, limits, now, age, f)


def _copy_of_dump(db: DatabaseDumps, copy: Copy, sentinel: Sentinel, signals: Signals,
                  limits: HealthConfig, now: datetime, age: float, f: _Findings) -> None:
    """One destination's "S3 has the dump" row and the chain's diagnosis there."""
    in_s3 = copy.dumps.get(db.database)
    dump_fresh = age <= limits.dump_max_age_s
    if copy.error or in_s3 is None:
        f.check(_named(copy, signals, f"S3 has {db.database}'s dump"), UNKNOWN, "S3 not readable")
        if not dump_fresh:
            f.diagnose(CRITICAL, f"DB backup not producing new data: {db.database}'s newest dump "
                                 f"{_ago(age)} old")
        return
    upload_fresh, waiting = _upload_state(db, in_s3, sentinel, limits, now, age)
    _in_s3(db, copy, signals, in_s3, waiting, f)
    _diagnose_chain(db, copy, signals, limits, age, in_s3, upload_fresh, waiting, f)


def _newest_dump(db: DatabaseDumps, signals: Signals, limits: HealthConfig, now: datetime,
                 settle_s: float, age: float, f: _Findings) -> None:
    """The newest dump's row: fresh enough and not shrunken (age: its age in seconds)."""
    dump = db.newest
    assert dump is not None
    shrunk = _shrunk(db, signals, now, settle_s, limits.min_size_share)
    fresh = age <= limits.dump_max_age_s
    f.check(f"dump {db.database} ({limits.dump_dir}/)", OK if fresh and not shrunk else CRITICAL,
            f"{dump.key}, {dump.size} B{_previous(db)}, {_ago(age)} old "
            f"(limit {_ago(limits.dump_max_age_s)})")
    if shrunk:
        f.diagnose(CRITICAL, f"DB backup producing empty/shrunken dumps: {shrunk}")


def _upload_state(db: DatabaseDumps, in_s3: bool, sentinel: Sentinel, limits: HealthConfig,
                  now: datetime, age: float) -> tuple[bool, bool]:
    """(upload_fresh, waiting): the dump job's sentinel in this destination is within its
    limit; the newest dump (age seconds old), not there, is simply waiting for its upload."""
    dump = db.newest
    assert dump is not None
    last_ok = sentinel.at
    upload_fresh = last_ok is not None and (
        (now - last_ok).total_seconds() <= limits.sentinel_max_age_s)
    # A dump newer than the last verified upload, younger than one upload interval, has simply
    # not had its upload yet: that is not a miss.
    waiting = (not in_s3 and last_ok is not None and dump.modified > last_ok
               and age <= limits.sentinel_max_age_s)
    return upload_fresh, waiting


def _in_s3(db: DatabaseDumps, copy: Copy, signals: Signals, in_s3: bool, waiting: bool,
           f: _Findings) -> None:
    name = _named(copy, signals, f"S3 has {db.database}'s dump")
    if in_s3:
        f.check(name, OK, "same key, same size")
    else:
        f.check(name, OK if waiting else CRITICAL,
                "not yet: newer than the last upload" if waiting else "missing or different size")


def _diagnose_chain(db: DatabaseDumps, copy: Copy, signals: Signals, limits: HealthConfig,
                    age: float, in_s3: bool, upload_fresh: bool, waiting: bool,
                    f: _Findings) -> None:
    """Which link of dump -> upload -> this destination broke, in the design's words (nothing
    when whole)."""
    dump = db.newest
    assert dump is not None
    dump_fresh = age <= limits.dump_max_age_s
    job, dump_age = signals.dump_job, f"{db.database}'s newest dump {_ago(age)} old"
    if dump_fresh and upload_fresh and not in_s3 and not waiting:
        f.diagnose(CRITICAL, _named(copy, signals, f"Upload ran but missed the newest dump of "
                                                   f"{db.database}: {dump.key}"))
    elif dump_fresh and not upload_fresh:
        f.diagnose(CRITICAL, _named(copy, signals, f"Upload failing: {job} has no verified "
                                    f"upload within {_ago(limits.sentinel_max_age_s)}"))
    elif not dump_fresh and upload_fresh and in_s3:  # the dump's fault alone: said once
        f.diagnose(CRITICAL, f"DB backup not producing new data: {dump_age} (pipeline healthy)")
    elif not dump_fresh and upload_fresh:
        f.diagnose(CRITICAL, _named(copy, signals, f"DB backup not producing new data: "
                                    f"{dump_age} (and it is not in S3 either)"))
    elif not dump_fresh:
        f.diagnose(CRITICAL, _named(copy, signals, f"Both dump and upload broken: {dump_age}, "
                                    f"no verified upload within "
                                    f"{_ago(limits.sentinel_max_age_s)}"))


def _previous(db: DatabaseDumps) -> str:
    return f" (previous {db.previous.size} B)" if db.previous else ""


def _shrunk(db: DatabaseDumps, signals: Signals, now: datetime, settle_s: float,
            min_share: float) -> str:
    """Why the newest dump cannot be a whole backup (0 B, or far smaller than the one before
    it), or "". A dump still being written (go-cron running, or modified within settle_s) is
    not judged yet: pg_dump writes it in place under its final name."""
    dump, prev = db.newest, db.previous
    assert dump is not None
    writing = (signals.cron is not None and signals.cron.running) or (
        (now - dump.modified).total_seconds() < settle_s)
    if writing:
        return ""
    before = f"the previous {prev.key} is {prev.size} B" if prev else "no previous dump"
    if dump.size == 0:
        return f"{db.database}'s newest dump {dump.key} is 0 B ({before})"
    if prev and dump.size < min_share * prev.size:
        return (f"{db.database}'s newest dump {dump.key} is {dump.size} B, "
                f"{dump.size / prev.size:.0%} of the previous {prev.key} ({prev.size} B; "
                f"health.min_size_share {min_share:.0%})")
    return ""


def _sentinel(s: Sentinel, copy: Copy, signals: Signals, limits: HealthConfig, now: datetime,
              f: _Findings) -> None:
    name = _named(copy, signals, f"last success {s.prefix}/")
    if copy.error:
        f.check(name, UNKNOWN, "S3 not readable")
        return
    # The dump chain already diagnoses the dump job's stale sentinel, in the design's words.
    diagnose = not (s.job == signals.dump_job and any(d.newest for d in signals.databases))
    age = (now - s.at).total_seconds() if s.at else 0.0
    if s.error:
        state, detail, problem = CRITICAL, s.error, f"{s.job}: {s.error}"
    elif s.at is None:
        state, detail = CRITICAL, "no .last_success"
        problem = f"{s.job} never completed a verified upload"
    else:
        state = CRITICAL if age > limits.sentinel_max_age_s else OK
        detail = f"{_iso(s.at)}, {_ago(age)} ago (limit {_ago(limits.sentinel_max_age_s)})"
        problem = f"{s.job} last succeeded {_ago(age)} ago"
    f.check(name, state, detail, _named(copy, signals, f"Upload failing: {problem}")
            if diagnose and state != OK else "")


def _container(signals: Signals, f: _Findings) -> None:
    if signals.container_error:
        f.check("db-backup container", UNKNOWN, signals.container_error,
                f"Cannot check the dump container: {signals.container_error}")
    elif signals.container is not None:
        c = signals.container
        detail = f"{c.status}{', ' + c.health if c.health else ''}"
        if c.status != "running":
            f.check("db-backup container", CRITICAL, detail,
                    f"DB backup container is {c.status}: no new dumps will be made")
        elif c.health == "unhealthy":
            f.check("db-backup container", WARNING, detail, "DB backup container is unhealthy")
        else:
            f.check("db-backup container", OK, detail)
    if signals.cron_error:
        f.check("db-backup last run", WARNING, signals.cron_error,
                f"Dump container's health endpoint unreachable: {signals.cron_error}")
    elif signals.cron is not None:
        cron = signals.cron
        when = f" at {_iso(cron.last_exit_time)}" if cron.last_exit_time else ""
        now_running = "; a new run is in progress" if cron.running else ""
        if cron.last_exit_status:
            # The run stopped at the first failing database: later ones were not dumped, and
            # the newest file in last/ may be partial.
            error = f": {cron.last_stderr}" if cron.last_stderr else ""
            f.check("db-backup last run", CRITICAL,
                    f"exit {cron.last_exit_status}{when}{error}{now_running}",
                    f"DB backup failing: last dump run exited {cron.last_exit_status}{when}"
                    f"{error}")
        elif cron.running:
            f.check("db-backup last run", OK, "a dump is being written now")
        elif cron.last_exit_status is None:
            f.check("db-backup last run", OK, "no run since the container started")
        else:
            f.check("db-backup last run", OK, f"exit 0{when}")


def _drill(signals: Signals, limits: HealthConfig, now: datetime, f: _Findings) -> None:
    if not signals.dump_job or not signals.copies or all(c.error for c in signals.copies):
        return
    if signals.drill_error:
        f.check("restore drill", WARNING, signals.drill_error,
                f"Restore drill record unreadable: {signals.drill_error}")
        return
    d = signals.drill
    if d is None:
        _no_drill(signals, now, f)
        return
    age = (now - d.at).total_seconds()
    where = f", in {signals.drill_destination}" if signals.several and signals.drill_destination \
        else ""
    detail = (f"{'OK' if d.ok else 'FAIL'} {_ago(age)} ago, {d.dump_key}, "
              f"{d.seconds:.0f} s{where} (limit {_ago(limits.drill_max_age_s)})")
    if not d.ok:
        f.check("restore drill", WARNING, detail,
                f"Last restore drill failed ({d.dump_key}, {_ago(age)} ago)")
    elif age > limits.drill_max_age_s:
        f.check("restore drill", WARNING, detail, f"Restore drill overdue: last {_ago(age)} ago")
    else:
        f.check("restore drill", OK, detail)


def _no_drill(signals: Signals, now: datetime, f: _Findings) -> None:
    """No drill ever recorded: nothing proves yet that the copies restore. Unknown until the
    first scheduled drill (and its drill.timeout) has passed, a warning after that and when
    none is ever scheduled."""
    first = signals.drill_first_at
    if first is None:
        f.check("restore drill", WARNING, "no drill yet, and drill.schedule is empty",
                "Restores are never drilled: no drill recorded and drill.schedule is empty")
    elif (now - first).total_seconds() <= signals.drill_grace_s:
        f.check("restore drill", UNKNOWN, f"no drill yet, first at {_iso(first)}",
                f"No restore drill yet: the first is at {_iso(first)}")
    else:
        f.check("restore drill", WARNING, f"no drill yet, first was due at {_iso(first)}",
                f"Restore drill never ran: the first was due at {_iso(first)}")


def _newest_dump_end(signals: Signals) -> datetime | None:
    ends = [d.newest.modified for d in signals.databases if d.newest]
    return max(ends) if ends else None


def dump_to_s3(signals: Signals) -> float | None:
    """Seconds from the newest dump's end to the sentinel of its first verified upload."""
    end = _newest_dump_end(signals)
    if end is None or signals.dump_uploaded_at is None:
        return None
    return round((signals.dump_uploaded_at - end).total_seconds(), 1)


def _dump_lag(signals: Signals, f: _Findings) -> None:
    """How long the newest dump waited for its copy off the host (no judgement: the dump and
    sentinel rows judge the ages)."""
    lag = dump_to_s3(signals)
    if lag is not None:
        f.check("dump to S3", OK, f"{_ago(lag)} from the newest dump's end to its verified "
                                  f"upload")


def _hook_error(signals: Signals, f: _Findings) -> None:
    """The dump container's own word (its error webhook): CRITICAL at once, until the next
    post-backup (the daemon then clears it) or a dump newer than the error."""
    at = signals.hook_error_at
    if at is None:
        return
    end = _newest_dump_end(signals)
    if end is not None and end > at:
        f.check("db-backup webhook", OK, f"error at {_iso(at)}, a newer dump since")
    else:
        f.check("db-backup webhook", CRITICAL, f"error at {_iso(at)}",
                f"the dump container reported an error at {_iso(at)}")


def _metrics(signals: Signals, f: _Findings) -> None:
    """The daemon's /metrics: a convenience, so a port it could not take is only a warning."""
    serving = signals.metrics
    if serving is None:
        return
    if serving.served:
        f.check("metrics", OK, f"serving /metrics on 127.0.0.1:{serving.port}")
    else:
        f.check("metrics", WARNING, serving.problem, f"metrics: {serving.problem}")


def _versioning(copy: Copy, signals: Signals, f: _Findings) -> None:
    if copy.error:
        return
    name = _named(copy, signals, "bucket versioning")
    if copy.versioning == "Enabled":
        f.check(name, OK, "Enabled")
    else:
        f.check(name, WARNING, copy.versioning or "never enabled",
                _named(copy, signals, "Bucket versioning is off: a wrong sync cannot be undone"))


def _verified(signals: Signals, now: datetime, f: _Findings) -> None:
    """The "verified" row: CRITICAL while a retained object's latest proof failed (naming
    it), WARNING while one has no passing proof younger than verify.max_age."""
    cov = signals.verified
    if cov is None:  # verify not in use, or what it proved could not be read
        if signals.verified_error:
            f.check("verified", UNKNOWN, signals.verified_error,
                    f"Verify coverage unknown: {signals.verified_error}")
        return
    oldest = f", oldest proof {_ago((now - cov.oldest).total_seconds())}" if cov.oldest else ""
    detail = f"{cov.proven}/{cov.total} objects{oldest}"
    if cov.failed:
        keys = ", ".join(f"{h.key}" + (f" ({h.destination})" if signals.several else "")
                         for h, _ in cov.failed[:5])
        more = f" and {len(cov.failed) - 5} more" if len(cov.failed) > 5 else ""
        f.check("verified", CRITICAL, f"{detail}; FAILED: {keys}{more}",
                f"Verify proved {len(cov.failed)} backup object(s) damaged: {keys}{more} "
                f"({cov.failed[0][1]})")
    elif cov.proven < cov.total:
        limit = _ago(signals.verified_max_age_s)
        f.check("verified", WARNING, f"{detail} (limit {limit})",
                f"{cov.total - cov.proven} backup object(s) without a passing proof younger "
                f"than {limit} (verify.max_age): run `ardua-backup verify`")
    else:
        f.check("verified", OK, detail)
