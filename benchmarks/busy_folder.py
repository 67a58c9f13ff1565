"""How many `run-once receipts-upload` runs a busy receipts folder lets through.

A writer thread adds one receipt every INTERVAL seconds (written in two halves, like a slow
writer) while `ardua-backup run-once receipts-upload` runs RUNS times in a row against a real
SeaweedFS with the real rclone container. Prints each run's exit code (0 success, 75 deferred),
what it skipped, how many still-young receipts reached S3 anyway (created between the
listing and the sync: README step 4) and whether one run after everything settled leaves S3
byte-identical to the folder.
Run: sudo .venv/bin/python -m benchmarks.busy_folder [RUNS] [INTERVAL_S] [QUIET_PERIOD]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker

from benchmarks import stop_cleanly_on_sigterm
from supervisor.containers import engine as docker_runner
from tests.conftest import write_credentials
from tests.harness import dockerd
from tests.harness.images import ensure_rclone_image
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

ROOT = Path(__file__).resolve().parent.parent


def _writer(folder: Path, interval_s: float, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        path = folder / f"busy-{i:04d}.pdf"
        with open(path, "wb") as f:
            f.write(os.urandom(4096))
            f.flush()
            stop.wait(interval_s / 2)
            f.write(os.urandom(4096))
        i += 1
        stop.wait(interval_s / 2)


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    interval_s = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    quiet = sys.argv[3] if len(sys.argv) > 3 else "10s"
    client = docker.DockerClient(base_url=dockerd.ensure_dockerd(), timeout=120)
    image = ensure_rclone_image(client)
    with S3Server() as server, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        receipts = work / "receipts"
        receipts.mkdir()
        old = time.time() - 3600
        for i in range(20):
            (receipts / f"old-{i:02d}.pdf").write_bytes(os.urandom(2048))
            os.utime(receipts / f"old-{i:02d}.pdf", (old, old))
        bucket = server.create_bucket("ardua-busy")
        creds = write_credentials(work / "creds", server.access_key, server.secret_key)
        cfg = work / "config.toml"
        cfg.write_text(toml_dumps({
            "state_dir": str(work / "state"),
            "s3": {"bucket": bucket, "region": server.region, "endpoint_url": server.endpoint_url,
                   "credentials_file": str(creds)},
            "rclone": {"image": image, "network_mode": "host"},
            "guard": {"quiet_period": quiet},
            "jobs": {"receipts-upload": {"schedule": "45 * * * *", "source": str(receipts),
                                         "prefix": "receipts"}},
        }))
        stop = threading.Event()
        writer = threading.Thread(target=_writer, args=(receipts, interval_s, stop), daemon=True)
        writer.start()
        events = client.events(decode=True, filters={
            "type": "container", "label": f"{docker_runner.LABEL_JOB}=receipts-upload"})
        seen: list[tuple[str, str, float]] = []  # (step, action, time)
        threading.Thread(target=lambda: seen.extend(
            (e["Actor"]["Attributes"].get(docker_runner.LABEL_STEP, ""), e.get("Action", ""),
             e.get("timeNano", 0) / 1e9) for e in events), daemon=True).start()
        codes = []
        try:
            for n in range(runs):
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-m", "supervisor", "--config", str(cfg), "run-once",
                     "receipts-upload"], capture_output=True, text=True, cwd=ROOT,
                    env={**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST}, timeout=300)
                codes.append(done.returncode)
                skipped = re.search(r"skipped young\s+(\d+)", done.stdout)
                print(f"run {n + 1}: exit {done.returncode} in {time.monotonic() - started:.1f} s"
                      f", files in folder {len(list(receipts.iterdir()))}"
                      f", skipped young {skipped.group(1) if skipped else '-'}"
                      f", in S3 {len(server.list_sizes(bucket, 'receipts/'))} objects")
        finally:
            stop.set()
            writer.join()
            events.close()
        # Receipts the runs uploaded although they were still young: created in the window
        # between the listing and the sync's read, so not in the exclude list.
        held = server.list_sizes(bucket, "receipts/busy-")
        half = [k for k, size in held.items() if size != 8192]
        print(f"young receipts in S3 before settling: {len(held)}, of them half-written: "
              f"{len(half)}")
        lists = [t for step, action, t in seen if (step, action) == ("list", "die")]
        syncs = [t for step, action, t in seen if (step, action) == ("sync", "start")]
        gaps = [s - max(t for t in lists if t < s) for s in syncs if any(t < s for t in lists)]
        if gaps:
            print(f"listing exit -> sync start: {min(gaps):.2f}-{max(gaps):.2f} s")
        for path in receipts.iterdir():  # everything settles; one more run fixes S3
            os.utime(path, (old, old))
        done = subprocess.run(
            [sys.executable, "-m", "supervisor", "--config", str(cfg), "run-once",
             "receipts-upload"], capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST}, timeout=300)
        local = {f"receipts/{p.name}": p.read_bytes() for p in receipts.iterdir()}
        mirror = server.list_keys(bucket, "receipts/")
        mirror.pop("receipts/.last_success", None)
        print(f"after they settled: exit {done.returncode}, S3 byte-identical to the folder: "
              f"{mirror == local} ({len(local)} files)")
    deferred = codes.count(75)
    print(f"{deferred} of {runs} runs deferred, {codes.count(0)} succeeded "
          f"(writer every {interval_s} s, guard.quiet_period {quiet})")
    return 0


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    sys.exit(main())
