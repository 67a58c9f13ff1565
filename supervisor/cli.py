"""The `ardua-backup` command line."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from loguru import logger

from supervisor import config as config_mod
from supervisor import drill, pipeline, restore
from supervisor.docker_runner import DockerError
from supervisor.restore import RestoreError
from supervisor.s3 import S3Error

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

    rest = sub.add_parser("restore", help="get backups back out of S3").add_subparsers(
        dest="what", required=True
    )
    rest.add_parser("list", help="dumps in S3, newest first")
    db = rest.add_parser("db", help="download, verify and pg_restore one dump")
    db.add_argument("key", help="S3 key from `restore list` (or relative to the db prefix)")
    db.add_argument("--target", required=True, help="libpq DSN of the (empty) target database")
    db.add_argument("--jobs", type=int, default=1, help="parallel pg_restore jobs (default 1)")
    db.add_argument("--clean", action="store_true",
                    help="drop the dump's objects in the target first (target may be non-empty)")
    rec = rest.add_parser("receipts", help="rclone sync the receipts from S3 into DEST")
    rec.add_argument("dest", type=Path, help="host directory to restore into")
    rec.add_argument("--force", action="store_true",
                     help="sync into a non-empty DEST (deletes files not in S3)")

    sub.add_parser("drill", help="restore the newest S3 dump into a throwaway PostgreSQL, check it")
    return parser


def _cmd_restore(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    if args.what == "list":
        print(restore.format_listing(restore.list_dumps(cfg)))
    elif args.what == "db":
        with tempfile.TemporaryDirectory(dir=restore.workdir_root(cfg)) as tmp:
            done = restore.restore_db(cfg, args.key, args.target, jobs=args.jobs,
                                      clean=args.clean, workdir=Path(tmp), progress=True)
        f = done.fetched
        print(f"restored {f.key}: {f.size} B downloaded in {f.seconds:.1f} s "
              f"(verified {f.verified}), {done.toc_entries} archive entries, "
              f"pg_restore {done.restore_s:.1f} s")
    else:
        print(restore.restore_receipts(cfg, args.dest, force=args.force))
    return EXIT_OK


def _cmd_drill(cfg: config_mod.Config) -> int:
    report = drill.run_drill(cfg)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


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
        if args.command == "restore":
            return _cmd_restore(cfg, args)
        if args.command == "drill":
            return _cmd_drill(cfg)
        return _cmd_run_once(cfg, args)
    except config_mod.ConfigError as exc:
        print(f"ardua-backup: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (RestoreError, S3Error, DockerError) as exc:
        print(f"ardua-backup: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("ardua-backup: interrupted; containers removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
