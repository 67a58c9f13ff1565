"""Dump -> S3 lag, push (postgres-backup-local's post-backup webhook) against the schedule, and
the time from its `error` webhook to the notification (docs/webhook.md).

The real daemon (`ardua-backup run` in a subprocess) with the default guard.quiet_period (2 min),
db-upload scheduled every minute (the seed's is hourly at :15: its lag is the wait for :15 plus
the same run), real rclone containers, one SeaweedFS on loopback, an HTTP receiver for apprise's
json:// notification. Each dump is SIZE_MB of random bytes (a -Fc -Z6 dump does not compress
further), written into the volume as backup.sh lays it out, its mtime the end of the write:

- push: the dump, then pbl's own hooks/00-webhook post-backup (tests/harness/pbl);
- scheduled: the dump and no webhook: the next minute's run defers it (younger than the quiet
  period) and its retry uploads it;
- error: hooks/00-webhook error, until the receiver holds the notification.

Lag = the run ledger's end of the first successful db-upload run started after the dump's mtime
minus that mtime: what ardua_backup_dump_to_s3_seconds reports.
Run: sudo .venv/bin/python -m benchmarks.webhook_lag [SIZE_MB]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import docker

from benchmarks import stop_cleanly_on_sigterm
from supervisor.core.states import SUCCESS
from supervisor.record.ledger import Ledger
from tests.conftest import write_credentials
from tests.harness import dockerd
from tests.harness.cli import service
from tests.harness.images import ensure_rclone_image
from tests.harness.pbl import run_hook
from tests.harness.pgtree import fill_volume, make_backups_tree
from tests.harness.poll import poll
from tests.harness.receiver import receiving
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

TOKEN = "b3nchb3nch" * 4
PORT = 18187


def _config(tmp: Path, server: S3Server, bucket: str, volume: str, image: str,
            notify_port: int) -> Path:
    creds = write_credentials(tmp / "aws-credentials", server.access_key, server.secret_key)
    token = tmp / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    urls = tmp / "alert-urls"
    urls.write_text(f"json://127.0.0.1:{notify_port}/notify\n")
    urls.chmod(0o600)
    data = {
        "state_dir": str(tmp / "state"),
        "s3": {"bucket": bucket, "region": server.region, "endpoint_url": server.endpoint_url,
               "credentials_file": str(creds)},
        "rclone": {"image": image, "network_mode": "host"},
        "jobs": {"db-upload": {"schedule": "* * * * *", "catch_up": False,
                               "source": f"volume:{volume}", "prefix": "postgres"}},
        "health": {"db_container": ""},
        "webhook": {"listen": f"127.0.0.1:{PORT}", "token_file": str(token)},
        "alerts": {"urls_file": str(urls), "check_every": "1h"},
    }
    path = tmp / "config.toml"
    path.write_text(toml_dumps(data))
    return path


def _dump(client: docker.DockerClient, volume: str, size: int) -> datetime:
    body = os.urandom(size)
    now = datetime.now(UTC)
    fill_volume(client, volume, lambda root: make_backups_tree(root, [(now, body)]))
    return now


def _lag(state_dir: Path, dump_end: datetime, timeout: float) -> float:
    """Seconds from dump_end to the end of the first successful run started after it."""
    ledger = Ledger(state_dir)

    def uploaded() -> float | None:
        runs = [r for r in ledger.history("db-upload", 50)
                if r.result == SUCCESS and r.started_at >= dump_end]
        first = min(runs, key=lambda r: r.started_at) if runs else None
        return (first.finished_at - dump_end).total_seconds() if first else None

    return poll(uploaded, "the upload", timeout=timeout, interval=0.2)


def main() -> int:
    stop_cleanly_on_sigterm()
    size = int(float(sys.argv[1] if len(sys.argv) > 1 else 50) * 1_000_000)
    client = docker.DockerClient(base_url=dockerd.ensure_dockerd(), timeout=120)
    os.environ["DOCKER_HOST"] = dockerd.DOCKER_HOST
    image = ensure_rclone_image(client)
    volume = f"bench-webhook-{os.getpid()}"
    client.volumes.create(name=volume, labels={"ardua-test": "1"})
    url = f"http://127.0.0.1:{PORT}/hooks/pbl/{TOKEN}"
    try:
        with tempfile.TemporaryDirectory() as tmpdir, S3Server() as server, \
                receiving() as receiver:
            tmp = Path(tmpdir)
            cfg = _config(tmp, server, server.create_bucket("bench-webhook"), volume, image,
                          receiver.server_port)
            with service(cfg, tmp) as (proc, notify):
                notify.expect("READY", "1", timeout=60)
                # Away from a minute boundary, so the schedule does not run first.
                poll(lambda: 5 <= datetime.now().second <= 40, "second 5-40", timeout=60)
                pushed = _dump(client, volume, size)
                answer = run_hook("post-backup", url)
                assert answer.stdout.endswith("202"), answer
                push_lag = _lag(tmp / "state", pushed, 120)
                scheduled = _dump(client, volume, size)
                sched_lag = _lag(tmp / "state", scheduled, 400)
                told = len(receiver.posts)
                failed = time.monotonic()
                run_hook("error", url)
                poll(lambda: any("reported an error" in p[1]["message"]
                                 for p in receiver.posts[told:]), "the notification", 60)
                alerted = time.monotonic() - failed
                proc.terminate()
                proc.wait(timeout=60)
    finally:
        client.volumes.get(volume).remove(force=True)
    print(json.dumps({"dump_mb": size / 1e6, "push_lag_s": round(push_lag, 1),
                      "scheduled_lag_s": round(sched_lag, 1),
                      "error_to_notification_s": round(alerted, 2)}))
    print(f"{size / 1e6:.0f} MB dump -> S3: webhook {push_lag:.1f} s, every-minute schedule "
          f"{sched_lag:.1f} s ({sched_lag / push_lag:.0f}x); error -> notification "
          f"{alerted:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
