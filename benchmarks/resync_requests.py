"""How many S3 requests an unchanged resync costs, by rclone flag set.

Why the sync uses `--checksum --fast-list`: with the default (size + modification time) rclone
reads every object's mtime from its metadata, one HEAD per object. This uploads N files once,
then re-syncs them unchanged with each flag set and counts the HTTP requests rclone logs with
`--dump headers`. Baseline: rclone's defaults, in the same run. Real rclone container, real
SeaweedFS, the test Docker engine. Run: sudo .venv/bin/python -m benchmarks.resync_requests [N]
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path

import docker

from benchmarks import stop_cleanly_on_sigterm
from supervisor.containers import engine as docker_runner
from supervisor.containers import rclone
from supervisor.storage.destination import Destination
from tests.conftest import write_credentials
from tests.harness import dockerd
from tests.harness.images import ensure_rclone_image
from tests.harness.s3server import S3Server

# A busy folder: ours plus the files changed within guard.quiet_period, excluded one by one
# (10 of the synced files and 990 more names, the pipeline's bound is 1000) ...
_YOUNG = [f"d{i % 20}/f{i}.bin" for i in range(0, 500, 50)] + [f"young-{i}.bin" for i in range(990)]
FLAG_SETS = {
    "default (size+mtime)": [],
    "--fast-list": ["--fast-list"],
    "--checksum --fast-list (ours)": ["--checksum", "--fast-list"],
    "ours + 1000 --exclude (busy)": ["--checksum", "--fast-list",
                                     *[a for y in _YOUNG for a in ("--exclude",
                                                                   rclone.exact_pattern(y))]],
    # ... versus rclone's own age filter, which needs every object's mtime (a HEAD each).
    "ours + --min-age 2m": ["--checksum", "--fast-list", "--min-age", "2m"],
}


def _sync(client, image, s3cfg: Destination, creds: Path, src: Path, extra: list[str]) -> int:
    spec = docker_runner.Spec(
        image=image,
        command=["sync", f"{rclone.SOURCE_MOUNT}/", s3cfg.remote("bench"),
                 "--config", "", "--dump", "headers", "-vv", *extra],
        mounts=[docker_runner.file_mount(str(src), rclone.SOURCE_MOUNT),
                *docker_runner.credentials_mounts(s3cfg, rclone.CREDENTIALS_MOUNT)],
        env=rclone.environment(s3cfg), labels={docker_runner.LABEL_JOB: "benchmark"},
        network_mode="host", cap_add=["DAC_READ_SEARCH"],
    )
    result = docker_runner.run_oneshot(client, spec, 600)
    assert result.exit_code == 0, result.stderr[-2000:]
    return result.stderr.count("HTTP REQUEST")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    client = docker.DockerClient(base_url=dockerd.ensure_dockerd(), timeout=120)
    image = ensure_rclone_image(client)
    with S3Server() as server, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "src"
        for i in range(n):
            (src / f"d{i % 20}").mkdir(parents=True, exist_ok=True)
            (src / f"d{i % 20}" / f"f{i}.bin").write_bytes(secrets.token_bytes(256))
        bucket = server.create_bucket("ardua-bench")
        creds = write_credentials(work / "creds", server.access_key, server.secret_key)
        s3cfg = Destination(bucket, server.region, server.endpoint_url, creds, "default")
        _sync(client, image, s3cfg, creds, src, [])  # first upload, not measured
        counts = {name: _sync(client, image, s3cfg, creds, src, flags)
                  for name, flags in FLAG_SETS.items()}
    base = counts["default (size+mtime)"]
    print(f"unchanged resync of {n} objects: S3 requests per flag set")
    print(f"{'flags':<34} {'requests':>9} {'vs default':>11}")
    for name, count in counts.items():
        print(f"{name:<34} {count:>9} {count / base:>10.3f}x")
    return 0


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    sys.exit(main())
