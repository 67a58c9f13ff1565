"""`ardua-backup run`: the long-running scheduler that replaces the backup lines of the crontab.

Why a small loop of our own rather than APScheduler 3: the parts a scheduler library would give us
are the ones we must replace anyway. Its CronTrigger is wrong across DST (so we would write a
cronsim-backed trigger), its misfire/coalesce bookkeeping lives in memory or a job store of its own
while catch-up must come from our run ledger, and its max_instances only sees runs of this process,
not a container left running by a predecessor killed with SIGKILL. What remains is one loop: wait
for the earliest next fire (cronsim), start due jobs on worker threads, repeat. Owning it also makes
the clock injectable, lets signals wake the wait at once, and caps every wait at the watchdog
interval so WATCHDOG=1 keeps flowing.

Each job has a cursor: the instant up to which its fires were handled. At start-up it is the start
of the job's last completed run (catch-up, see supervisor.core.schedule); afterwards the time of the
previous pass. A job is never started while its previous run is alive here, nor while a sync to
its destination is running, whoever started it (the writer label ardua-backup.target=s3://BUCKET/
PREFIX/, e.g. left by a predecessor killed with SIGKILL): two syncs of one prefix must never
overlap, while another installation's job of the same name on the same engine writes elsewhere
and must not block ours. Read-only listings (`status` lists the dump volume every few minutes)
carry no writer label. The drill, which writes to no prefix, checks its own job label on this
installation's containers only (ardua-backup.instance, from state_dir).
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loguru import logger

from supervisor.alerts.alerter import Alerter
from supervisor.config import load as config_module
from supervisor.config.load import Config, ConfigError
from supervisor.core.redact import redact
from supervisor.core.retry import retrying
from supervisor.core.schedule import missed_fire, next_fire
from supervisor.core.states import DEFERRED, EXIT_CONFIG, FAILED
from supervisor.daemon import webhook
from supervisor.daemon.health import Check, HealthReads
from supervisor.daemon.notify import Notifier
from supervisor.record import metrics, sinks
from supervisor.record.ledger import Ledger
from supervisor.record.report import Report
from supervisor.record.sinks import Recording, Sinks
from supervisor.storage import markers

MAX_WAIT_S = 60.0  # re-evaluate at least every minute, so wall-clock jumps are noticed
CONTAINER_STOP_S = 10.0

T = TypeVar("T")
RunJob = Callable[..., Report]  # run_job(config, job_name, *, run_id=...) -> RunReport


class Clock(Protocol):
    def now(self) -> datetime: ...

    def wait(self, wake: threading.Event, until: datetime, max_s: float) -> None:
        """Block until ``until``, at most ``max_s`` seconds, or until ``wake`` is set."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, wake: threading.Event, until: datetime, max_s: float) -> None:
        wake.wait(max(0.0, min((until - self.now()).total_seconds(), max_s)))


class Containers(Protocol):
    """The daemon's own container calls (the pipeline makes the rest)."""

    def running(self, config: Config, job: str) -> bool: ...

    def stop(self, config: Config, job: str, timeout_s: float) -> None: ...


@dataclass
class _JobState:
    cursor: datetime | None
    worker: threading.Thread | None = None
    started_at: datetime | None = None
    retry_at: datetime | None = None  # a deferred run (dump still being written) retries then

    @property
    def busy(self) -> bool:
        # A worker that is reporting its own end (STATUS after the ledger row) is done.
        worker = self.worker
        return worker is not None and worker.is_alive() and worker is not threading.current_thread()


@dataclass
class Daemon:
    config_path: Path
    run_job: RunJob
    containers: Containers
    preflight: Callable[[Config], None]
    clock: Clock = field(default_factory=SystemClock)
    notifier: Notifier = field(default_factory=Notifier)
    load: Callable[[Path], Config] = config_module.load
    container_stop_s: float = CONTAINER_STOP_S
    # The `status` verdict, for STATUS=, the metrics and the alerts; None in tests that only
    # exercise the scheduler.
    check_health: Check | None = None

    def __post_init__(self) -> None:
        self.wake = threading.Event()
        self._reload = threading.Event()
        self._stop = threading.Event()
        self._jobs: dict[str, _JobState] = {}
        self._problem = ""  # shown first in STATUS until resolved (failed reload, preflight)
        self._next_check: datetime | None = None  # the next alerts.check_every verdict
        self.config: Config
        self.ledger: Ledger
        self.sinks: Sinks
        self.alerter: Alerter | None = None
        self.health = HealthReads(self.check_health, lambda: (self.config, self.sinks),
                                  lambda: self.notifier.send(STATUS=self.status()))
        self.push = webhook.Push(self.wake.set, self.health.request)  # postgres-backup-local's

    # -- signals (handlers only set flags: everything else happens on the loop thread)

    def request_reload(self) -> None:
        self._reload.set()
        self.wake.set()

    def request_stop(self) -> None:
        self._stop.set()
        self.wake.set()

    # -- life cycle

    def start(self) -> None:
        """Load the config (ConfigError propagates), check Docker and S3, then READY=1."""
        self.config = self.load(self.config_path)
        self.ledger = Ledger(self.config.state_dir)
        for run in self.ledger.mark_interrupted():
            logger.bind(job=run.job, run_id=run.run_id).warning(
                "run {} of {} started {} never finished (daemon killed?)", run.run_id, run.job,
                run.started_at.isoformat())
        self._configure(self.config)
        for name in self.config.scheduled:
            # An interrupted run did not finish its sync: count from the run before it.
            last = self.ledger.last_completed(name)
            self._jobs[name] = _JobState(cursor=last.started_at if last else None)
        try:
            self.preflight(self.config)
            self._problem = ""
        except Exception as exc:
            # Runs will fail with their own clear errors; staying up lets them recover.
            self._problem = f"preflight failed: {exc}"
            logger.error("{}; starting anyway, runs will fail until this is fixed", self._problem)
        logger.info("loaded {} with {}", self.config.path, ", ".join(sorted(self.config.scheduled)))
        self._metrics: metrics.Serving | None = _serve_metrics(self.config, None)
        self.push.configure(self.config)
        self.notifier.send(READY=1, STATUS=self.status())
        self.health.request()

    def _configure(self, config: Config) -> None:
        """What follows the config: the sinks every run and verdict reports to (record.sinks:
        the same list `run-once`, `drill` and `status` build), and the alerts among them."""
        if not config.alerts.enabled:
            self.alerter = None
        elif self.alerter is None:
            self.alerter = Alerter(config.alerts, config.alert_urls, config.state_dir)
        else:
            self.alerter.reconfigure(config.alerts, config.alert_urls)
        self.sinks = sinks.build(config, self.ledger, self.alerter)
        self._next_check = None

    def serve(self) -> int:
        """The loop, until SIGTERM/SIGINT; then a graceful shutdown. Returns the exit code."""
        while not self._stop.is_set():
            self.tick()
            self.wake.clear()
            if self._stop.is_set() or self._reload.is_set():
                continue
            self.clock.wait(self.wake, self.next_wake(), _max_wait(self.notifier))
        return self.shutdown()

    def tick(self) -> None:
        """One pass: apply a pending reload, start the jobs that are due, ping the watchdog."""
        if self._reload.is_set():
            self._reload.clear()
            self.reload()
        if self.notifier.watchdog_interval_s:
            self.notifier.send(WATCHDOG=1)
        if self._stop.is_set():
            return
        now = self.clock.now()
        if self.alerter and (self._next_check is None or self._next_check <= now):
            self._next_check = now + timedelta(seconds=self.config.alerts.check_every_s)
            self.health.request()
        for name, job in self.config.scheduled.items():
            state = self._jobs.setdefault(name, _JobState(cursor=now))
            fire = missed_fire(
                job.schedule, self.config.tz, since=state.cursor, now=now, catch_up=job.catch_up
            )
            state.cursor = now
            if fire is None and state.retry_at is not None and state.retry_at <= now:
                fire = state.retry_at
            fire, reason = self.push.gate(self.config, name, fire, now, state.busy)
            if fire is not None:
                self._fire(name, fire, now, reason)

    def next_wake(self) -> datetime:
        now = self.clock.now()
        retries = [s.retry_at for s in self._jobs.values() if s.retry_at is not None]
        fires = [next_fire(j.schedule, self.config.tz, now) for j in self.config.scheduled.values()]
        checks = [self._next_check] if self.alerter and self._next_check else []
        return min(fires + retries + checks + self.push.wakes())

    def reload(self) -> None:
        self.notifier.reloading()
        new, problem = _load_for_reload(self.load, self.config_path)
        if new is None:
            self._problem = problem
        else:
            if new.state_dir != self.config.state_dir:
                logger.warning("state_dir changes take effect at the next restart")
            for name in self.config.scheduled.keys() - new.scheduled.keys():
                # Its state stays: a run still going is waited for at shutdown.
                logger.info("job {} removed from the schedule", name)
            self.config = new
            self._configure(new)
            self._problem = ""
            self._metrics = _serve_metrics(new, self._metrics)
            self.push.configure(new)
            logger.info("reloaded {}: {}", new.path, ", ".join(sorted(new.scheduled)))
        self.notifier.send(READY=1, STATUS=self.status())

    def shutdown(self) -> int:
        self.notifier.send(STOPPING=1, STATUS="stopping: " + self.status())
        running = {name: s.worker for name, s in self._jobs.items() if s.worker and s.busy}
        _stop_runs(running, self.config, self.containers, self.container_stop_s)
        # A health read in progress has a listing container: let it finish and remove that
        # (it takes a second) instead of exiting between its create and its removal.
        self.health.join(self.container_stop_s)
        metrics.forget_serving(self.config)
        self.push.close()
        logger.info("stopped")
        return 0

    # -- runs

    def _fire(self, name: str, fire: datetime, now: datetime, reason: str = "") -> None:
        log = logger.bind(job=name)
        state = self._jobs[name]
        when = markers.timestamp(fire)  # UTC with Z, as every time the product prints
        if state.busy:
            log.warning("{} is still running: skipping its run due at {}", name, when)
            return
        if _container_running(self.containers, self.config, name):
            log.warning("a container of {} is still running (left by an earlier process?): "
                        "not starting another, skipping its run due at {}", name, when)
            return
        if (now - fire).total_seconds() > MAX_WAIT_S:
            log.info("catching up: {} missed its run due at {}", name, when)
        state.started_at = now
        state.retry_at = None
        recording = self.sinks.start(name, at=now)
        state.worker = threading.Thread(target=self._run, name=f"run-{name}", daemon=True, args=(
            webhook.run_config(self.config, reason), name, recording, reason))
        state.worker.start()
        self.notifier.send(STATUS=self.status())

    def _run(self, config: Config, name: str, recording: Recording, reason: str) -> None:
        log = logger.bind(job=name, run_id=recording.run_id)
        log.bind(reason=reason or "schedule").info("starting {} (run {})", name, recording.run_id)
        try:
            report = recording.finish(webhook.tagged(
                self.run_job(config, name, run_id=recording.run_id), reason))
            if report.result == DEFERRED:
                retry = self.clock.now() + timedelta(seconds=self.config.guard.quiet_period_s)
                self._jobs[name].retry_at = retry
                log.info("{} deferred: retrying at {}", name, markers.timestamp(retry))
        except Exception as exc:
            # run_job reports failures in its result; an exception here is a bug, not a failed run.
            log.error("run {} of {} crashed: {}", recording.run_id, name, _crashed(exc))
            recording.close(FAILED, f"run crashed: {redact(str(exc))}")
        self.notifier.send(STATUS=self.status())
        self.health.request()
        self.wake.set()  # a retry, or a webhook's run queued behind this one

    # -- STATUS

    def status(self) -> str:
        """One line for `systemctl status`: per job the last result and when, and the next run."""
        jobs = "; ".join(_job_status(name, job.schedule, self._jobs.get(name), self.ledger,
                                     self.config.tz, self.clock.now())
                         for name, job in sorted(self.config.scheduled.items()))
        return " | ".join(filter(None, (self._problem, self.push.problem, self.health.line, jobs)))


def _max_wait(notifier: Notifier) -> float:
    interval = notifier.watchdog_interval_s
    return min(MAX_WAIT_S, interval) if interval else MAX_WAIT_S


def _job_status(name: str, schedule: str, state: _JobState | None, ledger: Ledger, tz: Any,
                now: datetime) -> str:
    last = ledger.last_run(name)
    if state and state.busy and state.started_at:
        done = f"running since {_short(state.started_at)}"
    elif last:
        done = f"{last.result} {_short(last.finished_at or last.started_at)}"
    else:
        done = "never run"
    return f"{name}: {done}, next {_short(next_fire(schedule, tz, now))}"


def _serve_metrics(config: Config, current: metrics.Serving | None) -> metrics.Serving | None:
    """/metrics at start and at each reload. Never fatal: a port another process holds (any
    local user can take a free port) is a warning in `status`, tried again at each reload
    until served; a port already served stays until the next restart, even if changed."""
    if current is None or not current.served:
        return metrics.serve(config)
    if config.metrics.port != current.port:
        logger.warning("metrics.port changes take effect at the next restart")
    return current


def _container_running(containers: Containers, config: Config, name: str) -> bool:
    try:
        return retrying(lambda: containers.running(config, name), "container check")
    except Exception as exc:
        # Docker is unreachable: the run will fail with its own clear error and be recorded.
        logger.bind(job=name).warning("cannot check for running containers of {}: {}", name, exc)
        return False


def _load_for_reload(load: Callable[[Path], Config], path: Path) -> tuple[Config | None, str]:
    """The new config, or None and why not (logged): a bad file keeps the schedule running."""
    try:
        return load(path), ""
    except ConfigError as exc:
        problem = f"reload failed, previous schedule kept: {exc}"
        logger.error("{}", problem)
    except Exception as exc:
        # A file the validation does not foresee is a bug there, and still no reason to stop
        # running the backups: keep the schedule, say so, log the traceback.
        problem = (f"reload failed, previous schedule kept: {path}: "
                   f"{type(exc).__name__}: {exc}")
        logger.opt(exception=exc).error("{}", problem)
    return None, problem


def _stop_runs(running: dict[str, threading.Thread], config: Config, containers: Containers,
               container_stop_s: float) -> None:
    """Shutdown: each run may finish within the grace period, then its container is stopped."""
    grace_s = config.stop_grace_s
    if running:
        logger.info("stopping: waiting up to {}s for {}", grace_s, ", ".join(running))
    deadline = time.monotonic() + grace_s
    for name, worker in running.items():
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            logger.bind(job=name).warning("{} still running after the grace period: stop", name)
            try:
                retrying(lambda n=name: containers.stop(config, n, container_stop_s), "stop")
            except Exception as exc:
                logger.bind(job=name).error("could not stop {}'s container: {}", name, exc)
            worker.join(container_stop_s + 5)


def _crashed(exc: BaseException) -> str:
    """A crash's traceback for the journal, redacted: its text may hold a signed URL."""
    return redact("".join(traceback.format_exception(exc)))


def _short(when: datetime) -> str:
    """A time in STATUS=: UTC with Z, as every time the product prints."""
    return when.astimezone(UTC).strftime("%m-%d %H:%MZ")


def install_signal_handlers(daemon: Daemon) -> None:
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.request_stop())


def run_service(daemon: Daemon) -> int:
    """Start (exit EXIT_CONFIG, 78, on an invalid config: the unit's RestartPreventExitStatus,
    restarting cannot help), then serve until SIGTERM/SIGINT (exit 0)."""
    install_signal_handlers(daemon)
    try:
        daemon.start()
    except ConfigError as exc:
        logger.error("{}", exc)
        return EXIT_CONFIG
    return daemon.serve()
