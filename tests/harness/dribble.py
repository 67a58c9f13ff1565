"""An HTTP server on 127.0.0.1 that never finishes its answer: it sends one byte every
`every_s` seconds, forever (until closed), to every connection. A socket timeout is per read,
so each byte resets it: only an overall deadline lets go of such a server.

`in_headers=True` dribbles the status line and headers themselves (nothing is complete, ever);
otherwise a complete 200 header promising a large body, then the body byte by byte."""

from __future__ import annotations

import socket
import threading
from typing import Self

from tests.harness.server import Server


class DribblingServer(Server):
    def __init__(self, every_s: float = 1.0, in_headers: bool = False) -> None:
        self.every_s = every_s
        self.in_headers = in_headers
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept)
        return self

    def _spawn(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._spawn(self._dribble, conn)

    def _dribble(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: "
        if self.in_headers:  # the head byte by byte, then a header line that never ends
            pending = head
        else:  # a whole head, then the body byte by byte
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
            pending = b""
        with conn:
            while not self._stop.wait(self.every_s):
                byte, pending = (pending[:1], pending[1:]) if pending else (b" ", b"")
                try:
                    conn.sendall(byte)
                except OSError:
                    return  # the client let go

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)
