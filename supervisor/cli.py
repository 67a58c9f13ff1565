"""The `ardua-backup` command line."""

from __future__ import annotations

import argparse
import json
import sys

from loguru import logger

from supervisor import config as config_mod
from supervisor import health, pipeline
from supervisor.report import DEFERRED

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

    once = sub.add_parser("run-once", help="run one upload job now and wait for it")
    once.add_argument("job", help="job name from the config, e.g. db-upload")
    once.add_argument(
        "--force-deletes", "--allow-empty", action="store_true", dest="force_deletes",
        help="override the deletion guard once: sync even when it deletes more than "
             "guard.max_delete_share of the mirror, or all of it (empty source)",
    )

    status = sub.add_parser(
        "status", help="check dumps, uploads and drills; exit 0 OK, 1 WARNING, 2 CRITICAL, "
                       "3 UNKNOWN")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _cmd_run_once(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    cfg.job(args.job)  # unknown job: a config error, before anything runs
    report = pipeline.run_job(cfg, args.job, force_deletes=args.force_deletes)
    print(report.summary())
    if report.result == DEFERRED:
        return EXIT_DEFERRED
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_status(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    verdict = health.evaluate_status(cfg)
    print(json.dumps(verdict.to_json(), indent=2) if args.json else verdict.render())
    return verdict.exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="INFO", format="{time:YYYY-MM-DDTHH:mm:ssZZ} {level} {message}")
    try:
        cfg = config_mod.load(config_mod.resolve_path(args.config))
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
