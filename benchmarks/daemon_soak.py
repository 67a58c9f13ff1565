"""Memory and file descriptors over many runs of the daemon's run path.

The daemon runs every job as `sinks.record(job, pipeline.run_job)` on a worker thread (ledger,
metrics textfile, heartbeat, final journal line). This runs that path N times back to back in
one process against a small receipts job (a new receipt each run, so every run uploads), and
prints RSS and open fds every N/10 runs, against the process right after the daemon's imports
(baseline, same process). RSS is also read after every run: the summary gives the peak and the
least-squares slope over the second half (the steady state).

The measured process is a child that imports only what the daemon imports (plus this file): the
parent holds the test harness (SeaweedFS and its boto3 clients, the rclone image, pytest-free).
In the measured process itself the harness moved RSS by up to 10 MB from one run of this script
to the next (its clients' freed memory), more than the change being measured.
Each run adds a receipt, so each run lists one more file here and in S3, and what a run
allocates and frees grows with it: over runs 52-302 (tracemalloc) the Python heap that stays
grew 8 KB per 100 runs, its peak 150 KB per 100 runs, the RSS 250 KB per 100 runs. `rewrite`
rewrites one receipt every run instead (another size, compare = "size"): the same work each run.
Real rclone containers, real SeaweedFS, loopback. 1,000 runs take 10-15 minutes.
Run: sudo .venv/bin/python -m benchmarks.daemon_soak [N] [rewrite]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
from loguru import logger

from benchmarks import stop_cleanly_on_sigterm
from supervisor.config import load as config_mod
from supervisor.core.states import SUCCESS
from supervisor.record import sinks
from supervisor.upload import run as pipeline


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--measured":
        return measured(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5] == "rewrite")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    mode = sys.argv[2] if len(sys.argv) > 2 else "grow"
    if mode not in ("grow", "rewrite"):
        sys.exit("usage: python -m benchmarks.daemon_soak [N] [grow|rewrite]")
    from tests.harness import dockerd  # the harness: only in this (the parent) process
    from tests.harness.images import ensure_rclone_image
    from tests.harness.s3server import S3Server
    from tests.harness.tomlw import dumps as toml_dumps

    docker_host = dockerd.ensure_dockerd()
    image = ensure_rclone_image(docker.DockerClient(base_url=docker_host, timeout=120))
    job = f"bench-soak-{os.getpid()}"
    with S3Server() as server, tempfile.TemporaryDirectory(prefix="ardua-soak-") as tmp:
        work = Path(tmp)
        receipts = work / "receipts"
        receipts.mkdir()
        creds = work / "creds"
        creds.write_text(f"[default]\naws_access_key_id = {server.access_key}\n"
                         f"aws_secret_access_key = {server.secret_key}\n")
        creds.chmod(0o600)
        path = work / "c.toml"
        path.write_text(toml_dumps({
            "state_dir": str(work / "state"),
            "s3": {"bucket": server.create_bucket(f"soak-{os.getpid()}"), "region": server.region,
                   "endpoint_url": server.endpoint_url, "credentials_file": str(creds)},
            "rclone": {"image": image, "network_mode": "host"},
            "metrics": {"textfile": str(work / "ardua.prom")},
            "jobs": {job: {"schedule": "* * * * *", "source": str(receipts),
                           "prefix": "receipts",
                           # an old mtime is older than the last upload: rewrite changes sizes
                           "compare": "size" if mode == "rewrite" else "mtime"}},
        }))
        return subprocess.run([sys.executable, "-m", "benchmarks.daemon_soak", "--measured",
                               str(path), docker_host, str(n), mode], check=False).returncode


def measured(path: Path, docker_host: str, n: int, rewrite: bool) -> int:
    """The measured process: the daemon's imports, its docker client, N runs."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    base_rss, base_fds = rss_kb(), fds()
    client = docker.DockerClient(base_url=docker_host, timeout=120)
    cfg = config_mod.load(path)
    (job, job_cfg), = cfg.jobs.items()
    receipts = Path(str(job_cfg.source))
    recorder = sinks.for_runs(cfg)
    rows = []
    every: list[int] = []  # RSS after each run, KB
    uploaded = 0
    t0, start = time.monotonic(), time.time()
    for i in range(1, n + 1):
        receipt = receipts / f"r{1 if rewrite else i:05d}.pdf"
        receipt.write_bytes(os.urandom(2048 + i % 2))
        old = start - 3600 + i  # old enough for the guard
        os.utime(receipt, (old, old))
        result: dict = {}

        def one_run(out: dict = result) -> None:
            out["report"] = recorder.record(job, lambda run_id: pipeline.run_job(
                cfg, job, run_id=run_id, client=client))

        worker = threading.Thread(target=one_run)  # the daemon runs jobs on worker threads
        worker.start()
        worker.join()
        assert result["report"].result == SUCCESS, result["report"].message
        uploaded += result["report"].files
        every.append(rss_kb())
        if i == 1 or i % max(1, n // 10) == 0:
            rows.append((i, every[-1], fds(), time.monotonic() - t0))
            print(f"run {i}: RSS {rows[-1][1] / 1024:.1f} MB, {rows[-1][2]} fds",
                  file=sys.stderr)
    each = "the one receipt rewritten" if rewrite else "one new receipt"
    print(f"{n} runs of the daemon's run path in one process (Sinks.record(run_job) on a "
          f"worker thread; {each} each; {uploaded} files uploaded)")
    print(f"after imports: RSS {base_rss / 1024:.1f} MB, {base_fds} fds")
    print(f"{'runs':>6} {'RSS MB':>8} {'vs run 1':>9} {'fds':>5} {'s':>7}")
    for i, rss, nfd, elapsed in rows:
        print(f"{i:>6} {rss / 1024:>8.1f} {rss / rows[0][1]:>8.3f}x {nfd:>5} {elapsed:>7.0f}")
    half = every[n // 2:]
    print(f"second half (runs {n // 2 + 1}-{n}): RSS min {min(half) / 1024:.1f}, "
          f"max {max(half) / 1024:.1f} MB, slope {slope(half) * 100:+.1f} KB per 100 runs")
    return 0


def slope(values: list[int]) -> float:
    """Least-squares slope of values against their index (KB per run)."""
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    return (sum((x - mx) * (y - my) for x, y in enumerate(values))
            / sum((x - mx) ** 2 for x in range(n)))


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    sys.exit(main())
