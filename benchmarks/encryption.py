"""Upload with client-side encryption (rclone crypt) against without: throughput of the same
first run, and P1 (bytes on the wire ÷ the dump's bytes) with encryption on.

The data: one postgres-backup-local day (benchmarks.pbl_rotation.backup_day: a real
`pg_dump -Fc` in `last/`, its `daily/`, `weekly/`, `monthly/` hard links, the `-latest`
symlinks). One SeaweedFS on 127.0.0.1. Each round uploads that day into two fresh buckets, one
plain and one encrypted, in alternating order so drift hits both alike (the day's first run:
the dump crosses once, its links are copied server-side). Prints the median wall time of the
run, the throughput (dump bytes ÷ wall time), the bytes the sync container sent ÷ the dump's
bytes, and the encrypted run ÷ the plain one. Every mirror is checked after each run: the plain
one by key, size and MD5, the encrypted one by `.bin` key and crypt's size for each file.
Run: sudo .venv/bin/python -m benchmarks.encryption [ROUNDS] [ROWS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import stop_cleanly_on_sigterm
from benchmarks.pbl_rotation import local_md5s, mirror_md5s, quiet_engine, todays_dump
from supervisor.config import load as config_mod
from supervisor.core.states import SUCCESS
from supervisor.storage import crypt
from supervisor.upload import run as pipeline
from tests.conftest import write_credentials
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

# Its own job name: the test engine is shared, and a run reaps exited containers of its job.
JOB = f"bench-crypt-{os.getpid()}"
KINDS = ("plain", "encrypted")


def config(work: Path, image: str, server: S3Server, root: Path, tag: str,
           encrypted: bool) -> config_mod.Config:
    creds = write_credentials(work / "creds", server.access_key, server.secret_key)
    table = {"bucket": server.create_bucket(f"bench-crypt-{tag}"), "region": server.region,
             "endpoint_url": server.endpoint_url, "credentials_file": str(creds)}
    if encrypted:
        key = work / "crypt.toml"
        key.write_text('password = "benchmark password"\npassword2 = "benchmark salt"\n')
        key.chmod(0o600)
        table["encryption_key_file"] = str(key)
    path = work / f"config-{tag}.toml"
    path.write_text(toml_dumps({
        "state_dir": str(work / "state"), "s3": table,
        "rclone": {"image": image, "network_mode": "host"},
        "jobs": {JOB: {"schedule": "15 1 * * *", "source": str(root), "prefix": "postgres"}},
    }))
    return config_mod.load(path)


def check(cfg: config_mod.Config, server: S3Server, root: Path) -> None:
    local = local_md5s(root)
    dest = cfg.destination()
    if not dest.encrypted:
        assert mirror_md5s(server.client(), dest.bucket, "postgres") == local
        return
    held = {k[len("postgres/"):]: size for k, size in
            server.list_sizes(dest.bucket, "postgres/").items() if ".last_" not in k}
    assert held == {crypt.object_name(rel): crypt.encrypted_size(size)
                    for rel, (size, _) in local.items()}, "encrypted mirror differs"


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 400_000
    client, image = quiet_engine()
    with (S3Server() as server, PgServer() as pg,
          tempfile.TemporaryDirectory(prefix="ardua-bench-") as tmp):
        work, root = Path(tmp), Path(tmp) / "backups"
        root.mkdir()
        dump = todays_dump(pg, root, rows)
        files = len(local_md5s(root))
        for kind in KINDS:  # warm-up, not counted (botocore's models, the image's pages)
            pipeline.run_job(config(work, image, server, root, f"warm-{kind}",
                                    kind == "encrypted"), JOB, client=client)
        took: dict[str, list[float]] = {k: [] for k in KINDS}
        sent: dict[str, list[int]] = {k: [] for k in KINDS}
        for r in range(rounds):
            for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):
                cfg = config(work, image, server, root, f"{r}-{kind}", kind == "encrypted")
                t0 = time.monotonic()
                report = pipeline.run_job(cfg, JOB, client=client)
                took[kind].append(time.monotonic() - t0)
                assert report.result == SUCCESS, report.summary()
                check(cfg, server, root)
                sent[kind].append(report.destinations[0].bytes)
            print(f"round {r + 1}: " + ", ".join(f"{k} {took[k][-1]:.2f} s" for k in KINDS),
                  file=sys.stderr)
    print(f"one postgres-backup-local day: a {dump} B dump, {files} keys (last/ + 3 hard links); "
          f"{rounds} rounds, median; mirrors checked after every run")
    print(f"{'first run':<10} {'wall s':>8} {'MB/s':>7} {'sent ÷ dump (P1)':>17}")
    for kind in KINDS:
        t, b = statistics.median(took[kind]), statistics.median(sent[kind])
        print(f"{kind:<10} {t:>8.2f} {dump / t / 1e6:>7.1f} {b / dump:>16.4f}x")
    ratio = statistics.median(took["encrypted"]) / statistics.median(took["plain"])
    print(f"encrypted ÷ plain wall time: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    sys.exit(main())
