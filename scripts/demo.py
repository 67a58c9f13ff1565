"""Set up everything locally and show the whole cycle, on embedded defaults.

A local S3-compatible server (SeaweedFS on 127.0.0.1, versioning on), a throwaway PostgreSQL
whose real `pg_dump -Fc` dumps are laid out exactly like postgres-backup-local's /backups in a
Docker named volume, the locally built rclone and PostgreSQL images, a config file pointing at
all of it - then both uploads (`ardua-backup run-once`), what landed in S3, a restore drill from
S3 with its RTO, `verify` (every object read back and proven), `status` (the health table:
green only once a drill has proved the copy restores and verify has proven every object), and
`history`. No cloud account.
Everything is torn down at the end unless --keep is given: then S3, PostgreSQL and a running
daemon (`ardua-backup run` on the demo config) stay, to try `status`, `next`, `restore list`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker

from tests.conftest import deep_merge, write_credentials
from tests.harness import dockerd
from tests.harness.files import settle
from tests.harness.images import ensure_debian_pg_image, ensure_rclone_image
from tests.harness.pgimage import ensure_postgres_image
from tests.harness.pgtree import fill_volume, make_backups_tree
from tests.harness.postgres import PgServer
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

BUCKET = "ardua-backups"


def _dumps(pg: PgServer, work: Path) -> list[tuple[datetime, bytes]]:
    pg.createdb("ardua")
    pg.psql("CREATE TABLE orders (id serial PRIMARY KEY, customer text, total numeric, "
            "created_at timestamptz DEFAULT now())", db="ardua")
    now = datetime.now(UTC).replace(microsecond=0)
    out = []
    for days_ago in (2, 1, 0.01):  # the newest finished about 15 minutes ago
        pg.psql("INSERT INTO orders (customer, total) SELECT 'customer ' || g, g * 1.5 "
                "FROM generate_series(1, 500) g", db="ardua")
        dump = pg.pg_dump("ardua", work / f"{days_ago}.dump")
        out.append((now - timedelta(days=days_ago), dump.read_bytes()))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave S3, PostgreSQL, the volume and a running daemon")
    args = parser.parse_args()
    client = docker.DockerClient(base_url=dockerd.ensure_dockerd(), timeout=120)
    image = ensure_rclone_image(client)
    drill_image = ensure_postgres_image(client, ensure_debian_pg_image(client))
    work = Path(tempfile.mkdtemp(prefix="ardua-demo-"))
    volume = f"ardua-demo-pg_backups-{secrets.token_hex(3)}"
    s3server, pg = S3Server().start(), PgServer().start()
    try:
        s3server.create_bucket(BUCKET)
        s3server.client().put_bucket_versioning(
            Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        fill_volume(client, volume, lambda root: make_backups_tree(root, _dumps(pg, work)))
        receipts = work / "receipts"
        for name in ("2025/12/Invoice 0001.pdf", "2025/12/reçu café.jpg"):
            (receipts / name).parent.mkdir(parents=True, exist_ok=True)
            (receipts / name).write_bytes(secrets.token_bytes(4096))
        settle(receipts)
        creds = write_credentials(work / "aws-credentials", s3server.access_key,
                                  s3server.secret_key)
        example = (Path(__file__).resolve().parent.parent / "config.example.toml").read_text()
        data = deep_merge(tomllib.loads(example), {
            "state_dir": str(work / "state"),
            "destinations": {"primary": {
                "bucket": BUCKET, "region": s3server.region,
                "endpoint_url": s3server.endpoint_url, "credentials_file": str(creds)}},
            "rclone": {"image": image, "network_mode": "host"},
            "jobs": {"db-upload": {"source": f"volume:{volume}"},
                     "receipts-upload": {"source": str(receipts)}},
            # No postgres-backup-local container here: its dumps were laid out by hand.
            "health": {"db_container": "", "db_health_url": ""},
            "drill": {"image": drill_image, "network_mode": "host", "port": _free_port()},
        })
        config = work / "config.toml"
        config.write_text(toml_dumps(data))
        print(f"config: {config}\n", flush=True)
        env = {"DOCKER_HOST": dockerd.DOCKER_HOST, "PATH": "/usr/bin:/bin"}

        def ardua(*command: str) -> int:
            print(f"\n$ ardua-backup {' '.join(command)}", flush=True)
            return subprocess.call([sys.executable, "-m", "supervisor", "--config",
                                    str(config), *command], env=env)

        codes = [ardua("run-once", job) for job in ("db-upload", "receipts-upload")]
        print(f"\ns3://{BUCKET}/ now holds:")
        for key, size in sorted(s3server.list_sizes(BUCKET).items()):
            print(f"  {size:>9}  {key}")
        print(f"\nsentinel: {s3server.get(BUCKET, 'postgres/.last_success').decode().strip()}")
        codes += [ardua("drill"), ardua("verify"), ardua("status"), ardua("history")]
        if args.keep:
            log = open(work / "daemon.log", "w")  # noqa: SIM115 - the daemon outlives this script
            daemon = subprocess.Popen(
                [sys.executable, "-m", "supervisor", "--config", str(config), "run"],
                env={**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, stdout=log,
                stderr=log, start_new_session=True)
            print(f"\nkept: S3 {s3server.endpoint_url} (keys in {creds}), PostgreSQL port "
                  f"{pg.port}, volume {volume}, files in {work}, and the daemon (pid "
                  f"{daemon.pid}, log {work}/daemon.log). Try:\n"
                  f"  DOCKER_HOST={dockerd.DOCKER_HOST} .venv/bin/ardua-backup --config {config} "
                  f"status | next | restore list\n"
                  f"Stop the daemon with: kill {daemon.pid}")
        return max(codes)
    finally:
        if not args.keep:
            s3server.close()
            pg.close()
            client.volumes.get(volume).remove(force=True)
            subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
