"""A stand-in for postgres-backup-local's health endpoint, prodrigestivill/go-cron, answering as
its gocron/httpserver.go handler does (read at e266cf2c): GET / marshals CurrentState with
json.MarshalIndent(state, "", "  ") as application/json; status 503 whenever
Last.Exit_status != 0; when marshalling fails, http.Error's 500 with a text/plain one-line body.
go-cron.go's copyOutput appends every byte a run prints to its Stdout/Stderr, with no limit, and
the running runs are marshalled too: a verbose run makes a big answer (`big_stdout`)."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, Self

from tests.harness.server import Server

NO_RUN = {"Exit_status": 0, "Stdout": "", "Stderr": "", "ExitTime": "", "Pid": 0,
          "StartingTime": ""}  # go-cron's Last before the first run: all zero values


def state(last: dict[str, Any] | None = None, running: dict[str, Any] | None = None,
          schedule: str = "@daily") -> dict[str, Any]:
    """CurrentState as go-cron marshals it: {"Running": {PID: run}, "Last": run, "Schedule"}."""
    return {"Running": running or {}, "Last": {**NO_RUN, **(last or {})}, "Schedule": schedule}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: GoCronServer

    def do_GET(self) -> None:
        stand_in = self.server.stand_in
        stand_in.requests += 1
        if stand_in.marshal_error:  # http.Error(w, err.Error(), 500)
            body = f"{stand_in.marshal_error}\n".encode()
            self.send_response(500)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
        else:
            body = json.dumps(stand_in.state, indent=2).encode()
            failed = stand_in.state["Last"]["Exit_status"] != 0
            self.send_response(503 if failed else 200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class GoCronServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    stand_in: GoCron


class GoCron(Server):
    """`.url` (with the trailing slash a config holds), `.state` to answer, `.marshal_error` to
    answer go-cron's 500 instead, `.requests` counted."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = state()
        self.marshal_error = ""
        self.requests = 0
        self._server: GoCronServer | None = None

    def start(self) -> Self:
        self._server = GoCronServer(("127.0.0.1", 0), _Handler)
        self._server.stand_in = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
