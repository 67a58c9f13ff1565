"""A private Docker engine for the tests.

It listens only on a unix socket under /run/ardua-test, has no bridge and no iptables rules, so
containers can only use ``network_mode="host"`` (or none). It is infrastructure shared between test
sessions, like a system service: once started it is left running; ``stop`` shuts it down.

CLI: ``python -m tests.harness.dockerd start|stop|status``. ``start`` prints DOCKER_HOST on stdout.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (it is not our child, so init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _pids_with_arg(arg: str) -> list[int]:
    """Live processes whose NUL-separated command line contains ``arg``."""
    needle = arg.encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


@dataclass(frozen=True)
class Engine:
    """One dockerd: its socket and runtime state under ``run_dir``, images under ``data_root``."""

    run_dir: Path
    data_root: Path
    logfile: Path

    @property
    def socket(self) -> str:
        return str(self.run_dir / "docker.sock")

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    def ping(self, timeout: float = 2.0) -> bool:
        """True when the engine answers ``GET /_ping`` with ``OK``."""
        if not os.path.exists(self.socket):
            return False
        conn = _UnixHTTPConnection(self.socket, timeout)
        try:
            conn.request("GET", "/_ping")
            resp = conn.getresponse()
            return resp.status == 200 and resp.read().strip() == b"OK"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def pid(self) -> int | None:
        """The engine's pid, found by its ``--host`` (a pidfile can be stale after a reboot and
        name an unrelated process). Between fork and exec this is ``setsid`` with the same pid."""
        pids = _pids_with_arg(f"\0--host\0{self.host}\0")  # not a client's ``-H``
        return pids[0] if pids else None

    def ensure(self, timeout: float = START_TIMEOUT) -> str:
        """Start the engine unless it already answers; return its DOCKER_HOST."""
        if self.ping():
            return self.host
        deadline = time.monotonic() + timeout
        with self._lock():
            if self.ping():  # another session started it while we waited for the lock
                return self.host
            pid = self.pid()
            if pid is None:
                pid = self._launch()
            # else: still starting (or stuck): give it the deadline.
            self._wait_ready(pid, deadline)
        return self.host

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM the engine and wait for it to exit. Returns False if it was not running."""
        with self._lock():
            pid = self.pid()
            if pid is None:
                return False
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"test dockerd (pid {pid}) did not stop in {timeout} s")
                time.sleep(0.1)
            return True

    def status(self) -> str:
        state = "running" if self.ping() else "not responding"
        return f"{state} pid={self.pid() or '-'} DOCKER_HOST={self.host}"

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    @contextlib.contextmanager
    def _lock(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "dockerd.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _command(self) -> list[str]:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("dockerd not found (apt-get install docker.io)")
        return [
            dockerd,
            "--host", self.host,
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--log-level=warn",
        ]  # fmt: skip

    def _clear_runtime_state(self) -> None:
        """Remove what a dead engine left under run_dir, as a reboot would with a tmpfs /run.

        dockerd refuses to start over a pidfile naming a live process, and trusts containerd.pid
        in the exec root; here /run is on disk, so both survive a reboot and their pids get
        reused. The exec root is only wiped when no containerd or shim of ours still runs.
        """
        for stale in (self.pidfile, Path(self.socket)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        containerd_pid = self.exec_root / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(containerd_pid.read_text().strip())
            if not _alive(pid) or b"containerd" not in Path(f"/proc/{pid}/comm").read_bytes():
                containerd_pid.unlink()  # dockerd would wait for a socket nobody serves
        if self.exec_root.exists() and not _pids_with_arg(str(self.exec_root)):
            for line in Path("/proc/self/mounts").read_text().splitlines():
                target = line.split()[1]
                if target.startswith(f"{self.exec_root}/"):  # netns mounts of a killed engine
                    subprocess.run(["umount", "-l", target], check=False)
            shutil.rmtree(self.exec_root)

    def _launch(self) -> int:
        self._clear_runtime_state()
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            log.write(f"--- ardua-test dockerd start {time.ctime()} ---\n".encode())
            log.flush()
            # setsid --fork: the daemon gets its own session and is reparented to init, so it
            # outlives the calling test session and is never a zombie child of it.
            subprocess.run(
                ["setsid", "--fork", *self._command()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
                check=True,
                cwd="/",
            )
        # The fork happened before setsid returned, but while the child execs dockerd its
        # /proc cmdline can read empty: look again for a moment.
        deadline = time.monotonic() + 5
        while (pid := self.pid()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"test dockerd exited at once:\n{self.log_tail()}")
            time.sleep(0.02)
        return pid

    def _wait_ready(self, pid: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.ping():
                return
            if not _alive(pid):
                raise RuntimeError(
                    f"test dockerd (pid {pid}) exited during start:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        raise TimeoutError(
            f"test dockerd did not answer /_ping on {self.socket}:\n{self.log_tail()}"
        )


ENGINE = Engine(
    run_dir=Path("/run/ardua-test"),
    data_root=Path("/var/lib/ardua-test/docker"),
    logfile=Path("/var/log/ardua-test-dockerd.log"),
)
SOCKET = ENGINE.socket
DOCKER_HOST = ENGINE.host
DATA_ROOT = ENGINE.data_root
ping = ENGINE.ping
ensure_dockerd = ENGINE.ensure


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else "status"
    if cmd == "start":
        t0 = time.monotonic()
        already = ENGINE.ping()
        host = ENGINE.ensure()
        how = "reused" if already else f"started in {time.monotonic() - t0:.1f} s"
        print(f"test dockerd {how}: {host} (log {ENGINE.logfile})", file=sys.stderr)
        print(host)
        return 0
    if cmd == "stop":
        stopped = ENGINE.stop()
        msg = "test dockerd stopped" if stopped else "test dockerd was not running"
        print(msg, file=sys.stderr)
        return 0
    if cmd == "status":
        print(ENGINE.status())
        return 0 if ENGINE.ping() else 1
    print("usage: python -m tests.harness.dockerd start|stop|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
