"""The `ardua-backup` command line: parses arguments and hands each command to its module."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import datetime

from loguru import logger

from supervisor import config as config_mod
from supervisor import daemon, health, ledger, logs, pipeline, schedule
from supervisor.report import DEFERRED, now_utc

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
EXIT_DEFERRED = 75  # EX_TEMPFAIL: nothing went wrong, try again later


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ardua-backup", description="Mirror Ardua Books' backups to S3 and prove it."
    )
    parser.add_argument(
        "--config", help=f"config file (default ${config_mod.ENV_VAR} or {config_mod.DEFAULT_PATH})"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="the long-running scheduler (what systemd starts)")

    once = sub.add_parser("run-once", help="run one upload job now and wait for it")
    once.add_argument("job", help="job name from the config, e.g. db-upload")
    once.add_argument(
        "--force-deletes", "--allow-empty", action="store_true", dest="force_deletes",
        help="override the deletion guard once: sync even when it deletes more than "
             "guard.max_delete_share of the mirror, or all of it (empty source)",
    )

    nxt = sub.add_parser("next", help="print the next fire times of the jobs")
    nxt.add_argument("job", nargs="?", help="one job (default: all)")
    nxt.add_argument("-n", type=int, default=5, help="how many fire times per job (default 5)")
    nxt.add_argument("--after", type=datetime.fromisoformat,
                     help="ISO 8601 start time (default now; naive = the config's timezone)")

    sub.add_parser("check-config", help="validate the config file and show the plan")

    hist = sub.add_parser("history", help="show recorded runs, newest first")
    hist.add_argument("job", nargs="?", help="one job (default: all)")
    hist.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    hist.add_argument("--json", action="store_true", help="a JSON array instead of lines")

    status = sub.add_parser(
        "status", help="check dumps, uploads and drills; exit 0 OK, 1 WARNING, 2 CRITICAL, "
                       "3 UNKNOWN")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _cmd_run_once(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    cfg.job(args.job)  # unknown job: a config error, before anything runs
    run_id = pipeline.new_run_id()
    book = _ledger(cfg)
    if book:
        book.start(args.job, run_id, now_utc())
    report = pipeline.run_job(cfg, args.job, force_deletes=args.force_deletes, run_id=run_id)
    if book:
        book.finish(report)
    print(report.summary())
    if report.result == DEFERRED:
        return EXIT_DEFERRED
    return EXIT_OK if report.ok else EXIT_FAILED


def _ledger(cfg: config_mod.Config) -> ledger.Ledger | None:
    # A manual run by a user who cannot write state_dir still runs; it is just not recorded.
    try:
        return ledger.Ledger(cfg.state_dir)
    except (OSError, sqlite3.Error) as exc:
        logger.warning(f"run not recorded in the ledger under {cfg.state_dir}: {exc}")
        return None


def _cmd_status(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    verdict = health.evaluate_status(cfg)
    print(json.dumps(verdict.to_json(), indent=2) if args.json else verdict.render())
    return verdict.exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = config_mod.resolve_path(args.config)
    if args.command == "run":
        return daemon.main(path)  # sets up its own logging, exits 78 on a bad config
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
        return _cmd_run_once(cfg, args)
    except config_mod.ConfigError as exc:
        print(f"ardua-backup: {exc}", file=sys.stderr)
        # For `status` a broken config means the health is unknown (monitoring-plugin code 3).
        return health.EXIT_CODES[health.UNKNOWN] if args.command == "status" else EXIT_CONFIG
    except KeyboardInterrupt:
        print("ardua-backup: interrupted; containers removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
