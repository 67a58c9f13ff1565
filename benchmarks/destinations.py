"""`run_job` to two destinations against one: wall time (destinations in parallel and one after
the other) and bytes on the wire per destination for one postgres-backup-local day.

The day: a real `pg_dump -Fc` into `last/`, its `daily/`, `weekly/`, `monthly/` hard links and
the `-latest` symlinks (benchmarks.pbl_rotation.backup_day). Two SeaweedFS servers on 127.0.0.1
are the destinations. Each round uploads that day into fresh buckets (the day's first run: the
dump crosses once per destination, its links are copied server-side), then runs once more with
nothing changed (an unchanged rerun: the checksum pass reads the tree again). Runs, per round,
interleaved so drift hits all alike: one destination; two in parallel (a thread each); two
sequentially. Prints the median wall time of each, ÷ the one-destination run of the same round,
and the bytes each destination received ÷ the dump's bytes. Every mirror is checked against the
tree (key, size, MD5) after every run.
Run: sudo .venv/bin/python -m benchmarks.destinations [ROUNDS] [ROWS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

from benchmarks import stop_cleanly_on_sigterm
from benchmarks.pbl_rotation import local_md5s, mirror_md5s, quiet_engine, todays_dump
from supervisor.config import load as config_mod
from supervisor.core.states import SUCCESS
from supervisor.upload import run as pipeline
from tests.conftest import write_credentials
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

# Its own job name: the test engine is shared, and a run reaps exited containers of its job.
JOB = f"bench-dest-{os.getpid()}"
# (what, the job's destinations, in parallel)
KINDS = (("one destination", ["primary"], True), ("two, parallel", [], True),
         ("two, sequential", [], False))


def config(work: Path, image: str, servers: dict[str, S3Server], root: Path,
           tag: str, destinations: list[str]) -> config_mod.Config:
    """Two destinations with fresh buckets named after `tag`; the job copies to
    `destinations` ([]: both)."""
    tables = {}
    for name, server in servers.items():
        creds = write_credentials(work / f"creds-{name}", server.access_key, server.secret_key)
        tables[name] = {"bucket": server.create_bucket(f"bench-{name}-{tag}"),
                        "region": server.region, "endpoint_url": server.endpoint_url,
                        "credentials_file": str(creds)}
    job = {"schedule": "15 1 * * *", "source": str(root), "prefix": "postgres",
           "destinations": destinations}
    path = work / f"config-{tag}.toml"
    path.write_text(toml_dumps({
        "state_dir": str(work / "state"), "destinations": tables,
        "rclone": {"image": image, "network_mode": "host"},
        "jobs": {JOB: job},
    }))
    return config_mod.load(path)


def timed_run(cfg: config_mod.Config, parallel: bool,
              client: docker.DockerClient) -> tuple[float, pipeline.RunReport]:
    t0 = time.monotonic()
    report = pipeline.run_job(cfg, JOB, client=client, parallel=parallel)
    took = time.monotonic() - t0
    assert report.result == SUCCESS, report.summary()
    return took, report


def check(cfg: config_mod.Config, servers: dict[str, S3Server], root: Path) -> None:
    local = local_md5s(root)
    for dest in cfg.destinations_of(cfg.job(JOB)):
        got = mirror_md5s(servers[dest.name].client(), dest.bucket, "postgres")
        assert got == local, f"{dest.name} mirror differs from the tree"


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    client, image = quiet_engine()
    with (S3Server() as primary, S3Server() as offsite, PgServer() as pg,
          tempfile.TemporaryDirectory(prefix="ardua-bench-") as tmp):
        servers = {"primary": primary, "offsite": offsite}
        work, root = Path(tmp), Path(tmp) / "backups"
        root.mkdir()
        dump = todays_dump(pg, root, rows)
        files = len(local_md5s(root))
        # Warm-up, not counted: the first run of a process loads botocore's models, etc.
        timed_run(config(work, image, servers, root, "warm", []), True, client)
        first: dict[str, list[float]] = {k: [] for k, _, _ in KINDS}
        rerun: dict[str, list[float]] = {k: [] for k, _, _ in KINDS}
        sent: dict[str, list[int]] = {"primary": [], "offsite": []}
        for r in range(rounds):
            for i, (kind, destinations, parallel) in enumerate(KINDS):
                cfg = config(work, image, servers, root, f"{r}-{i}", destinations)
                took, report = timed_run(cfg, parallel, client)
                check(cfg, servers, root)
                first[kind].append(took)
                if len(report.destinations) > 1:
                    for d in report.destinations:
                        sent[d.name].append(d.bytes)
                took, _ = timed_run(cfg, parallel, client)
                rerun[kind].append(took)
            print(f"round {r + 1}: " + ", ".join(f"{k} {first[k][-1]:.2f}/{rerun[k][-1]:.2f} s"
                                                for k, _, _ in KINDS), file=sys.stderr)
    print(f"one postgres-backup-local day: a {dump} B dump, {files} keys (last/ + 3 hard links, "
          f"-latest symlinks skipped); {rounds} rounds, median; mirrors == tree after every run")
    print(f"{'run_job to':<18} {'first run s':>12} {'÷ one':>7} {'unchanged s':>12} {'÷ one':>7}")
    base_first, base_rerun = statistics.median(first[KINDS[0][0]]), statistics.median(
        rerun[KINDS[0][0]])
    for kind, _, _ in KINDS:
        f, u = statistics.median(first[kind]), statistics.median(rerun[kind])
        print(f"{kind:<18} {f:>12.2f} {f / base_first:>6.2f}x {u:>12.2f} {u / base_rerun:>6.2f}x")
    print(f"{'destination':<18} {'bytes sent (first run)':>23} {'÷ dump bytes':>13}")
    for name, values in sent.items():
        print(f"{name:<18} {statistics.median(values):>23.0f} "
              f"{statistics.median(values) / dump:>12.3f}x")
    return 0


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    sys.exit(main())
