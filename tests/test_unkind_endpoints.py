"""The stand-ins as unkind as the real things, and the product bounded by its own deadlines with
one clear line against each: go-cron hung (its container paused: the kernel still accepts),
answering its 500, or sending a run's whole stdout; a heartbeat service that accepts and never
answers; a Docker engine whose socket accepts and never answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from supervisor.core.states import FAILED
from supervisor.postgres import gocron
from supervisor.record.heartbeat import Heartbeat
from supervisor.record.report import RunReport
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.gocron import GoCron, state
from tests.harness.hung import hung_tcp
from tests.harness.loglines import captured
from tests.harness.poll import timed

PG_DUMP_ERROR = ('pg_dump: error: connection to server failed: FATAL:  database "shop" does '
                 'not exist')
FAILED_RUN = {"Exit_status": 1, "Pid": 4242, "StartingTime": "2026-11-24T01:15:00-08:00",
              "ExitTime": "2026-11-24T01:15:09-08:00", "Stderr": f"{PG_DUMP_ERROR}\n"}


@pytest.fixture
def go_cron() -> Iterator[GoCron]:
    with GoCron() as server:
        yield server


def test_a_hung_go_cron_is_let_go_at_the_probes_deadline() -> None:
    with hung_tcp() as port:
        url = f"http://127.0.0.1:{port}/"
        outcome, spent = timed(lambda: gocron.cron_state(url))
    assert str(outcome) == f"go-cron endpoint {url} did not answer: no complete answer within 3 s"
    assert isinstance(outcome, gocron.ProbeError)
    assert 2.5 < spent < 5


def test_go_crons_500_is_a_broken_endpoint_not_a_failed_dump(go_cron) -> None:
    go_cron.marshal_error = "json: unsupported value: NaN"
    outcome, _ = timed(lambda: gocron.cron_state(go_cron.url))
    assert isinstance(outcome, gocron.ProbeError)
    assert str(outcome) == f"go-cron endpoint {go_cron.url} answered HTTP 500"


def test_a_failed_runs_big_stdout_is_read_to_its_error(go_cron) -> None:
    """3 MiB of a verbose run's stdout before the JSON's Stderr: read whole, pg_dump's error
    named."""
    go_cron.state = state({**FAILED_RUN, "Stdout": "pg_dump: dumping contents\n" * 120_000})
    got = gocron.cron_state(go_cron.url)
    assert (got.last_exit_status, got.last_stderr) == (1, PG_DUMP_ERROR)


def test_an_answer_over_the_cap_is_named_within_the_deadline(go_cron) -> None:
    """go-cron's Stdout has no limit; the probe reads at most MAX_REPLY_BYTES (4 MiB) and says
    so, instead of holding `status` or the daemon's memory."""
    go_cron.state = state({**FAILED_RUN, "Stdout": "x" * (5 << 20)})
    outcome, spent = timed(lambda: gocron.cron_state(go_cron.url))
    assert str(outcome) == f"go-cron endpoint {go_cron.url} sent more than 4 MiB"
    assert spent < 4  # within the probe's 3 s


def test_a_heartbeat_to_a_hung_service_is_bounded_and_named() -> None:
    """A failed run's ping (a POST with the report) to a service that accepts and never
    answers: let go at core.http's deadline, one line, no token."""
    with hung_tcp() as port, captured("DEBUG") as lines:
        job = type("Job", (), {"name": "db-upload",
                               "heartbeat_url": f"http://127.0.0.1:{port}/ping/abc"})()
        at = datetime.now(UTC)
        report = RunReport("db-upload", "run-1", FAILED, 1, at, at, 0.0, message="S3 down")
        outcome, spent = timed(lambda: Heartbeat(job).finish(report))  # type: ignore[arg-type]
    assert outcome is None and spent < 4
    assert lines == ["db-upload: heartbeat ping to http://127.0.0.1 failed: no complete answer "
                     "within 3 s"]


@pytest.mark.docker
def test_a_missing_docker_socket_fails_the_run_at_once(s3server, bucket, write_config,
                                                       tmp_path) -> None:
    """The easy outage (a hung engine: test_daemon_docker_outage.py)."""
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    (receipts / "r1.pdf").write_bytes(b"receipt one")
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=settle(receipts))
    docker_host = f"unix://{tmp_path / 'no-docker.sock'}"
    done, spent = timed(lambda: run_cli("run-once", "receipts-upload", config=cfg,
                                        env={"DOCKER_HOST": docker_host}, timeout=120))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Docker engine at {docker_host} is not reachable" in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert spent < 15, spent
    assert s3server.list_keys(bucket) == {}
