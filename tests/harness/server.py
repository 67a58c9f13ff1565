"""What the harness's server processes share: a context manager that never leaks one."""

from __future__ import annotations

import socket
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
