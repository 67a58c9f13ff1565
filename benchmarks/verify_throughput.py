"""verify's read-back speed against the bare minimum the same proof needs, in the same run.

A database of about SIZE_MB of rows (md5 text: compresses about 2x) dumped with the real pg_dump
as -Fc and -Fd, uploaded with rclone (its md5chksum metadata, as our syncs leave it) to a local
SeaweedFS. Then, three rounds each, alternating:

- baseline: `rclone cat` of every object of the dump into a local copy, then
  `pg_restore -f /dev/null` of that copy (the least that reads every byte from S3 and every data
  block of the archive);
- verify: `run_verify(--all)` on an empty proofs table (download, size + MD5 against S3,
  `pg_restore --list`, `pg_restore -f /dev/null`, the proof recorded).

Prints the median seconds of each and verify / baseline (goal <= 1.2).
Run: sudo .venv/bin/python -m benchmarks.verify_throughput [SIZE_MB]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger

from benchmarks import stop_cleanly_on_sigterm
from supervisor.config import load as config_mod
from supervisor.postgres import pgtools
from supervisor.record.ledger import FILENAME
from supervisor.verify.run import run_verify
from tests.conftest import destination_table, write_credentials
from tests.harness.images import rclone_binary
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

STAMP = "20260101-000000"
ROUNDS = 5


def _remote(server: S3Server) -> str:
    return (f":s3,provider=Other,endpoint='{server.endpoint_url}',"
            f"access_key_id={server.access_key},secret_access_key={server.secret_key}:")


def _baseline(server: S3Server, bucket: str, keys: list[str], work: Path, archive: str) -> float:
    started = time.monotonic()
    copy = work / archive
    for key in keys:
        target = work / key[len("postgres/last/"):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            subprocess.run([str(rclone_binary()), "-q", "cat", f"{_remote(server)}{bucket}/{key}"],
                           stdout=out, check=True)
    subprocess.run([pgtools.pg_tool("pg_restore"), "-f", os.devnull, str(copy)], check=True)
    seconds = time.monotonic() - started
    shutil.rmtree(work)
    work.mkdir()
    return seconds


def _verify(config: config_mod.Config) -> float:
    (config.state_dir / FILENAME).unlink(missing_ok=True)
    started = time.monotonic()
    report = run_verify(config, every=True)
    seconds = time.monotonic() - started
    assert report.exit_code == 0 and report.files, report.summary()
    return seconds


def main(size_mb: int) -> None:
    stop_cleanly_on_sigterm()
    logger.remove()
    with (tempfile.TemporaryDirectory(dir="/var/tmp") as tmp, PgServer() as pg,
          S3Server() as server):
        root = Path(tmp)
        bucket = server.create_bucket("verify-bench")
        (root / "backups" / "last").mkdir(parents=True)
        pg.createdb("bench")
        rows = size_mb * 1024 * 1024 // 70
        pg.psql(f"CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v "
                f"FROM generate_series(1, {rows}) g", "bench")
        names = {"custom": f"bench-{STAMP}.dump", "directory": f"bench2-{STAMP}"}
        pg.pg_dump("bench", root / "backups" / "last" / names["custom"], "-Fc")
        pg.pg_dump("bench", root / "backups" / "last" / names["directory"], "-Fd")
        subprocess.run([str(rclone_binary()), "-q", "copy", str(root / "backups"),
                        f"{_remote(server)}{bucket}/postgres"], check=True)
        creds = write_credentials(root / "creds", server.access_key, server.secret_key)
        path = root / "config.toml"
        job = {"schedule": "0 * * * *", "source": str(root / "backups"), "prefix": "postgres"}
        path.write_text(toml_dumps({"state_dir": str(root / "state"), "jobs": {"db-upload": job},
                                    "destinations": {"local": destination_table(server, bucket,
                                                                                creds)}}))
        os.chmod(path, 0o600)
        config = config_mod.load(path)
        work = root / "baseline"
        work.mkdir()
        listed = server.client().list_objects_v2(Bucket=bucket, Prefix="postgres/")["Contents"]
        keys = [o["Key"] for o in listed]
        size = sum(o["Size"] for o in listed)
        base: list[float] = []
        ours: list[float] = []
        for _ in range(ROUNDS):
            base.append(sum(_baseline(server, bucket, [k for k in keys if name in k], work, name)
                            for name in names.values()))
            ours.append(_verify(config))
        b, v = statistics.median(base), statistics.median(ours)
        print(f"{len(keys)} objects, {size / 2**20:.0f} MiB (a -Fc and a -Fd dump), median of "
              f"{ROUNDS}: baseline {b:.2f} s, verify {v:.2f} s, verify / baseline {v / b:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
