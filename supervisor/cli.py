"""The `ardua-backup` command line: one table of commands (COMMANDS), each with its arguments
and its handler; a handler calls the modules that do the work and prints what they return.

The modules below it never print and never see argparse. Exit codes: 0 done, 1 failed,
75 deferred, 78 invalid config (EX_CONFIG, for every command but `status`, whose 3 = UNKNOWN
is the monitoring-plugin convention), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from supervisor.alerts import send as alertsend
from supervisor.config import keys as configkeys
from supervisor.config import load as config_mod
from supervisor.config.load import DRILL_JOB, Config, ConfigError
from supervisor.containers.engine import DockerError
from supervisor.core import schedule
from supervisor.core.states import (
    DEFERRED,
    EXIT_CONFIG,
    EXIT_DEFERRED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    INTERRUPTED,
    RUNNING,
    STATUS_EXIT,
    UNKNOWN,
)
from supervisor.core.text import printable
from supervisor.daemon import service
from supervisor.health import doctor, gather
from supervisor.health import verdict as health
from supervisor.record import journal as logs
from supervisor.record import ledger, sinks
from supervisor.record.report import Report, human_size
from supervisor.restore import db as restore
from supervisor.restore import drill, source
from supervisor.restore import receipts as receipts_restore
from supervisor.restore.db import KeysRefused, RestoreError
from supervisor.storage import versions
from supervisor.storage.s3 import S3Error
from supervisor.upload import run as pipeline
from supervisor.verify import run as verify

R = TypeVar("R", bound=Report)
Args = argparse.Namespace


# -- the service and the config --------------------------------------------------------------------


def cmd_run(path: Path, args: Args) -> int:
    return service.main(path)  # sets up its own logging, exits EXIT_CONFIG on a bad config


def cmd_check_config(path: Path, now: datetime | None = None) -> int:
    """Validate the file, print each job's plan and next run, then every setting (defaults
    marked, URLs shown as scheme://host only: they carry tokens)."""
    try:
        config = config_mod.load(path)
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    start = schedule.parse_after(now, config.tz)
    print(f"{config.path}: OK (timezone {config.timezone}, state_dir {config.state_dir})")
    for name, job in sorted(config.jobs.items()):
        fire = schedule.next_fire(job.schedule, config.tz, start).isoformat()
        print(f"{name}: '{job.schedule}' {job.source} timeout {job.timeout_s:g}s "
              f"catch_up={str(job.catch_up).lower()} next {fire}")
        for dest in config.destinations_of(job):  # one line per copy: job x destination
            lock = (f", object lock {dest.object_lock_mode} {dest.object_lock_days} d"
                    if dest.object_lock_mode else "")
            print(f"  -> {dest.name}: {dest.url(job.prefix)} at {dest.where}{lock}")
    d = config.drill
    if d.schedule:
        fire = schedule.next_fire(d.schedule, config.tz, start).isoformat()
        print(f"{DRILL_JOB}: '{d.schedule}' newest dump of {d.db_job} -> {d.image} "
              f"timeout {d.timeout_s:g}s next {fire}")
    if config.verify.schedule:
        fire = schedule.next_fire(config.verify.schedule, config.tz, start).isoformat()
        print(f"{config_mod.VERIFY_JOB}: '{config.verify.schedule}' every object of every "
              f"destination, max_age {configkeys.format_duration(config.verify.max_age_s)}, "
              f"{human_size(config.verify.max_bytes_per_run)} a run, next {fire}")
    if config.alert_urls:
        shown = ", ".join(alertsend.describe_url(u) for u in config.alert_urls)
        print(f"alerts: {len(config.alert_urls)} URL(s) from {config.alerts.urls_file}: {shown}")
    print("\nsettings (* = default):")
    for key, value, is_default in config_mod.settings(config):
        print(f"  {'*' if is_default else ' '} {key} = {_shown(key, value)}")
    return EXIT_OK


def _shown(key: str, value: Any) -> str:
    """A setting as TOML would write it; durations in their units; a URL as scheme://host only
    (ping and notification URLs carry tokens)."""
    if key.endswith("_url") and isinstance(value, str) and "://" in value:
        scheme, _, rest = value.partition("://")
        return f'"{scheme}://{rest.split("/", 1)[0].rsplit("@", 1)[-1]}/..."'
    if configkeys.is_duration(key) and isinstance(value, float):
        return f'"{configkeys.format_duration(value)}"'
    if value is None:
        return "(unset)"
    return json.dumps(value if isinstance(value, str | int | float | bool | list | tuple)
                      else str(value))


def cmd_next(config: Config, job: str | None, n: int, after: datetime | None) -> int:
    """One fire time per line, ISO 8601 with UTC offset in the config's timezone. With one job
    (named, or the only one configured) lines are bare times; with several each line is
    "JOB TIME", sorted by time, so the output reads as the daemon's upcoming plan."""
    tz = config.tz
    start = schedule.parse_after(after, tz)
    plan = config.scheduled
    if job and job not in plan:
        config.job(job)  # raises the config error naming the configured jobs
    names = [job] if job else sorted(plan)
    rows = [(fire, name) for name in names
            for fire in schedule.next_fires(plan[name].schedule, tz, start, n)]
    rows.sort(key=lambda row: (row[0].astimezone(UTC), row[1]))
    for fire, name in rows:
        print(fire.isoformat() if len(names) == 1 else f"{name} {fire.isoformat()}")
    return EXIT_OK


# -- runs ----------------------------------------------------------------------------------------


def cmd_run_once(cfg: Config, args: Args) -> int:
    cfg.job(args.job)  # unknown job: a config error, before anything runs
    if args.dry_run:  # changes nothing, so it is not recorded either
        plan = pipeline.dry_run(cfg, args.job, force_deletes=args.force_deletes, deep=args.deep)
        print(plan.summary())
        return plan.exit_code
    report = _recorded(cfg, args.job, lambda run_id: pipeline.run_job(
        cfg, args.job, force_deletes=args.force_deletes, run_id=run_id, deep=args.deep))
    print(report.summary())
    if report.result == DEFERRED:
        return EXIT_DEFERRED
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_drill(cfg: Config, args: Args) -> int:
    if args.destination is not None:
        cfg.destination(args.destination)  # an unknown name: a config error, nothing recorded
    report = _recorded(cfg, DRILL_JOB, lambda run_id: drill.run_drill(
        cfg, run_id=run_id, destination=args.destination))
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_verify(cfg: Config, args: Args) -> int:
    """Exit 0 all proven, 1 work left for the next run, 2 a proof failed (docs/verify.md)."""
    if args.destination is not None:
        cfg.destination(args.destination)  # an unknown name: a config error, nothing recorded
    report = _recorded(cfg, config_mod.VERIFY_JOB, lambda run_id: verify.run_verify(
        cfg, run_id=run_id, every=args.all, destination=args.destination))
    print(json.dumps(report.as_json(), indent=2) if args.json else report.summary())
    assert report.exit_code is not None
    return report.exit_code


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true",
                   help="prove everything due, ignoring verify.max_bytes_per_run")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--destination", metavar="NAME",
                   help="only this destination (default: every destination)")


def _recorded(cfg: Config, job: str, run: Callable[[str], R]) -> R:
    """Runs `run(run_id)` reported to the daemon's sinks (record.sinks): ledger, metrics,
    heartbeat, journal and the alerts, sharing the daemon's alert memory."""
    return sinks.for_runs(cfg).record(job, run)


def cmd_history(state_dir: Path, tz: Any, job: str | None, n: int, as_json: bool,
                local: bool = False) -> int:
    """Newest first, each upload's destinations under it; times in UTC (`Z`), or with --local
    in the config's zone. --json prints one JSON array of runs with UTC ISO 8601 times (null
    for unknown values). A state_dir that cannot be read is one line naming it."""
    try:
        runs = _read_history(state_dir, job, n)
    except (OSError, sqlite3.Error) as exc:
        print(f"ardua-backup: history: cannot read the run ledger in {state_dir}: {exc}",
              file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        print(json.dumps([run.as_json() for run in runs], indent=2))
        return EXIT_OK
    for run in runs:
        duration = "-" if run.duration_s is None else f"{run.duration_s:.1f}s"
        print(
            f"{_when(run.started_at, tz if local else None)} {run.job} "
            f"{run.result} exit={_dash(run.exit_code)} {duration} files={_dash(run.files)} "
            f"bytes={_dash(run.bytes)} deletes={_dash(run.deletes)} errors={_dash(run.errors)} "
            f"run_id={run.run_id}" + (f" {printable(run.message)}" if run.message else "")
        )
        for d in run.destinations:
            print(f"    {d.destination} {d.result} exit={_dash(d.exit_code)} "
                  f"files={_dash(d.files)} bytes={_dash(d.bytes)} deletes={_dash(d.deletes)} "
                  f"errors={_dash(d.errors)} sentinel={'written' if d.sentinel_written else '-'}"
                  + (f" {printable(d.message)}" if d.message else ""))
        uploads = run.job not in (DRILL_JOB, config_mod.VERIFY_JOB)
        if uploads and not run.destinations and run.result not in (RUNNING, INTERRUPTED):
            print("    (no per-destination results: recorded before they were kept, or the "
                  "run crashed)")
    return EXIT_OK


def _read_history(state_dir: Path, job: str | None, n: int) -> list[ledger.Run]:
    """The ledger's runs; none when there is no ledger yet. Reading history must not create
    the state directory (it may belong to another user)."""
    if state_dir.exists() and not state_dir.is_dir():
        raise NotADirectoryError(f"{state_dir} is not a directory")
    reader = ledger.Ledger.reader(state_dir)
    return reader.history(job, n) if reader else []


def _when(at: datetime, tz: Any | None) -> str:
    """A time as history prints it: UTC with `Z`, or in `tz` with its offset."""
    if tz is None:
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return at.astimezone(tz).isoformat(timespec="seconds")


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


# -- health and restores ---------------------------------------------------------------------------


def cmd_status(cfg: Config, args: Args) -> int:
    verdict = gather.evaluate_status(cfg)
    sinks.for_verdicts(cfg).verdict(verdict)
    print(json.dumps(verdict.to_json(), indent=2) if args.json else verdict.render())
    return verdict.exit_code


def cmd_restore_list(cfg: Config, args: Args) -> int:
    """The listing on stdout (keys escaped: restore.db.StoredDump.shown), where it came from
    and what was left out on stderr."""
    chosen = source.choose(cfg, cfg.drill.db_job, args.destination, args.at)
    dumps, empty = restore.split_empty(restore.dumps_in(cfg, chosen.held, args.at, chosen.dest))
    print(restore.format_listing(dumps, {d.key: restore.format_of(cfg, d) for d in dumps}))
    print(f"ardua-backup: listed {chosen.note}", file=sys.stderr)
    if empty:
        print(f"ardua-backup: {restore.skipped_note(empty)}", file=sys.stderr)
    return EXIT_OK


def cmd_restore_db(cfg: Config, args: Args) -> int:
    chosen = source.choose(cfg, cfg.drill.db_job, args.destination, args.at)
    with tempfile.TemporaryDirectory(dir=restore.workdir_root(cfg)) as tmp:
        try:
            done = restore.restore_db(cfg, args.key, args.target, jobs=args.jobs,
                                      clean=args.clean, privileges=args.privileges,
                                      workdir=Path(tmp), progress=True, at=args.at,
                                      dest=chosen.dest)
        except KeysRefused as exc:
            return _refused(exc)
    f = done.fetched
    print(f"restored {printable(f.key)} ({f.format}) {chosen.note}: {f.size} B downloaded in "
          f"{f.seconds:.1f} s (verified {f.verified}), {done.detail}, restore "
          f"{done.restore_s:.1f} s")
    return EXIT_OK


def cmd_restore_receipts(cfg: Config, args: Args) -> int:
    try:
        print(receipts_restore.restore_receipts(cfg, args.dest, force=args.force, at=args.at,
                                                 as_root=args.as_root,
                                                 destination=args.destination))
    except KeysRefused as exc:
        return _refused(exc)
    return EXIT_OK


def _refused(exc: KeysRefused) -> int:
    """Each refused key on its own line (escaped), then the count and what was done: exit 1."""
    for line in exc.lines:
        print(f"ardua-backup: {line}", file=sys.stderr)
    print(f"ardua-backup: {printable(str(exc))}", file=sys.stderr)
    return EXIT_FAILED


def cmd_alerts_test(cfg: Config, args: Args) -> int:
    """A test notification to every URL of alerts.urls_file, each one's result (URLs shown as
    scheme://host: they carry tokens)."""
    if not cfg.alert_urls:
        print(f"ardua-backup: no alert URLs: set alerts.urls_file in {cfg.path}", file=sys.stderr)
        return EXIT_FAILED
    results = alertsend.test_all(cfg.alert_urls)
    for shown, ok, error in results:
        print(f"{'sent  ' if ok else 'FAILED'}  {shown}{'' if ok else f'  ({error})'}")
    return EXIT_OK if all(ok for _, ok, _ in results) else EXIT_FAILED


def cmd_doctor(cfg: Config, args: Args) -> int:
    """Every destination (or the one named), each with the prefixes of the jobs copying there."""
    dests = [cfg.destination(args.destination)] if args.destination else list(cfg.destinations)
    prefixes = {dest: [job.prefix for job in cfg.jobs.values() if dest in cfg.destinations_of(job)]
                for dest in dests}
    if args.iam_policy:
        # The notes on stderr: stdout stays the policy JSON (one per destination, in order).
        for dest in dests:
            for note in doctor.policy_notes(dest, offsite=dest != cfg.destinations[0]):
                print(f"# {note}", file=sys.stderr, flush=True)
            print(json.dumps(doctor.iam_policy(dest.bucket, prefixes[dest],
                                               lock=bool(dest.object_lock_mode)), indent=2),
                  flush=True)
        return EXIT_OK
    sections = [doctor.Section(dest, doctor.diagnose(dest, prefixes[dest],
                                                     sse=dest.server_side_encryption))
                for dest in dests]
    print(json.dumps(doctor.sections_json(sections), indent=2) if args.json
          else doctor.render_sections(sections))
    return doctor.sections_exit_code(sections)


# -- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    help: str
    handler: Callable[[Any, Args], int]  # (Config, args); (Path, args) when not loads_config
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    loads_config: bool = True  # False: the handler reads the file itself


def _run_once_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job name from the config, e.g. db-upload")
    p.add_argument("--force-deletes", "--allow-empty", action="store_true", dest="force_deletes",
                   help="override the deletion guard once: sync even when it deletes more than "
                        "guard.max_delete_share of the mirror, or all of it (empty source)")
    p.add_argument("--deep", action="store_true",
                   help="compare by checksum this once, whatever the job's compare mode")
    p.add_argument("--dry-run", action="store_true",
                   help="show what the sync would upload, copy server-side and delete, and the "
                        "guard's verdict, changing nothing (not in the ledger)")


def _next_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", nargs="?", help="one job (default: all)")
    p.add_argument("-n", type=int, default=5, help="how many fire times per job (default 5)")
    p.add_argument("--after", type=datetime.fromisoformat,
                   help="ISO 8601 start time (default now; naive = the config's timezone)")


def _history_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", nargs="?", help="one job (default: all)")
    p.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    p.add_argument("--json", action="store_true", help="a JSON array instead of lines")
    p.add_argument("--local", action="store_true",
                   help="times in the config's timezone instead of UTC")


def _at(text: str) -> datetime:
    try:
        return versions.parse_at(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _at_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--at", type=_at, help="as S3 held it at this time (ISO 8601 with Z or an "
                                          "offset; needs bucket versioning)")
    _destination_arg(p)


def _destination_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--destination", metavar="NAME",
                   help="read from this destination only (default: the first listed that "
                        "answers and holds the job's objects)")


def _restore_db_args(p: argparse.ArgumentParser) -> None:
    _at_arg(p)
    p.add_argument("key", help="S3 key from `restore list` (or relative to the db prefix)")
    p.add_argument("--target", required=True, help="libpq DSN of the (empty) target database")
    p.add_argument("--jobs", type=int, default=1, help="parallel pg_restore jobs (default 1)")
    p.add_argument("--clean", action="store_true",
                   help="drop the dump's objects in the target first (target may be non-empty)")
    p.add_argument("--no-privileges", dest="privileges", action="store_false",
                   help="skip the dump's GRANT/REVOKE (the target lacks the source's roles)")


def _restore_receipts_args(p: argparse.ArgumentParser) -> None:
    _at_arg(p)
    p.add_argument("dest", type=Path, help="host directory to restore into")
    p.add_argument("--force", action="store_true",
                   help="sync into a non-empty DEST (deletes files not in S3)")
    p.add_argument("--as-root", action="store_true",
                   help="DEST is root's: run the sync as root (else it runs as DEST's owner)")


def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--iam-policy", action="store_true",
                   help="print the least-privilege IAM policy of each destination instead")
    p.add_argument("--destination", metavar="NAME",
                   help="only this destination (default: every destination, one section each)")


COMMANDS: dict[str, Command] = {
    "run": Command("the long-running scheduler (what systemd starts)", cmd_run,
                   loads_config=False),
    "run-once": Command("run one upload job now and wait for it", cmd_run_once, _run_once_args),
    "next": Command("print the next fire times of the jobs",
                    lambda cfg, a: cmd_next(cfg, a.job, a.n, a.after), _next_args),
    "check-config": Command("validate the config file and show the plan",
                            lambda path, a: cmd_check_config(path), loads_config=False),
    "history": Command("show recorded runs, newest first",
                       lambda cfg, a: cmd_history(cfg.state_dir, cfg.tz, a.job, a.n, a.json,
                                                  a.local),
                       _history_args),
    "status": Command("check dumps, uploads and drills; exit 0 OK, 1 WARNING, 2 CRITICAL, "
                      "3 UNKNOWN", cmd_status,
                      lambda p: p.add_argument("--json", action="store_true",
                                               help="machine-readable output")),
    "restore list": Command("dumps in S3, newest first", cmd_restore_list, _at_arg),
    "restore db": Command("download, verify and restore one dump", cmd_restore_db,
                          _restore_db_args),
    "restore receipts": Command("rclone sync the receipts from S3 into DEST",
                                cmd_restore_receipts, _restore_receipts_args),
    "drill": Command("restore the newest S3 dumps into a throwaway PostgreSQL, check them",
                     cmd_drill, _destination_arg),
    "verify": Command("read back what S3 holds, remember each proof; exit 0 all proven, "
                      "1 work left, 2 a proof failed", cmd_verify, _verify_args),
    "alerts test": Command("send a test notification to every alert URL; show each result",
                           cmd_alerts_test),
    "doctor": Command("what protects each destination's bucket: versioning, lifecycle, "
                      "object lock, encryption, public access; exit as status", cmd_doctor,
                      _doctor_args),
}
GROUPS = {"restore": "get backups back out of S3", "alerts": "the notifications"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ardua-backup", description="Mirror Ardua Books' backups to S3 and prove it.")
    config_help = f"config file (default ${config_mod.ENV_VAR} or {config_mod.DEFAULT_PATH})"
    parser.add_argument("--config", help=config_help)
    # Also accepted after the command (`ardua-backup run --config X`, as operators type it);
    # SUPPRESS keeps a subcommand from resetting a --config given before it.
    config_too = argparse.ArgumentParser(add_help=False)
    config_too.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, Any] = {}
    for name, command in COMMANDS.items():
        group, _, leaf = name.rpartition(" ")
        if group and group not in groups:
            groups[group] = sub.add_parser(group, help=GROUPS[group], parents=[config_too]) \
                .add_subparsers(dest="subcommand", required=True)
        p = (groups[group] if group else sub).add_parser(leaf, help=command.help,
                                                         parents=[config_too])
        command.arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    name = " ".join(filter(None, (args.command, getattr(args, "subcommand", None))))
    command = COMMANDS[name]
    path = config_mod.resolve_path(args.config)
    if name != "run":
        # `ardua-backup next | head`: end quietly when the reader goes, as Unix tools do.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if not command.loads_config:
        return command.handler(path, args)
    logs.setup()
    try:
        return command.handler(config_mod.load(path), args)
    except ConfigError as exc:
        print(f"ardua-backup: {exc}", file=sys.stderr)
        if name != "status":
            return EXIT_CONFIG
        # The health is unknown (monitoring-plugin code 3); a check that parses --json still
        # gets an object saying why.
        if args.json:
            print(json.dumps(health.unknown_json(f"config error: {exc}"), indent=2))
        return STATUS_EXIT[UNKNOWN]
    except (RestoreError, S3Error, DockerError) as exc:
        # Escaped: an S3 key in the message may hold terminal control sequences.
        print(f"ardua-backup: {printable(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ardua-backup: interrupted; containers removed", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
