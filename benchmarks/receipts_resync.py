"""An unchanged resync of N small receipts, per compare mode: `ardua-backup run-once` against a
bare `docker run rclone sync` with the same flags, measured in the same run.

For each mode (checksum, size, mtime) and each runner (bare, run-once):
- wall time of an unchanged resync with a warm page cache (median of 3), and with the receipts
  evicted from the page cache first (cold);
- receipt bytes read from disk by that cold run: every receipt is evicted (fsync, then
  posix_fadvise DONTNEED), the run happens, and mincore() says how many of their bytes are back
  in the page cache, i.e. were read;
- S3 requests: rclone's `--dump headers` lines of every container the run starts, plus every
  HTTP request of the daemon's own S3 clients (preflight, the guard's listing, the sentinel),
  counted at their HTTP session (in-process run, same code path as run-once).

Real rclone container, real SeaweedFS, the test Docker engine, loopback only.
Run: sudo .venv/bin/python -m benchmarks.receipts_resync [N]
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
from loguru import logger

from benchmarks import stop_cleanly_on_sigterm
from supervisor.config import load as config_mod
from supervisor.containers import engine as docker_runner
from supervisor.containers import jobs as rclone_containers
from supervisor.containers import rclone
from supervisor.core.states import SUCCESS
from supervisor.storage import s3
from supervisor.upload import compare
from supervisor.upload import run as pipeline
from tests.conftest import write_credentials
from tests.harness import dockerd
from tests.harness.images import ensure_rclone_image
from tests.harness.s3server import S3Server
from tests.harness.tomlw import dumps as toml_dumps

PAGE = os.sysconf("SC_PAGE_SIZE")
# Its own job name: the test engine is shared, and a run reaps exited containers of its job name.
JOB = f"bench-receipts-{os.getpid()}"
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]


def resident_bytes(path: Path) -> int:
    """Bytes of the file in the page cache (mincore; mapping does not read the file)."""
    size = path.stat().st_size
    if not size:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        pages = (size + PAGE - 1) // PAGE
        vec = (ctypes.c_ubyte * pages)()
        try:
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)
    return min(size, sum(v & 1 for v in vec) * PAGE)


def evict(files: list[Path]) -> None:
    os.sync()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def make_receipts(root: Path, n: int) -> list[Path]:
    rng = random.Random(11)
    settled = time.time() - 3600
    files = []
    for i in range(n):
        path = root / f"{2020 + i % 6}" / f"{i % 12 + 1:02d}" / f"receipt-{i:06d}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(5000, 15500)))
        ts = settled - i / 1000  # distinct mtimes, all older than guard.quiet_period
        os.utime(path, (ts, ts))
        files.append(path)
    return files


class Bench:
    def __init__(self, client, image: str, server: S3Server, work: Path, root: Path):
        self.client, self.image, self.server, self.root = client, image, server, root
        creds = write_credentials(work / "creds", server.access_key, server.secret_key)
        self.bucket = server.create_bucket("receipts-bench")
        self.paths: dict[str, Path] = {}
        for mode in compare.FLAGS:
            path = work / f"{mode}.toml"
            path.write_text(toml_dumps({
                "state_dir": str(work / "state"),
                "s3": {"bucket": self.bucket, "region": server.region,
                       "endpoint_url": server.endpoint_url, "credentials_file": str(creds)},
                "rclone": {"image": image, "network_mode": "host"},
                "jobs": {JOB: {"schedule": "45 * * * *", "source": str(root),
                                             "prefix": "receipts", "compare": mode,
                                             "deep_every": "3650d", "timeout": "2h"}},
            }))
            self.paths[mode] = path
        self.config = config_mod.load(self.paths["checksum"])

    def bare_spec(self, flags: tuple[str, ...], extra: tuple[str, ...] = ()):
        dest = self.config.destination()
        command = rclone.sync_command(dest, "receipts", 7200, flags) + list(extra)
        return rclone_containers.rclone_spec(
            self.config, dest, command,
            docker_runner.file_mount(str(self.root), rclone.SOURCE_MOUNT),
            {docker_runner.LABEL_JOB: "benchmark"})

    def bare(self, flags: tuple[str, ...]) -> None:
        result = docker_runner.run_oneshot(self.client, self.bare_spec(flags), 7200)
        summary = rclone.parse_log(result.stderr)
        assert rclone.judge_sync(result.exit_code, result.timed_out, summary).ok, result.stderr
        assert summary.stat("transfers") == 0, "not an unchanged resync"

    def run_once(self, mode: str) -> None:
        env = {**os.environ, "DOCKER_HOST": dockerd.DOCKER_HOST}
        result = subprocess.run(
            [sys.executable, "-m", "supervisor", "--config", str(self.paths[mode]), "run-once",
             JOB], capture_output=True, text=True, env=env, timeout=7200)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"compared by       {mode}" in result.stdout, result.stdout
        assert "transferred       0 files" in result.stdout, result.stdout

    def bare_requests(self, flags: tuple[str, ...]) -> int:
        spec = self.bare_spec(flags, ("--dump", "headers", "-vv"))
        result = docker_runner.run_oneshot(self.client, spec, 7200)
        assert result.exit_code == 0, result.stderr[-2000:]
        return result.stderr.count("HTTP REQUEST")

    def ours_requests(self, mode: str) -> int:
        """run_job in-process, every container's rclone dumping its requests, boto3 counted."""
        count = {"n": 0}
        real = docker_runner.run_oneshot

        def dumping(client, spec, timeout_s):
            """Every container's requests; rclone's plain-text notice that --dump implies -vv
            is taken out of the log the run judges."""
            spec = dataclasses.replace(spec, command=[*spec.command, "--dump", "headers"])
            result = real(client, spec, timeout_s)
            count["n"] += result.stderr.count("HTTP REQUEST")
            kept = [line for line in result.stderr.splitlines() if line.startswith("{")]
            return dataclasses.replace(result, stderr="\n".join(kept))

        config = config_mod.load(self.paths[mode])
        sessions = [s3.client(config.destination())._endpoint.http_session,
                    s3.client(config.destination(), fast=True)._endpoint.http_session]
        sends = [session.send for session in sessions]

        def counting(send):
            def wrapped(request):
                count["n"] += 1
                return send(request)
            return wrapped

        for session, send in zip(sessions, sends, strict=True):
            session.send = counting(send)  # every HTTP request, botocore's and the presigned
        docker_runner.run_oneshot = dumping
        try:
            report = pipeline.run_job(config, JOB, client=self.client)
        finally:
            docker_runner.run_oneshot = real
            for session, send in zip(sessions, sends, strict=True):
                session.send = send
        assert report.result == SUCCESS and report.files == 0, report.message
        assert report.compare == mode
        return count["n"]


def timed(fn: Callable[[], None]) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


@contextlib.contextmanager
def environment(n: int) -> Iterator[Bench]:
    client = docker.DockerClient(base_url=dockerd.ensure_dockerd(), timeout=300)
    image = ensure_rclone_image(client)
    with S3Server() as server, tempfile.TemporaryDirectory(prefix="ardua-bench-") as tmp:
        work = Path(tmp)
        root = work / "receipts"
        t0 = time.monotonic()
        files = make_receipts(root, n)
        bench = Bench(client, image, server, work, root)
        bench.files = files
        docker_runner.run_oneshot(client, bench.bare_spec(compare.FLAGS["checksum"]), 7200)
        bench.run_once("checksum")  # the first run_once is a deep pass: it is in the ledger now
        print(f"{n} receipts, {sum(p.stat().st_size for p in files)} B, made and uploaded in "
              f"{time.monotonic() - t0:.0f} s", file=sys.stderr)
        yield bench


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    rows = []
    with environment(n) as bench:
        total = sum(p.stat().st_size for p in bench.files)
        for mode, flags in compare.FLAGS.items():
            for runner, fn in (("bare rclone", lambda f=flags: bench.bare(f)),
                               ("run-once", lambda m=mode: bench.run_once(m))):
                fn()  # warm-up
                warm = statistics.median(timed(fn) for _ in range(3))
                evict(bench.files)
                assert sum(resident_bytes(p) for p in bench.files[:200]) == 0, "not evicted"
                cold = timed(fn)
                read = sum(resident_bytes(p) for p in bench.files)
                requests = (bench.bare_requests(flags) if runner == "bare rclone"
                            else bench.ours_requests(mode))
                rows.append((mode, runner, warm, cold, read, requests))
                print(f"{mode} {runner}: warm {warm:.2f} s, cold {cold:.2f} s, read {read} B, "
                      f"{requests} requests", file=sys.stderr)
    print(f"unchanged resync of {n} receipts ({total} B)")
    print(f"{'compare':<9} {'runner':<12} {'warm s':>7} {'/ bare':>7} {'cold s':>7} {'/ bare':>7} "
          f"{'bytes read':>12} {'share':>7} {'requests':>9}")
    bare = {mode: (w, c) for mode, runner, w, c, _r, _q in rows if runner == "bare rclone"}
    for mode, runner, warm, cold, read, requests in rows:
        print(f"{mode:<9} {runner:<12} {warm:>7.2f} {warm / bare[mode][0]:>6.2f}x {cold:>7.2f} "
              f"{cold / bare[mode][1]:>6.2f}x {read:>12} {read / total:>6.1%} {requests:>9}")
    return 0


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    sys.exit(main())
