"""The `ardua-backup` command line."""

from __future__ import annotations

import argparse
import sys

from loguru import logger

from supervisor import config as config_mod
from supervisor import pipeline

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


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
        "--allow-empty", action="store_true",
        help="sync even when the source is empty (deletes the whole S3 mirror)",
    )
    return parser


def _cmd_run_once(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    cfg.job(args.job)  # unknown job: a config error, before anything runs
    report = pipeline.run_job(cfg, args.job, allow_empty=args.allow_empty)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="INFO", format="{time:YYYY-MM-DDTHH:mm:ssZZ} {level} {message}")
    try:
        cfg = config_mod.load(config_mod.resolve_path(args.config))
        return _cmd_run_once(cfg, args)
    except config_mod.ConfigError as exc:
        print(f"ardua-backup: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("ardua-backup: interrupted; containers removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
