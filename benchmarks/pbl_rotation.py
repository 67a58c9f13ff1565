"""Bytes over the uplink for 30 days of postgres-backup-local, plain sync vs ours.

Simulates backup.sh day by day (KEEP_DAYS 7, KEEP_WEEKS 4, KEEP_MONTHS 6, KEEP_MINS 1440): a
real `pg_dump -Fc` of a small database that grows every day into `last/DB-%Y%m%d-%H%M%S.dump`,
`ln -f` into `daily/DB-%Y%m%d`, `weekly/DB-%G%V`, `monthly/DB-%Y%m`, `DB-latest.dump` symlinks,
then retention as its `find -mmin +KEEP_MINS` / `-mtime +N` lines do (evaluated at the
simulated time, a minute after the dump). After each day both uploads run against their own
bucket of one SeaweedFS server:

- baseline: `docker run rclone sync` with exactly the flags of our sync (what main does);
- ours: `pipeline.run_job` (listing, guard, hard links copied server-side, sync).

After every day each mirror is compared with the local tree (every key, size and MD5 by ETag or
rclone's md5chksum). Prints bytes uploaded / bytes of the dumps made, and seconds per day.
Run: sudo .venv/bin/python -m benchmarks.pbl_rotation [DAYS]
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
from loguru import logger

from benchmarks import stop_cleanly_on_sigterm
from supervisor.config import load as config_mod
from supervisor.containers import engine as docker_runner
from supervisor.containers import jobs as rclone_containers
from supervisor.containers import rclone
from supervisor.core.states import SUCCESS
from supervisor.upload import run as pipeline
from supervisor.upload import servercopy
from tests.conftest import write_credentials
from tests.harness import dockerd
from tests.harness.images import ensure_rclone_image
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

KEEP_DAYS, KEEP_WEEKS, KEEP_MONTHS, KEEP_MINS = 7, 4, 6, 1440
DB = "shop"
# Its own job name: the test engine is shared, and a run reaps exited containers of its job name.
JOB = f"bench-db-{os.getpid()}"
PERIODS = {"daily": "%Y%m%d", "weekly": "%G%V", "monthly": "%Y%m"}
KEEP_S = {"daily": KEEP_DAYS, "weekly": KEEP_WEEKS * 7 + 1, "monthly": KEEP_MONTHS * 31 + 1}


def backup_day(pg: PgServer, root: Path, when: datetime) -> int:
    """One backup.sh run at `when`: dump, links, latest symlinks, retention. Returns the dump's
    size."""
    for folder in ("last", *PERIODS):
        (root / folder).mkdir(parents=True, exist_ok=True)
    dump = root / "last" / f"{DB}-{when:%Y%m%d-%H%M%S}.dump"
    pg.pg_dump(DB, dump)
    ts = when.timestamp()
    os.utime(dump, (ts, ts))
    for folder, fmt in PERIODS.items():
        link = root / folder / f"{DB}-{when.strftime(fmt)}.dump"
        link.unlink(missing_ok=True)  # ln -f
        os.link(dump, link)
    for folder in ("last", *PERIODS):
        latest = root / folder / f"{DB}-latest.dump"
        latest.unlink(missing_ok=True)
        latest.symlink_to(f"{DB}-{when.strftime(PERIODS.get(folder, '%Y%m%d-%H%M%S'))}.dump")
    now = (when + timedelta(minutes=1)).timestamp()  # find runs after the dump
    for path in (root / "last").glob(f"{DB}-*.dump"):
        if not path.is_symlink() and now - path.stat().st_mtime > KEEP_MINS * 60:
            path.unlink()  # find -mmin +KEEP_MINS
    for folder, days in KEEP_S.items():
        for path in (root / folder).glob(f"{DB}-*.dump"):
            age_days = int((now - path.stat().st_mtime) // 86400)
            if not path.is_symlink() and age_days > days:
                path.unlink()  # find -mtime +N: whole days, rounded down
    return dump.stat().st_size


def todays_dump(pg: PgServer, root: Path, rows: int) -> int:
    """The shop database with `rows` orders, dumped as today's postgres-backup-local day under
    root (backup_day). Returns the dump's size."""
    pg.createdb(DB)
    pg.psql("CREATE TABLE orders (id serial PRIMARY KEY, note text, total numeric)", db=DB)
    pg.psql("INSERT INTO orders (note, total) SELECT md5(random()::text) || "
            f"md5(random()::text), random() * 100 FROM generate_series(1, {rows})", db=DB)
    return backup_day(pg, root, datetime.now(UTC).replace(hour=1, minute=0, second=0,
                                                         microsecond=0))


def local_md5s(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_size, hashlib.md5(p.read_bytes()).hexdigest())
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def mirror_md5s(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            rel = item["Key"][len(prefix) + 1:]
            if rel.startswith(".last_"):
                continue
            head = client.head_object(Bucket=bucket, Key=item["Key"])
            out[rel] = (int(item["Size"]), servercopy.object_md5(head))
    return out


def quiet_engine() -> tuple[docker.DockerClient, str]:
    """What a run benchmark starts with: warnings only on stderr (the table is the output),
    the test engine and its rclone image."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    client = docker.DockerClient(base_url=dockerd.ensure_dockerd(), timeout=120)
    return client, ensure_rclone_image(client)


def main() -> int:
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    docker_client, image = quiet_engine()
    with (S3Server() as server, PgServer() as pg,
          tempfile.TemporaryDirectory(prefix="ardua-bench-") as tmp):
        work = Path(tmp)
        root = work / "backups"
        root.mkdir()
        pg.createdb(DB)
        pg.psql("CREATE TABLE orders (id serial PRIMARY KEY, note text, total numeric)", db=DB)
        creds = write_credentials(work / "creds", server.access_key, server.secret_key)
        buckets = {"baseline": server.create_bucket("pbl-baseline"),
                   "ours": server.create_bucket("pbl-ours")}
        cfg_path = work / "ardua-backup.toml"
        cfg_path.write_text(toml_dumps({
            "state_dir": str(work / "state"),
            "s3": {"bucket": buckets["ours"], "region": server.region,
                   "endpoint_url": server.endpoint_url, "credentials_file": str(creds)},
            "rclone": {"image": image, "network_mode": "host"},
            "jobs": {JOB: {"schedule": "15 1 * * *", "source": str(root),
                                   "prefix": "postgres"}},
        }))
        cfg = config_mod.load(cfg_path)
        baseline = dataclasses.replace(cfg.destination(), bucket=buckets["baseline"])
        base_spec = rclone_containers.rclone_spec(
            cfg, baseline, rclone.sync_command(baseline, "postgres", 3600),
            docker_runner.file_mount(str(root), rclone.SOURCE_MOUNT),
            {docker_runner.LABEL_JOB: "benchmark"})
        s3c = server.client()
        start = (datetime.now(UTC) - timedelta(days=days + 1)).replace(
            hour=1, minute=0, second=0, microsecond=0)
        dumped = 0
        uploaded = {"baseline": 0, "ours": 0}
        seconds = {"baseline": 0.0, "ours": 0.0}
        copied = 0
        for day in range(days):
            pg.psql("INSERT INTO orders (note, total) SELECT md5(random()::text) || "
                    "md5(random()::text), random() * 100 FROM generate_series(1, 3000)", db=DB)
            dumped += backup_day(pg, root, start + timedelta(days=day))
            t0 = time.monotonic()
            result = docker_runner.run_oneshot(docker_client, base_spec, 3600)
            seconds["baseline"] += time.monotonic() - t0
            summary = rclone.parse_log(result.stderr)
            assert rclone.judge_sync(result.exit_code, result.timed_out, summary).ok, result.stderr
            uploaded["baseline"] += summary.stat("bytes")
            t0 = time.monotonic()
            report = pipeline.run_job(cfg, JOB, client=docker_client)
            seconds["ours"] += time.monotonic() - t0
            assert report.result == SUCCESS, report.message
            uploaded["ours"] += report.bytes
            copied += report.copied_server_side
            local = local_md5s(root)
            for name, bucket in buckets.items():
                got = mirror_md5s(s3c, bucket, "postgres")
                assert got == local, f"day {day + 1}: {name} mirror differs from the tree"
            print(f"day {day + 1:2}: {len(local)} files, dump {dumped} B so far; uploaded "
                  f"baseline {uploaded['baseline']} B, ours {uploaded['ours']} B "
                  f"({report.copied_server_side} copied server-side)", file=sys.stderr)
    print(f"{days} days of postgres-backup-local (KEEP_DAYS {KEEP_DAYS}, KEEP_WEEKS {KEEP_WEEKS},"
          f" KEEP_MONTHS {KEEP_MONTHS}), {dumped} B of dumps made; mirror == tree every day")
    print(f"{'upload':<28} {'bytes uploaded':>15} {'/ dump bytes':>13} {'vs baseline':>12} "
          f"{'s per day':>10}")
    for name, label in (("baseline", "plain rclone sync (main)"), ("ours", "run_job (ours)")):
        print(f"{label:<28} {uploaded[name]:>15} {uploaded[name] / dumped:>12.3f}x "
              f"{uploaded[name] / uploaded['baseline']:>11.3f}x {seconds[name] / days:>10.2f}")
    print(f"keys made by server-side copy: {copied}")
    return 0


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    sys.exit(main())
