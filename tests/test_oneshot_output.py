"""Issue 27 item 5: a container's output is bounded in memory, whatever the image writes. stdout
(a source listing) is whole up to its limit and beyond it the run fails, never cut short; stderr
(rclone's JSON log) keeps its head and its tail, in whole lines, so the final stats line is
still read. Real containers on the test engine, the limits made small."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from supervisor.containers import engine
from supervisor.containers.rclone import parse_log
from tests.harness.images import ensure_debian_pg_image
from tests.harness.loglines import captured

pytestmark = pytest.mark.docker
LINE = '{"level":"notice","msg":"skipped a symlink"}'
STATS = '{"level":"notice","msg":"stats","stats":{"errors":0,"transfers":3}}'


@pytest.fixture
def small_limits(monkeypatch) -> None:
    monkeypatch.setattr(engine, "STDOUT_LIMIT", 1 << 20)
    monkeypatch.setattr(engine, "STDERR_HEAD", 64 << 10)
    monkeypatch.setattr(engine, "STDERR_TAIL", 256 << 10)


@pytest.fixture
def logged() -> Iterator[list[str]]:
    with captured("WARNING") as lines:
        yield lines


def _run(docker_client, script: str) -> engine.ContainerRun:
    spec = engine.Spec(
        image=ensure_debian_pg_image(docker_client), command=["sh", "-c", script], mounts=[],
        env={}, labels={engine.LABEL_JOB: "output-test"}, network_mode="none")
    return engine.run_oneshot(docker_client, spec, 120)


def _leftovers(docker_client) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"{engine.LABEL_JOB}="
                                                                      "output-test"})


def test_stdout_is_whole_under_its_limit_and_refused_over_it(docker_client,
                                                             small_limits) -> None:
    under = _run(docker_client, "head -c 1000000 /dev/zero | tr '\\0' x")
    assert (under.exit_code, under.stdout) == (0, "x" * 1_000_000)
    with pytest.raises(engine.DockerError) as refused:
        _run(docker_client, "head -c 3000000 /dev/zero | tr '\\0' x")
    assert str(refused.value).endswith(
        "wrote 3000000 bytes to stdout, over the 1 MiB read from it: refused rather than cut "
        "short (a listing that large, or a broken image)")
    assert _leftovers(docker_client) == []


def test_a_long_stderr_keeps_head_and_tail_in_whole_lines(docker_client, small_limits,
                                                          logged) -> None:
    lines = 50_000  # 2.2 MB of notices, then rclone's final stats line
    result = _run(docker_client, f"yes '{LINE}' | head -n {lines} >&2; echo '{STATS}' >&2")
    kept = result.stderr.splitlines()
    assert [json.loads(line) for line in kept]  # every kept line whole: it parses
    assert kept[-1] == STATS and kept[0] == LINE
    assert len(result.stderr) <= (64 << 10) + (256 << 10)
    assert result.stderr_dropped > 1_800_000
    summary = parse_log(result.stderr)
    assert (summary.stats, summary.error_count) == ({"errors": 0, "transfers": 3}, 0)
    total = lines * (len(LINE) + 1) + len(STATS) + 1
    assert len(logged) == 1 and logged[0].endswith(
        f"wrote {total} bytes to stderr: kept its first 0.0625 MiB and last 0.25 MiB, dropped "
        f"{total - (64 << 10) - (256 << 10)} bytes between")
