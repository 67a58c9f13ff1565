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
from pathlib import Path

RUN_DIR = Path("/run/ardua-test")
SOCKET = "/run/ardua-test/docker.sock"
DOCKER_HOST = "unix:///run/ardua-test/docker.sock"
DATA_ROOT = Path("/var/lib/ardua-test/docker")
EXEC_ROOT = RUN_DIR / "exec"
PIDFILE = RUN_DIR / "docker.pid"
LOCKFILE = RUN_DIR / "dockerd.lock"
LOGFILE = Path("/var/log/ardua-test-dockerd.log")

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


def ping(timeout: float = 2.0) -> bool:
    """True when the engine answers ``GET /_ping`` with ``OK``."""
    if not os.path.exists(SOCKET):
        return False
    conn = _UnixHTTPConnection(SOCKET, timeout)
    try:
        conn.request("GET", "/_ping")
        resp = conn.getresponse()
        return resp.status == 200 and resp.read().strip() == b"OK"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _read_pid() -> int | None:
    try:
        return int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (it is not our child, so init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _is_our_dockerd(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(cmdline) and cmdline[0].endswith(b"dockerd") and SOCKET.encode() in b" ".join(cmdline)
    )


def _log_tail(n: int = 30) -> str:
    try:
        lines = LOGFILE.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


@contextlib.contextmanager
def _lock():
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCKFILE, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _command() -> list[str]:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise RuntimeError("dockerd not found (apt-get install docker.io)")
    return [
        dockerd,
        "--host", DOCKER_HOST,
        "--data-root", str(DATA_ROOT),
        "--exec-root", str(EXEC_ROOT),
        "--pidfile", str(PIDFILE),
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--userland-proxy=false",
        "--log-level=warn",
    ]  # fmt: skip


def _wait_ready(pid: int | None, deadline: float) -> None:
    while time.monotonic() < deadline:
        if ping():
            return
        if pid is not None and not _alive(pid):
            raise RuntimeError(f"test dockerd (pid {pid}) exited during start:\n{_log_tail()}")
        time.sleep(0.1)
    raise TimeoutError(f"test dockerd did not answer /_ping on {SOCKET}:\n{_log_tail()}")


def ensure_dockerd(timeout: float = START_TIMEOUT) -> str:
    """Start the test engine unless it already answers; return DOCKER_HOST."""
    if ping():
        return DOCKER_HOST
    deadline = time.monotonic() + timeout
    with _lock():
        if ping():  # another session started it while we waited for the lock
            return DOCKER_HOST
        pid = _read_pid()
        if pid is not None and _alive(pid) and _is_our_dockerd(pid):
            # Still starting (or stuck): give it the deadline.
            _wait_ready(pid, deadline)
            return DOCKER_HOST
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        EXEC_ROOT.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET)  # stale socket from a killed engine
        LOGFILE.parent.mkdir(parents=True, exist_ok=True)
        with open(LOGFILE, "ab") as log:
            log.write(f"--- ardua-test dockerd start {time.ctime()} ---\n".encode())
            log.flush()
            # setsid --fork: the daemon gets its own session and is reparented to init, so it
            # outlives the calling test session and is never a zombie child of it.
            subprocess.run(
                ["setsid", "--fork", *_command()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
                check=True,
                cwd="/",
            )
        # The pidfile appears once dockerd initialised; until then we only have the socket.
        while time.monotonic() < deadline:
            if ping():
                return DOCKER_HOST
            pid = _read_pid()
            if pid is not None:
                break
            time.sleep(0.05)
        _wait_ready(_read_pid(), deadline)
    return DOCKER_HOST


def stop_dockerd(timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the test engine and wait for it to exit. Returns False if it was not running."""
    with _lock():
        pid = _read_pid()
        if pid is None or not _alive(pid) or not _is_our_dockerd(pid):
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"test dockerd (pid {pid}) did not stop in {timeout} s")
            time.sleep(0.1)
        return True


def status() -> str:
    pid = _read_pid()
    state = "running" if ping() else "not responding"
    return f"{state} pid={pid if pid and _alive(pid) else '-'} DOCKER_HOST={DOCKER_HOST}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else "status"
    if cmd == "start":
        t0 = time.monotonic()
        already = ping()
        host = ensure_dockerd()
        how = "reused" if already else f"started in {time.monotonic() - t0:.1f} s"
        print(f"test dockerd {how}: {host} (log {LOGFILE})", file=sys.stderr)
        print(host)
        return 0
    if cmd == "stop":
        stopped = stop_dockerd()
        msg = "test dockerd stopped" if stopped else "test dockerd was not running"
        print(msg, file=sys.stderr)
        return 0
    if cmd == "status":
        print(status())
        return 0 if ping() else 1
    print("usage: python -m tests.harness.dockerd start|stop|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
