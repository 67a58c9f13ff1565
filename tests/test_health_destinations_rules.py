"""Pure rules of `status` with several destinations (health.verdict.evaluate): the S3 rows and the
dump -> upload -> S3 chain judged per destination and named by it, the verdict the worst; the
restore drill row when no drill was ever recorded; a state_dir that cannot record runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from supervisor.config.load import HealthConfig
from supervisor.health import verdict as health
from supervisor.health.verdict import Copy, Sentinel, Signals
from supervisor.postgres.dumps import DatabaseDumps, Dump
from supervisor.storage.markers import Marker
from tests.harness.signals import one_destination

NOW = datetime(2025, 12, 18, 12, 0, tzinfo=UTC)
LIMITS = HealthConfig(dump_job="db-upload", db_container="")
DUMP = Dump("last/ardua-20251218-010000.dump", 123, NOW - timedelta(hours=11))
STALE_DUMP = Dump("last/ardua-20251217-060000.dump", 123, NOW - timedelta(hours=30))
FRESH, STALE = NOW - timedelta(minutes=45), NOW - timedelta(hours=5)
DRILLED = Marker(NOW - timedelta(days=1), True, DUMP.key, 42.0)
UNREACHABLE = "S3 endpoint http://127.0.0.1:9 is unreachable; check destinations.offsite." \
              "endpoint_url and the network"


def copy(name: str, ok_at: datetime | None = FRESH, held: bool | None = True,
         error: str = "", receipts: bool = False) -> Copy:
    """One destination of db-upload (and of receipts-upload when `receipts`)."""
    sentinels = (Sentinel("db-upload", "postgres", None if error else ok_at,
                          "S3 not readable" if error else ""),)
    if receipts:
        sentinels += (Sentinel("receipts-upload", "receipts", FRESH),)
    return Copy(name, error, sentinels, None if error else "Enabled",
                {} if error or held is None else {"ardua": held})


def two(offsite: Copy, dump: Dump = DUMP, **more: object) -> Signals:
    more.setdefault("drill", DRILLED)
    return Signals(dump_job="db-upload", databases=(DatabaseDumps("ardua", dump),),
                   copies=(copy("primary", receipts=True), offsite), **more)  # type: ignore[arg-type]


def rows(verdict: health.Verdict) -> dict[str, str]:
    return {c.name: c.state for c in verdict.checks}


PRIMARY_OK = {"primary: S3 has ardua's dump": "OK", "primary: last success postgres/": "OK",
              "primary: last success receipts/": "OK", "primary: bucket versioning": "OK"}


@pytest.mark.parametrize(("offsite", "dump", "state", "diagnoses", "offsite_rows"), [
    (copy("offsite"), DUMP, "OK", (), {"offsite: S3 has ardua's dump": "OK",
                                       "offsite: last success postgres/": "OK"}),
    (copy("offsite", STALE, False), DUMP, "CRITICAL",
     ("offsite: Upload failing: db-upload has no verified upload within 2h 00m",),
     {"offsite: S3 has ardua's dump": "CRITICAL", "offsite: last success postgres/": "CRITICAL"}),
    (copy("offsite", None, False), DUMP, "CRITICAL",
     ("offsite: Upload failing: db-upload has no verified upload within 2h 00m",),
     {"offsite: S3 has ardua's dump": "CRITICAL", "offsite: last success postgres/": "CRITICAL"}),
    (copy("offsite", FRESH, False), DUMP, "CRITICAL",
     (f"offsite: Upload ran but missed the newest dump of ardua: {DUMP.key}",),
     {"offsite: S3 has ardua's dump": "CRITICAL", "offsite: last success postgres/": "OK"}),
    (copy("offsite", error=UNREACHABLE), DUMP, "UNKNOWN",
     (f"S3 unreachable (offsite): {UNREACHABLE}",),
     {"offsite: S3 has ardua's dump": "UNKNOWN", "offsite: last success postgres/": "UNKNOWN"}),
    # The dump's own fault, both destinations healthy: said once, about the dump.
    (copy("offsite"), STALE_DUMP, "CRITICAL",
     ("DB backup not producing new data: ardua's newest dump 1d 6h old (pipeline healthy)",),
     {"offsite: S3 has ardua's dump": "OK", "offsite: last success postgres/": "OK"}),
    (copy("offsite", STALE, False), STALE_DUMP, "CRITICAL",
     ("DB backup not producing new data: ardua's newest dump 1d 6h old (pipeline healthy)",
      "offsite: Both dump and upload broken: ardua's newest dump 1d 6h old, no verified upload "
      "within 2h 00m"),
     {"offsite: S3 has ardua's dump": "CRITICAL", "offsite: last success postgres/": "CRITICAL"}),
])
def test_each_destination_is_judged_on_its_own(offsite, dump, state, diagnoses,
                                               offsite_rows) -> None:
    verdict = health.evaluate(two(offsite, dump), LIMITS, NOW)
    assert (verdict.state, verdict.diagnoses) == (state, diagnoses)
    got = rows(verdict)
    assert {k: got[k] for k in PRIMARY_OK} == PRIMARY_OK  # the other destination is unaffected
    assert {k: got[k] for k in offsite_rows} == offsite_rows
    # receipts-upload copies to primary only: offsite has no row of it
    assert "offsite: last success receipts/" not in got


def test_json_and_metrics_keep_their_meaning_and_add_each_destination() -> None:
    verdict = health.evaluate(two(copy("offsite", STALE, False)), LIMITS, NOW)
    data = verdict.to_json()
    assert data["schema"] == 3
    # The one-destination keys: the worst of the destinations.
    assert data["sentinels"]["db-upload"] == {"prefix": "postgres", "at": "2025-12-18T07:00:00Z",
                                              "age_s": 18000.0}
    assert data["sentinels"]["receipts-upload"]["age_s"] == 2700.0
    assert data["dump"]["in_s3"] is False and data["databases"][0]["in_s3"] is False
    assert data["bucket_versioning"] == "Enabled"
    assert [d["name"] for d in data["destinations"]] == ["primary", "offsite"]
    assert data["destinations"][1] == {
        "name": "offsite", "error": None, "bucket_versioning": "Enabled",
        "sentinels": {"db-upload": {"prefix": "postgres", "at": "2025-12-18T07:00:00Z",
                                    "age_s": 18000.0, "error": None}},
        "dumps_held": {"ardua": False}}
    values = verdict.values()
    assert values.sentinel_age_s == {"db-upload": 18000.0, "receipts-upload": 2700.0}
    assert values.destination_sentinel_age_s == {
        "primary": {"db-upload": 2700.0, "receipts-upload": 2700.0},
        "offsite": {"db-upload": 18000.0}}
    assert (values.dump_in_s3, values.destination_has_dump) == (
        False, {"primary": True, "offsite": False})
    down = health.evaluate(two(copy("offsite", error=UNREACHABLE)), LIMITS, NOW)
    assert down.values().dump_in_s3 is None  # unknown, not "held"
    assert down.to_json()["sentinels"]["db-upload"]["at"] is None  # missing counts as oldest


def test_one_destination_reads_as_before() -> None:
    sig = one_destination(NOW, dump_job="db-upload", databases=(DatabaseDumps("ardua", DUMP),),
                          in_s3=False, sentinels=(Sentinel("db-upload", "postgres", STALE),))
    verdict = health.evaluate(sig, LIMITS, NOW)
    assert verdict.diagnoses == ("Upload failing: db-upload has no verified upload within 2h 00m",)
    assert [c.name for c in verdict.checks] == [
        "dump ardua (last/)", "S3 has ardua's dump", "last success postgres/", "restore drill",
        "bucket versioning"]


FIRST = datetime(2025, 12, 20, 11, 0, tzinfo=UTC)  # the first scheduled drill (a Saturday)


@pytest.mark.parametrize(("first_at", "now", "state", "detail", "diagnosis"), [
    (None, NOW, "WARNING", "no drill yet, and drill.schedule is empty",
     "Restores are never drilled: no drill recorded and drill.schedule is empty"),
    (FIRST, NOW, "UNKNOWN", "no drill yet, first at 2025-12-20T11:00:00Z",
     "No restore drill yet: the first is at 2025-12-20T11:00:00Z"),
    # Running now (within drill.timeout of its start): not missed yet.
    (FIRST, FIRST + timedelta(minutes=30), "UNKNOWN",
     "no drill yet, first at 2025-12-20T11:00:00Z",
     "No restore drill yet: the first is at 2025-12-20T11:00:00Z"),
    (FIRST, FIRST + timedelta(hours=1, seconds=1), "WARNING",
     "no drill yet, first was due at 2025-12-20T11:00:00Z",
     "Restore drill never ran: the first was due at 2025-12-20T11:00:00Z"),
])
def test_no_drill_is_never_ok(first_at, now, state, detail, diagnosis) -> None:
    sig = one_destination(now, dump_job="db-upload", databases=(DatabaseDumps("ardua", DUMP),),
                          in_s3=True, sentinels=(Sentinel("db-upload", "postgres", now),),
                          drill=None, drill_first_at=first_at, drill_grace_s=3600.0)
    verdict = health.evaluate(sig, HealthConfig(dump_job="db-upload", dump_max_age_s=9e9), now)
    row = next(c for c in verdict.checks if c.name == "restore drill")
    assert (row.state, row.detail) == (state, detail)
    assert (verdict.state, verdict.diagnoses) == (state, (diagnosis,))
    assert verdict.to_json()["restore_drill_first_at"] == (
        first_at.strftime("%Y-%m-%dT%H:%M:%SZ") if first_at else None)


def test_the_newest_drill_names_its_destination() -> None:
    verdict = health.evaluate(two(copy("offsite"), drill_destination="offsite"), LIMITS, NOW)
    row = next(c for c in verdict.checks if c.name == "restore drill")
    assert (row.state, row.detail) == (
        "OK", f"OK 1d 0h ago, {DUMP.key}, 42 s, in offsite (limit 8d 0h)")
    assert verdict.to_json()["restore_drill"]["destination"] == "offsite"


@pytest.mark.parametrize("problem", [
    "state_dir /var/lib/ardua-backup is read-only: runs are not being recorded",
    "state_dir /var/lib/ardua-backup is full (12 KiB free): runs are not being recorded",
])
def test_a_state_dir_that_cannot_record_runs_is_its_own_critical_row(problem) -> None:
    sig = one_destination(NOW, dump_job="db-upload", databases=(DatabaseDumps("ardua", DUMP),),
                          in_s3=True, sentinels=(Sentinel("db-upload", "postgres", FRESH),),
                          state_dir_problem=problem)
    verdict = health.evaluate(sig, LIMITS, NOW)
    assert (verdict.state, verdict.diagnoses) == ("CRITICAL", (problem,))
    assert verdict.checks[0] == health.Check("state_dir", "CRITICAL", problem)
    assert verdict.to_json()["state_dir"] == problem
    assert verdict.render().splitlines()[-1] == f"CRITICAL: {problem}"
