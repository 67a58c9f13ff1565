"""The daemon watches health and tells a person: the real `ardua-backup run` with real uploads,
a stale dump in a real volume, apprise posting to an HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.harness.cli import run_cli, service
from tests.harness.files import settle
from tests.harness.pgtree import fill_volume, make_backups_tree
from tests.harness.poll import poll

pytestmark = pytest.mark.docker
TOKEN = "hook-" + "7f3a9c" * 4  # stands for the secret part of a real notification URL


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.posts = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a dead notification service)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_stale_dump_alerts_once_then_recovers_once(
    receiver, hung_port, tmp_path, s3server, bucket, pg_volume, docker_client, write_config,
) -> None:
    now = datetime.now(UTC)
    fill_volume(docker_client, pg_volume, lambda root: make_backups_tree(
        root, [(now - timedelta(hours=30), os.urandom(4000))]))
    s3server.client().put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    # A good restore drill yesterday (as storage.markers.format_marker writes it): without one
    # the verdict cannot be OK.
    s3server.client().put_object(Bucket=bucket, Key="postgres/.last_restore_drill", Body=(
        f"{now - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ} OK last/ardua-x.dump 40s\n").encode())
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r1.pdf").write_bytes(b"receipt one")
    settle(receipts)
    urls = tmp_path / "alert-urls"
    urls.write_text(f"json://127.0.0.1:{receiver.server_port}/{TOKEN}\n"
                    f"json://127.0.0.1:{hung_port}/{TOKEN}\n")
    urls.chmod(0o600)
    cfg = write_config(
        tmp_path, s3server, bucket, db_volume=pg_volume, receipts_dir=receipts,
        jobs={"receipts-upload": {"schedule": "* * * * *"},
              "db-upload": {"schedule": "* * * * *"}},
        health={"db_container": ""},
        alerts={"urls_file": str(urls), "check_every": "2s"},
    )
    sent = run_cli("alerts", "test", config=cfg, timeout=60)
    assert sent.returncode == 1, sent.stdout  # one of the two URLs is dead
    assert "sent    json://127.0.0.1\nFAILED  json://127.0.0.1" in sent.stdout
    assert TOKEN not in sent.stdout + sent.stderr
    assert [path for path, _ in receiver.posts] == [f"/{TOKEN}"]
    receiver.posts.clear()

    with service(cfg, tmp_path) as (proc, notify):
        notify.expect("READY", "1", timeout=60)
        # Uploads run on schedule although one notification URL never answers.
        notify.status_until(lambda s: "db-upload: success" in s and "receipts-upload: success" in s,
                            timeout=120)
        critical = poll(lambda: [p for _, p in receiver.posts if "CRITICAL" in p["title"]],
                        timeout=90, what="a CRITICAL notification")
        assert critical[0]["title"].endswith(": CRITICAL")
        # The first check may come before the first uploads ("Both dump and upload broken"):
        # the state is what counts, and the dump is named in the design's words either way.
        assert "ardua's newest dump 1d 6h old" in critical[0]["message"]
        # The verdict is re-checked every 2 s and stays CRITICAL: no repeat.
        for _ in range(3):
            notify.status_until(lambda s: s.startswith("CRITICAL"), timeout=60)
        assert len(receiver.posts) == 1, receiver.posts

        # postgres-backup-local writes a fresh dump: one recovery notification, then quiet.
        fill_volume(docker_client, pg_volume, lambda root: make_backups_tree(
            root, [(now - timedelta(minutes=5), os.urandom(4000))]))
        recovered = poll(lambda: [p for _, p in receiver.posts if "recovered" in p["title"]],
                         timeout=90, what=lambda: (
                             f"a recovery notification; sent "
                             f"{[p['title'] for _, p in receiver.posts]}, last STATUS "
                             f"{[m.get('STATUS') for m in notify.seen[-2:]]}"))
        assert recovered[0]["title"].endswith(": OK (recovered from CRITICAL)")
        for _ in range(3):
            notify.status_until(lambda s: s.startswith("OK"), timeout=60)
        assert len(receiver.posts) == 2, receiver.posts
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "ALERT_STATE=CRITICAL" in log and "ALERT_SENT=1/2" in log, log[-3000:]
    assert TOKEN not in log
    assert f"127.0.0.1:{receiver.server_port}" not in log  # scheme://host only, no port either
