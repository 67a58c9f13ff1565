"""The `ardua-backup` command line: parses arguments and hands each command to its module."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from supervisor import config as config_mod
from supervisor import daemon, drill, health, ledger, logs, pipeline, restore, schedule
from supervisor.docker_runner import DockerError
from supervisor.report import DEFERRED, now_utc
from supervisor.restore import RestoreError
from supervisor.s3 import S3Error

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_DEFERRED = 75  # EX_TEMPFAIL: nothing went wrong, try again later
EXIT_CONFIG = config_mod.EXIT_CONFIG  # 78, EX_CONFIG, for every command but `status`
R = TypeVar("R", bound=ledger.Report)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ardua-backup", description="Mirror Ardua Books' backups to S3 and prove it."
    )
    config_help = f"config file (default ${config_mod.ENV_VAR} or {config_mod.DEFAULT_PATH})"
    parser.add_argument("--config", help=config_help)
    # Also accepted after the command (`ardua-backup run --config X`, as operators type it);
    # SUPPRESS keeps a subcommand from resetting a --config given before it.
    config_too = argparse.ArgumentParser(add_help=False)
    config_too.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(group: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        """A subcommand (``group`` is an argparse subparsers action) that takes --config too."""
        return group.add_parser(name, help=help_text, parents=[config_too])

    command(sub, "run", "the long-running scheduler (what systemd starts)")

    once = command(sub, "run-once", "run one upload job now and wait for it")
    once.add_argument("job", help="job name from the config, e.g. db-upload")
    once.add_argument(
        "--force-deletes", "--allow-empty", action="store_true", dest="force_deletes",
        help="override the deletion guard once: sync even when it deletes more than "
             "guard.max_delete_share of the mirror, or all of it (empty source)",
    )

    nxt = command(sub, "next", "print the next fire times of the jobs")
    nxt.add_argument("job", nargs="?", help="one job (default: all)")
    nxt.add_argument("-n", type=int, default=5, help="how many fire times per job (default 5)")
    nxt.add_argument("--after", type=datetime.fromisoformat,
                     help="ISO 8601 start time (default now; naive = the config's timezone)")

    command(sub, "check-config", "validate the config file and show the plan")

    hist = command(sub, "history", "show recorded runs, newest first")
    hist.add_argument("job", nargs="?", help="one job (default: all)")
    hist.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    hist.add_argument("--json", action="store_true", help="a JSON array instead of lines")

    status = command(sub, "status", "check dumps, uploads and drills; exit 0 OK, 1 WARNING, "
                                    "2 CRITICAL, 3 UNKNOWN")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    rest = command(sub, "restore", "get backups back out of S3").add_subparsers(
        dest="what", required=True
    )
    command(rest, "list", "dumps in S3, newest first")
    db = command(rest, "db", "download, verify and pg_restore one dump")
    db.add_argument("key", help="S3 key from `restore list` (or relative to the db prefix)")
    db.add_argument("--target", required=True, help="libpq DSN of the (empty) target database")
    db.add_argument("--jobs", type=int, default=1, help="parallel pg_restore jobs (default 1)")
    db.add_argument("--clean", action="store_true",
                    help="drop the dump's objects in the target first (target may be non-empty)")
    db.add_argument("--no-privileges", dest="privileges", action="store_false",
                    help="skip the dump's GRANT/REVOKE (the target lacks the source's roles)")
    rec = command(rest, "receipts", "rclone sync the receipts from S3 into DEST")
    rec.add_argument("dest", type=Path, help="host directory to restore into")
    rec.add_argument("--force", action="store_true",
                     help="sync into a non-empty DEST (deletes files not in S3)")

    command(sub, "drill", "restore the newest S3 dump into a throwaway PostgreSQL, check it")
    return parser


def _cmd_restore(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    if args.what == "list":
        dumps, empty = restore.split_empty(restore.list_dumps(cfg))
        print(restore.format_listing(dumps, {d.key: restore.format_of(cfg, d) for d in dumps}))
        if empty:
            print(f"ardua-backup: {restore.skipped_note(empty)}", file=sys.stderr)
    elif args.what == "db":
        with tempfile.TemporaryDirectory(dir=restore.workdir_root(cfg)) as tmp:
            done = restore.restore_db(cfg, args.key, args.target, jobs=args.jobs,
                                      clean=args.clean, privileges=args.privileges,
                                      workdir=Path(tmp), progress=True)
        f = done.fetched
        print(f"restored {f.key} ({f.format}): {f.size} B downloaded in {f.seconds:.1f} s "
              f"(verified {f.verified}), {done.detail}, restore {done.restore_s:.1f} s")
    else:
        print(restore.restore_receipts(cfg, args.dest, force=args.force))
    return EXIT_OK


def _cmd_drill(cfg: config_mod.Config) -> int:
    report = _recorded(
        cfg, config_mod.DRILL_JOB, lambda run_id: drill.run_drill(cfg, run_id=run_id)
    )
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_run_once(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    cfg.job(args.job)  # unknown job: a config error, before anything runs
    report = _recorded(cfg, args.job, lambda run_id: pipeline.run_job(
        cfg, args.job, force_deletes=args.force_deletes, run_id=run_id))
    print(report.summary())
    if report.result == DEFERRED:
        return EXIT_DEFERRED
    return EXIT_OK if report.ok else EXIT_FAILED


def _recorded(cfg: config_mod.Config, job: str, run: Callable[[str], R]) -> R:
    """Runs `run(run_id)` with a ledger row around it, like the daemon does."""
    run_id = pipeline.new_run_id()
    try:
        book: ledger.Ledger | None = ledger.Ledger(cfg.state_dir)
    except (OSError, sqlite3.Error) as exc:
        # A manual run by a user who cannot write state_dir still runs; it is just not recorded.
        logger.warning(f"run not recorded in the ledger under {cfg.state_dir}: {exc}")
        book = None
    if book:
        book.start(job, run_id, now_utc())
    try:
        report = run(run_id)
    except KeyboardInterrupt:
        if book:
            book.close(run_id, "interrupted", "interrupted by Ctrl-C", now_utc())
        raise
    if book:
        book.finish(report)
    return report


def _cmd_status(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    verdict = health.evaluate_status(cfg)
    print(json.dumps(verdict.to_json(), indent=2) if args.json else verdict.render())
    return verdict.exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = config_mod.resolve_path(args.config)
    if args.command == "run":
        return daemon.main(path)  # sets up its own logging, exits EXIT_CONFIG on a bad config
    if args.command == "check-config":
        return schedule.cmd_check_config(path)
    logs.setup()
    try:
        cfg = config_mod.load(path)
        if args.command == "next":
            return schedule.cmd_next(cfg, args.job, args.n, args.after)
        if args.command == "history":
            return ledger.cmd_history(cfg.state_dir, cfg.tz, args.job, args.n, args.json)
        if args.command == "status":
            return _cmd_status(cfg, args)
        if args.command == "restore":
            return _cmd_restore(cfg, args)
        if args.command == "drill":
            return _cmd_drill(cfg)
        return _cmd_run_once(cfg, args)
    except config_mod.ConfigError as exc:
        print(f"ardua-backup: {exc}", file=sys.stderr)
        # One rule: 78 (EX_CONFIG) for every command, as for the service. For `status` a broken
        # config means the health is unknown: monitoring-plugin code 3.
        return health.EXIT_CODES[health.UNKNOWN] if args.command == "status" else EXIT_CONFIG
    except (RestoreError, S3Error, DockerError) as exc:
        print(f"ardua-backup: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ardua-backup: interrupted; containers removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
