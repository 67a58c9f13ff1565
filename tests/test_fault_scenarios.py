"""Upload runs against the real SeaweedFS through tests/harness/faultproxy.py, with the real
rclone in a container (host network) and boto3 both pointed at the proxy: 30 % 503 SlowDown,
30 % connection resets, every listing reset, every sentinel PUT refused, a total outage from
rclone's first PUT on, a server that acks PUTs it does not store. For each: the result, the
rclone exit code, the sentinel, the ledger row, the RETRIES journal field and the retries
metric, the mirror against the source (keys and bytes), then a clean run that heals it.

The numbers of the last measured run are in docs/design.md "Retries"."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from loguru import logger

from supervisor.config.load import Config, load
from supervisor.core.states import FAILED, SUCCESS
from supervisor.record import journal, sinks
from supervisor.record.ledger import Ledger
from supervisor.record.report import RunReport
from supervisor.upload.run import run_job
from tests.harness.faultproxy import EVERY_KIND, LIST, PUT, SENTINEL, FaultProxy, Rule, rule
from tests.harness.s3server import S3Server

JOB, PREFIX = "receipts-upload", "receipts"
SENTINEL_KEY = f"{PREFIX}/.last_success"
RCLONE = "rclone/"  # rclone's User-Agent: a rule for its requests only, not the product's boto3
FILES = 6


@pytest.fixture(scope="module")
def proxy(s3server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3server.endpoint_url) as p:
        yield p


@dataclass
class Outcome:
    report: RunReport
    seconds: float
    journal: dict[str, object]  # the final line's journal fields
    retried_attempts: int  # "Attempt N/M failed" lines logged as warnings


@dataclass
class Setup:
    config: Config
    source: dict[str, bytes]
    server: S3Server
    bucket: str
    client: docker.DockerClient

    def run(self) -> Outcome:
        lines: list[tuple[str, dict[str, object]]] = []
        sink = logger.add(lambda m: lines.append((m.record["message"], m.record["extra"])),
                          level="DEBUG")
        started = time.monotonic()
        try:
            report = sinks.for_runs(self.config).record(
                JOB, lambda run_id: run_job(self.config, JOB, run_id=run_id, client=self.client))
        finally:
            logger.remove(sink)
        seconds = time.monotonic() - started
        final = [extra for message, extra in lines if message == report.final_line()]
        retried = sum(1 for message, _ in lines
                      if re.search(r"an attempt it retried\): Attempt \d+/\d+ failed", message))
        return Outcome(report, seconds, journal.fields(final[-1]), retried)

    def mirror(self) -> dict[str, bytes]:
        keys = self.server.list_keys(self.bucket, f"{PREFIX}/")
        return {k[len(PREFIX) + 1:]: v for k, v in keys.items() if k != SENTINEL_KEY}

    def sentinel(self) -> bool:
        return SENTINEL_KEY in self.server.list_keys(self.bucket, f"{PREFIX}/")

    def ledger_result(self, run_id: str) -> str:
        row = Ledger(self.config.state_dir).get(run_id)
        assert row is not None
        return row.result

    def retries_metric(self) -> float:
        text = Path(self.config.metrics.textfile or "").read_text()
        found = re.search(rf'^ardua_backup_s3_retries_total\{{job="{JOB}"\}} (\S+)$', text, re.M)
        assert found, text
        return float(found[1])


@pytest.fixture
def setup(proxy: FaultProxy, s3server: S3Server, bucket: str, write_config, docker_client,
          tmp_path: Path) -> Setup:
    source = tmp_path / "receipts"
    source.mkdir()
    files = {f"2026/r{i}.pdf": os.urandom(700 + i) for i in range(FILES)}
    settled = time.time() - 3600  # older than guard.quiet_period: nothing is left as young
    for name, body in files.items():
        (source / name).parent.mkdir(exist_ok=True)
        (source / name).write_bytes(body)
        os.utime(source / name, (settled, settled))
    path = write_config(tmp_path, s3server, bucket, receipts_dir=source,
                        s3={"endpoint_url": proxy.endpoint_url},
                        metrics={"textfile": str(tmp_path / "ardua.prom")},
                        jobs={JOB: {"timeout": "90s"}})
    proxy.set_rules()
    return Setup(load(path), files, s3server, bucket, docker_client)


def _run_under(s: Setup, proxy: FaultProxy, name: str, *rules: Rule, seed: int = 0) -> Outcome:
    """One run with these faults; prints the numbers docs/design.md quotes (`pytest -s`)."""
    proxy.set_rules(*rules, seed=seed)
    out = s.run()
    r = out.report
    print(f"\n{name}: {r.result}, rclone exit {r.exit_code}, {out.seconds:.1f} s, "
          f"RETRIES={out.journal.get('RETRIES')}: {r.message}")
    return out


def _failed_under(s: Setup, proxy: FaultProxy, name: str, *rules: Rule) -> Outcome:
    """A run these faults must fail: ledger row failed, no sentinel, a one-line message."""
    out = _run_under(s, proxy, name, *rules)
    assert out.report.result == FAILED, out.report.message
    assert s.ledger_result(out.report.run_id) == FAILED
    assert not s.sentinel()
    assert "\n" not in out.report.message and "Traceback" not in out.report.message
    assert "X-Amz-Signature" not in out.report.message
    return out


def _heals(s: Setup, proxy: FaultProxy) -> None:
    """With the faults gone the next run succeeds and leaves the mirror exact."""
    proxy.set_rules()
    out = s.run()
    assert out.report.result == SUCCESS, out.report.message
    assert s.ledger_result(out.report.run_id) == SUCCESS
    assert s.sentinel()
    assert s.mirror() == s.source


@pytest.mark.parametrize("fault", ["503", "reset"])
def test_thirty_percent_faults_heal_into_a_success_with_retries_counted(
        setup: Setup, proxy: FaultProxy, fault: str) -> None:
    # Seed 5: some PUT fails in rclone's first attempt (rclone sends a single-part PUT once
    # per attempt: no low-level retry), so its second attempt heals it.
    out = _run_under(setup, proxy, f"30 % {fault}", rule(EVERY_KIND, fault, 0.3), seed=5)
    assert proxy.count(fault) > 0, proxy.seen
    assert out.report.result == SUCCESS, out.report.message
    assert out.report.exit_code == 0
    assert setup.ledger_result(out.report.run_id) == SUCCESS
    assert setup.sentinel()
    assert setup.mirror() == setup.source
    # Counted, not failed: one per attempt rclone retried, in the journal and the metric.
    assert out.journal["RETRIES"] == out.report.retries == out.retried_attempts >= 1
    assert out.journal["ERRORS"] == 0
    assert setup.retries_metric() == out.report.retries
    _heals(setup, proxy)
    assert setup.retries_metric() == out.report.retries  # a counter: the clean run added 0


def test_every_listing_reset_fails_in_bounded_time_naming_endpoint_and_cause(
        setup: Setup, proxy: FaultProxy) -> None:
    out = _failed_under(setup, proxy, "every LIST reset", rule(LIST, "reset"))
    assert out.report.exit_code is None  # no sync container was started
    assert out.report.message == (
        f"S3 endpoint {proxy.endpoint_url} closed the connection before answering (reset); "
        f"check s3.endpoint_url and the network")
    assert out.seconds < 15
    assert setup.mirror() == {}
    _heals(setup, proxy)


def test_every_sentinel_put_refused_fails_the_run_but_keeps_the_mirror(
        setup: Setup, proxy: FaultProxy) -> None:
    out = _failed_under(setup, proxy, "every sentinel PUT 503", rule(SENTINEL, "503"))
    assert out.report.exit_code == 0  # rclone's sync itself went through
    assert out.report.message == (
        f"writing the sentinel failed: S3 at {proxy.endpoint_url} answered SlowDown for bucket "
        f"'{setup.bucket}'")
    assert proxy.seen[(SENTINEL, "503")] == 4  # the policy's attempts, not more
    assert setup.mirror() == setup.source
    _heals(setup, proxy)


def test_a_total_outage_mid_sync_fails_loudly_and_the_next_run_heals(
        setup: Setup, proxy: FaultProxy) -> None:
    """rclone itself meets the fault (the product's own calls came through before it): its
    first PUT starts an outage, every connection after it is refused."""
    out = _failed_under(setup, proxy, "total outage from rclone's first PUT",
                        rule(PUT, "outage", agent=RCLONE))
    assert out.report.exit_code not in (None, 0)
    # One line naming the endpoint and the cause: rclone's last error.
    assert out.report.message.startswith(f"rclone exited with code {out.report.exit_code}: ")
    assert proxy.endpoint_url in out.report.message
    assert "connection refused" in out.report.message
    assert out.journal["ERRORS"] > 0
    assert setup.mirror() != setup.source
    _heals(setup, proxy)


def test_a_server_that_acks_puts_it_does_not_store_is_caught_by_the_post_sync_check(
        setup: Setup, proxy: FaultProxy) -> None:
    """rclone believes the ETag (the MD5 it expects): only a check of what S3 holds after the
    sync catches it."""
    out = _failed_under(setup, proxy, "PUTs acked, not stored", rule(PUT, "ack", agent=RCLONE))
    assert proxy.seen[(PUT, "ack")] == FILES
    assert setup.mirror() == {}
    assert "post-sync check:" in out.report.message
    _heals(setup, proxy)
