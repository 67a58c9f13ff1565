"""Endpoints that are alive and stuck, as a SIGSTOPped process or a paused container is: the
kernel completes every connection into the listen backlog, nothing ever reads or answers.
(A closed port, by contrast, is refused at once: the easy failure.)"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def hung_tcp() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as sock:
        yield sock.getsockname()[1]


@contextmanager
def hung_unix(path: Path) -> Iterator[str]:
    """A unix socket at `path` that accepts connections and never answers (a hung dockerd);
    its DOCKER_HOST."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(64)
        try:
            yield f"unix://{path}"
        finally:
            path.unlink(missing_ok=True)
