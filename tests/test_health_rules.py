"""Pure rules: the design's health table in evaluate(), the guard math, the config keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.config import load as config
from supervisor.config.load import ConfigError, GuardConfig, HealthConfig
from supervisor.containers.rclone import ListedFile
from supervisor.core.states import STATUS_EXIT, exit_code
from supervisor.health import verdict as health
from supervisor.health.verdict import Sentinel, Signals
from supervisor.postgres.dumps import DatabaseDumps, Dump
from supervisor.postgres.gocron import ContainerState, CronState
from supervisor.record.metrics import TAKEN, Serving
from supervisor.storage.markers import Marker, format_marker, parse_marker
from supervisor.storage.s3 import S3Object
from supervisor.upload import guard
from tests.harness.configs import MINIMAL
from tests.harness.signals import one_destination

NOW = datetime(2025, 12, 18, 12, 0, tzinfo=UTC)
LIMITS = HealthConfig(dump_job="db-upload", db_container="")
FRESH_DUMP, STALE_DUMP = NOW - timedelta(hours=11), NOW - timedelta(hours=30)
FRESH_OK, STALE_OK = NOW - timedelta(minutes=45), NOW - timedelta(hours=5)


def signals(dump_at: datetime | None, in_s3: bool | None, ok_at: datetime | None,
            **more: object) -> Signals:
    dump = Dump("last/ardua-x.dump", 123, dump_at) if dump_at else None
    base: dict = dict(
        dump_job="db-upload", databases=(DatabaseDumps("ardua", dump, None),) if dump
        else (), in_s3=in_s3, sentinels=(Sentinel("db-upload", "postgres", ok_at),),
    )
    return one_destination(NOW, **{**base, **more})


@pytest.mark.parametrize(
    ("dump_at", "in_s3", "ok_at", "state", "diagnosis"),
    [
        (FRESH_DUMP, True, FRESH_OK, "OK", None),
        (FRESH_DUMP, False, STALE_OK, "CRITICAL", "Upload failing"),
        (FRESH_DUMP, False, FRESH_OK, "CRITICAL", "Upload ran but missed the newest dump"),
        (STALE_DUMP, True, FRESH_OK, "CRITICAL",
         "DB backup not producing new data: ardua's newest dump 1d 6h old (pipeline healthy)"),
        (STALE_DUMP, False, STALE_OK, "CRITICAL", "Both dump and upload broken"),
        (None, None, FRESH_OK, "CRITICAL", "No dump at all"),
        # Not in the design's table, but they happen:
        (FRESH_DUMP, True, STALE_OK, "CRITICAL", "Upload failing"),
        (FRESH_DUMP, False, None, "CRITICAL", "Upload failing"),
    ],
)
def test_design_table(dump_at, in_s3, ok_at, state, diagnosis) -> None:
    verdict = health.evaluate(signals(dump_at, in_s3, ok_at), LIMITS, NOW)
    assert verdict.state == state
    assert verdict.exit_code == {"OK": 0, "CRITICAL": 2}[state]  # the plugin convention
    if diagnosis is None:
        assert verdict.diagnoses == ()
        assert verdict.status_line().startswith("OK")
    else:
        assert verdict.diagnoses[0].startswith(diagnosis), verdict.diagnoses
        assert len(verdict.diagnoses) == 1, verdict.diagnoses


def test_exit_codes_are_the_documented_ones() -> None:
    """Written out, not read back from the product: monitoring plugins (Nagios, Icinga, Sensu)
    and systemd units (RestartPreventExitStatus=78) rely on these numbers."""
    assert STATUS_EXIT == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
    assert [exit_code(r) for r in ("success", "failed", "refused", "deferred")] == [0, 1, 1, 75]


def test_dump_newer_than_last_upload_is_waiting_not_missed() -> None:
    just_dumped = NOW - timedelta(minutes=20)
    verdict = health.evaluate(signals(just_dumped, False, FRESH_OK), LIMITS, NOW)
    assert verdict.state == "OK", verdict.diagnoses


def test_s3_unreachable_is_unknown_unless_local_signals_are_critical() -> None:
    down = dict(s3_error="S3 endpoint http://127.0.0.1:9 is unreachable", versioning=None,
                sentinels=(Sentinel("db-upload", "postgres", None, "S3 not readable"),))
    verdict = health.evaluate(signals(FRESH_DUMP, None, None, **down), LIMITS, NOW)
    assert (verdict.state, verdict.exit_code) == ("UNKNOWN", 3)
    assert verdict.diagnoses == ("S3 unreachable: S3 endpoint http://127.0.0.1:9 is unreachable",)
    stale = health.evaluate(signals(STALE_DUMP, None, None, **down), LIMITS, NOW)
    assert stale.state == "CRITICAL"
    assert stale.diagnoses[0].startswith("DB backup not producing new data")


def test_warnings_versioning_drill_container() -> None:
    sig = signals(
        FRESH_DUMP, True, FRESH_OK, versioning="",
        drill=Marker(NOW - timedelta(days=9), True, "last/ardua-x.dump", 42.0),
        container=ContainerState("running", "unhealthy"),
    )
    verdict = health.evaluate(sig, HealthConfig(dump_job="db-upload"), NOW)
    assert verdict.state == "WARNING"
    assert set(verdict.diagnoses) == {
        "Bucket versioning is off: a wrong sync cannot be undone",
        "Restore drill overdue: last 9d 0h ago",
        "DB backup container is unhealthy",
    }


def test_failed_dump_run_is_critical_and_a_running_one_is_fine() -> None:
    failed = CronState(running=False, last_exit_status=1, last_exit_time=FRESH_DUMP)
    verdict = health.evaluate(signals(FRESH_DUMP, True, FRESH_OK, cron=failed), LIMITS, NOW)
    assert verdict.state == "CRITICAL"
    assert verdict.diagnoses[0].startswith("DB backup failing: last dump run exited 1")
    running = CronState(running=True, last_exit_status=0, last_exit_time=FRESH_DUMP)
    assert health.evaluate(signals(FRESH_DUMP, True, FRESH_OK, cron=running), LIMITS,
                           NOW).state == "OK"


@pytest.mark.parametrize(("serving", "state", "row", "problems"), [
    (None, "OK", None, ()),  # no port, or no daemon running: nothing to say
    (Serving(9101, True), "OK", ("OK", "serving /metrics on 127.0.0.1:9101"), ()),
    (Serving(9101, False, TAKEN), "WARNING",
     ("WARNING", "port 9101 is taken by another process"),
     ("metrics: port 9101 is taken by another process",)),
    (Serving(80, False, "Permission denied"), "WARNING",
     ("WARNING", "cannot listen on 127.0.0.1:80: Permission denied"),
     ("metrics: cannot listen on 127.0.0.1:80: Permission denied",)),
])
def test_metrics_port_row(serving, state, row, problems) -> None:
    """The daemon's /metrics is a convenience: a port another process holds is a warning, and
    it never hides or outranks a backup problem."""
    verdict = health.evaluate(signals(FRESH_DUMP, True, FRESH_OK, metrics=serving), LIMITS, NOW)
    assert verdict.state == state
    assert {c.name: (c.state, c.detail) for c in verdict.checks}.get("metrics") == row
    assert verdict.diagnoses == problems
    stale = health.evaluate(signals(STALE_DUMP, True, FRESH_OK, metrics=serving), LIMITS, NOW)
    assert stale.state == "CRITICAL" and stale.diagnoses[0].startswith("DB backup not producing")


def test_other_job_stale_sentinel_is_upload_failing() -> None:
    sig = signals(FRESH_DUMP, True, FRESH_OK, sentinels=(
        Sentinel("db-upload", "postgres", FRESH_OK), Sentinel("receipts-upload", "receipts",
                                                              STALE_OK)))
    verdict = health.evaluate(sig, LIMITS, NOW)
    assert verdict.diagnoses == ("Upload failing: receipts-upload last succeeded 5h 00m ago",)


def test_json_is_stable() -> None:
    verdict = health.evaluate(signals(FRESH_DUMP, True, FRESH_OK), LIMITS, NOW)
    data = verdict.to_json()
    assert list(data) == ["schema", "checked_at", "state", "exit_code", "status_line",
                          "diagnoses", "problems", "checks", "dump", "databases", "sentinels",
                          "bucket_versioning", "destinations", "state_dir", "db_container",
                          "db_cron", "restore_drill", "restore_drill_first_at"]
    assert data["schema"] == 3
    dump = {"key": "last/ardua-x.dump", "size": 123, "modified": "2025-12-18T01:00:00Z",
            "age_s": 39600.0, "in_s3": True, "previous_key": None, "previous_size": None}
    assert data["dump"] == {"job": "db-upload", **dump}
    assert data["databases"] == [{"database": "ardua", **dump}]
    assert data["sentinels"]["db-upload"]["age_s"] == 2700.0


def test_parse_drill() -> None:
    drill = parse_marker("2025-12-18T03:00:00Z FAIL last/ardua-x.dump 73s\n")
    assert drill == Marker(datetime(2025, 12, 18, 3, tzinfo=UTC), False, "last/ardua-x.dump", 73)
    with pytest.raises(ValueError):
        parse_marker("2025-12-18T03:00:00Z MAYBE x 1s")
    # What the drill writes, `status` reads back.
    written = format_marker(datetime(2025, 12, 18, 3, tzinfo=UTC), True, "last/a.dump", 6.1)
    assert parse_marker(written) == Marker(datetime(2025, 12, 18, 3, tzinfo=UTC), True,
                                           "last/a.dump", 6)


# -- guard ---------------------------------------------------------------------------------


def listed(*names: str, size: int = 100, at: datetime = NOW - timedelta(hours=1)) -> list:
    return [ListedFile(n, size, at.isoformat()) for n in names]


def mirror(*names: str, size: int = 100) -> dict[str, S3Object]:
    return {n: S3Object(f"p/{n}", size, "e", NOW) for n in names}


def test_guard_numbers_ignore_markers() -> None:
    plan = guard.plan_sync(listed("a", "b"), mirror("a", "c", ".last_success",
                                                    ".last_restore_drill"))
    assert (plan.mirror_objects, plan.deletes, plan.delete_share) == (2, 1, 0.5)


@pytest.mark.parametrize(
    ("source", "held", "refused"),
    [
        ([], ["a"], "the source is empty"),
        (["a", "b"], [f"f{i}" for i in range(10)] + ["a", "b"], "the sync would delete 10 of 12"),
        (["f8", "f9"], [f"f{i}" for i in range(10)], "the sync would delete 8 of 10"),  # 80 %
        (["x"], ["y"], ""),  # one rotation in a one-object mirror
        ([f"f{i}" for i in range(1, 11)], [f"f{i}" for i in range(10)], ""),  # retention prune
        ([], [], "the source is empty; there is nothing to back up"),
    ],
)
def test_deletion_refusal(source, held, refused) -> None:
    reason = guard.deletion_refusal(guard.plan_sync(listed(*source), mirror(*held)),
                                    GuardConfig())
    assert reason.startswith(refused) if refused else reason == ""


def test_shrunk_bytes_are_refused() -> None:
    plan = guard.plan_sync(listed("a", "b", size=10), mirror("a", "b", size=100))
    assert guard.deletion_refusal(plan, GuardConfig()).startswith(
        "the source holds 90% fewer bytes")


def test_recently_modified() -> None:
    files = [ListedFile("old", 1, "2025-12-18T11:50:00Z"),
             ListedFile("new", 1, "2025-12-18T03:59:30.123456789-08:00"),
             ListedFile("future", 1, "2025-12-18T13:00:00Z")]
    recent = guard.recently_modified(files, NOW, 120.0)
    assert [f.path for f in recent] == ["new"]


# -- config --------------------------------------------------------------------------------

BASE = MINIMAL + 'heartbeat_url = "https://hc-ping.com/abc/"\n'


def test_config_defaults_and_keys() -> None:
    cfg = config.parse(BASE, Path("/c.toml"))
    assert cfg.health == HealthConfig(dump_job="db-upload")
    assert cfg.guard == GuardConfig(0.5, 0.5, 120.0)
    assert cfg.metrics.textfile is None and cfg.metrics.port == 0
    assert cfg.job("db-upload").heartbeat_url == "https://hc-ping.com/abc"
    cfg = config.parse(BASE + """
[health]
dump_max_age = "50h"
db_health_url = "http://127.0.0.1:8080/"
[guard]
max_delete_share = 0.2
quiet_period = "5m"
[metrics]
textfile = "/var/lib/node_exporter/ardua.prom"
port = 9811
""", Path("/c.toml"))
    assert cfg.health.dump_max_age_s == 50 * 3600
    assert cfg.health.db_health_url == "http://127.0.0.1:8080"
    assert (cfg.guard.max_delete_share, cfg.guard.quiet_period_s) == (0.2, 300.0)
    assert cfg.metrics.port == 9811


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[health]\ndump_job = 'nope'", "health.dump_job: 'nope' is not a configured job"),
        ("[guard]\nmax_delete_share = 1.5", "guard.max_delete_share: must be a number"),
        ("[metrics]\ntextfile = 'x.prom'", "metrics.textfile: 'x.prom' must be an absolute"),
        ("[metrics]\nportt = 1", "metrics.portt: unknown key"),
        ("[health]\ndatabases = 'ardua'", "health.databases: must be a list of database names"),
        ("[health]\ndatabases = ['a', 'a']", "health.databases: names a database twice"),
        ("[health]\nmin_size_share = 0", "health.min_size_share: must be a number above 0"),
    ],
)
def test_config_errors(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config.parse(BASE + extra, Path("/c.toml"))
