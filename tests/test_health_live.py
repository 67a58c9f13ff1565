"""status, guards, metrics, heartbeats: real S3 (SeaweedFS), real files, real containers."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from supervisor import cli
from supervisor.config import load as config
from supervisor.core.states import DEFERRED, FAILED, REFUSED, SUCCESS
from supervisor.postgres import gocron as dbbackup
from supervisor.record import sinks
from supervisor.storage import markers, s3
from supervisor.upload import run as pipeline
from tests.harness.dribble import DribblingServer
from tests.harness.gocron import NO_RUN, GoCron, state
from tests.harness.pgtree import fill_volume, make_backups_tree

pytestmark = pytest.mark.docker
NOW = datetime.now(UTC)


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request (heartbeat pings); answers `server.status` (200 unless set) with
    the JSON in `server.reply`. go-cron is tests.harness.gocron's stand-in."""

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body.decode()))  # type: ignore[attr-defined]
        self.send_response(self.server.status or 200)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(self.server.reply).encode())  # type: ignore[attr-defined]

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.seen, server.reply, server.status = [], {}, None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def go_cron() -> Iterator[GoCron]:
    with GoCron() as server:
        yield server


@pytest.fixture
def setup(tmp_path, s3server, bucket, pg_volume, docker_client, write_config):
    """Returns make(dump_ages_h, drilled=True, **overrides) -> Config: a postgres-backup-local
    tree with dumps of those ages in the volume, a receipts dir with 10 old files, versioning on,
    a good restore drill a day ago (its record as storage.markers.format_marker writes it)."""
    s3server.client().put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    old = (NOW - timedelta(days=2)).timestamp()
    for i in range(10):
        (receipts / f"r{i}.pdf").write_bytes(os.urandom(1000))
        os.utime(receipts / f"r{i}.pdf", (old, old))

    def make(dump_ages_h: list[float], drilled: bool = True,
             **overrides: object) -> config.Config:
        dumps = [(NOW - timedelta(hours=h), os.urandom(2000)) for h in dump_ages_h]
        fill_volume(docker_client, pg_volume, lambda root: make_backups_tree(root, dumps))
        overrides.setdefault("health", {"db_container": ""})
        path = write_config(tmp_path, s3server, bucket, db_volume=pg_volume,
                            receipts_dir=receipts, overrides=overrides)
        cfg = config.load(path)
        if drilled:
            record = markers.format_marker(NOW - timedelta(days=1), True, "last/ardua-x.dump", 40)
            s3server.client().put_object(Bucket=bucket, Key=cfg.drill_marker_key,
                                         Body=record.encode())
        return cfg

    return make


def status(cfg: config.Config, capsys) -> tuple[int, dict]:
    code = cli.main(["--config", str(cfg.path), "status", "--json"])
    logger.remove()  # cli.main logs to the stderr pytest captured for this call only
    return code, json.loads(capsys.readouterr().out)


def sentinel_at(cfg: config.Config, job: str, hours_ago: float) -> None:
    s3.write_sentinel(cfg.destination(), cfg.job(job).prefix, NOW - timedelta(hours=hours_ago))


def run(cfg: config.Config, job: str, **kw: object):
    """A run recorded as the daemon and `run-once` record it (ledger, metrics, heartbeats)."""
    return sinks.for_runs(cfg).record(
        job, lambda run_id: pipeline.run_job(cfg, job, run_id=run_id, **kw))


@pytest.mark.parametrize(
    ("dump_h", "upload", "ok_h", "code", "diagnosis"),
    [
        (3, True, None, 0, None),
        (3, False, 5, 2, "Upload failing"),
        (3, False, 0.5, 2, "Upload ran but missed the newest dump"),
        (30, True, None, 2, "DB backup not producing new data"),
        (30, False, 5, 2, "Both dump and upload broken"),
    ],
)
def test_design_table_rows(setup, capsys, dump_h, upload, ok_h, code, diagnosis) -> None:
    cfg = setup([dump_h + 24, dump_h])
    for job in cfg.jobs:
        if upload:
            assert run(cfg, job).result == SUCCESS
        else:
            sentinel_at(cfg, job, ok_h)
    exit_code, data = status(cfg, capsys)
    assert exit_code == code, data["diagnoses"]
    assert data["dump"]["in_s3"] is upload
    if diagnosis:
        assert data["diagnoses"][0].startswith(diagnosis), data["diagnoses"]
    else:
        assert data["state"] == "OK", data["diagnoses"]


def test_no_dump_at_all(setup, capsys) -> None:
    cfg = setup([])
    code, data = status(cfg, capsys)
    assert code == 2
    assert data["diagnoses"][0].startswith("No dump at all")


def test_s3_unreachable_is_unknown_not_a_crash(setup, capsys) -> None:
    cfg = setup([3], s3={"endpoint_url": "http://127.0.0.1:9"})
    started = time.monotonic()
    code, data = status(cfg, capsys)
    assert (code, data["state"]) == (3, "UNKNOWN")
    assert data["diagnoses"][0].startswith("S3 unreachable: S3 endpoint http://127.0.0.1:9")
    assert time.monotonic() - started < 20


def test_deletion_guard_refuses_emptied_and_shrunk_sources(setup, s3server, bucket) -> None:
    cfg = setup([3])
    assert run(cfg, "receipts-upload").result == SUCCESS
    before = s3server.list_sizes(bucket, "receipts/")
    receipts = Path(cfg.job("receipts-upload").source.location)
    for i in range(8):  # 80 % gone
        (receipts / f"r{i}.pdf").unlink()
    report = run(cfg, "receipts-upload")
    assert report.result == REFUSED
    assert "would delete 8 of 10" in report.message
    for i in (8, 9):
        (receipts / f"r{i}.pdf").unlink()
    assert run(cfg, "receipts-upload").result == REFUSED
    assert s3server.list_sizes(bucket, "receipts/") == before  # mirror untouched
    forced = run(cfg, "receipts-upload", force_deletes=True)
    assert (forced.result, forced.deletes) == (SUCCESS, 10)


def test_retention_prune_passes(setup, s3server, bucket) -> None:
    cfg = setup([24 * d + 3 for d in range(7, 0, -1)])  # a week of daily dumps
    assert run(cfg, "db-upload").result == SUCCESS
    cfg = setup([24 * d + 3 for d in range(6, -1, -1)])  # next day: one new, oldest pruned
    volume = Path(pipeline.docker_runner.connect().volumes.get(
        cfg.job("db-upload").source.location).attrs["Mountpoint"])
    oldest = sorted((volume / "last").glob("ardua-2*"))[0]
    oldest.unlink()
    report = run(cfg, "db-upload")
    assert report.result == SUCCESS, report.message
    assert report.deletes == 1


def test_file_in_quiet_period_is_not_uploaded(setup, s3server, bucket, capsys) -> None:
    cfg = setup([3], drilled=False)  # S3 holds only what the runs put there
    receipts = Path(cfg.job("receipts-upload").source.location)
    (receipts / "being-written.pdf").write_bytes(b"partial")  # mtime: now
    # A plain folder syncs what has settled and leaves the young file for the next run.
    code = cli.main(["--config", str(cfg.path), "run-once", "receipts-upload"])
    logger.remove()
    assert code == 0
    held = s3server.list_sizes(bucket, "receipts/")
    assert "receipts/being-written.pdf" not in held and len(held) == 11  # 10 + .last_success
    old = time.time() - 600
    os.utime(receipts / "being-written.pdf", (old, old))
    assert run(cfg, "receipts-upload").result == SUCCESS
    assert s3server.get(bucket, "receipts/being-written.pdf") == b"partial"
    # The dump job defers the whole run: half of a dump set in S3 is wrong.
    volume = Path(pipeline.docker_runner.connect().volumes.get(
        cfg.job("db-upload").source.location).attrs["Mountpoint"])
    (volume / "last" / "ardua-being-written.dump").write_bytes(b"PGDMP partial")
    code = cli.main(["--config", str(cfg.path), "run-once", "db-upload"])
    logger.remove()
    assert code == 75  # sysexits.h EX_TEMPFAIL
    assert s3server.list_sizes(bucket, "postgres/") == {}


# go-cron's replies, shaped as prodrigestivill/go-cron marshals its CurrentState.
_DUMPING = {**NO_RUN, "Pid": 4242, "StartingTime": "2026-11-24T01:15:00-08:00",
            "Stdout": "Creating dump of ardua database from postgres...\n"}
GO_CRON_STARTED = state()
GO_CRON_DUMPING = state(running={"4242": _DUMPING})
# backup.sh under `set -Eeo pipefail` stops at the first database whose pg_dump fails; go-cron
# keeps the whole stderr of that run.
PG_DUMP_ERROR = ('pg_dump: error: connection to server at "postgres" (127.0.0.1), port 5432 '
                 'failed: FATAL:  database "shop" does not exist')
GO_CRON_FAILED = state({**_DUMPING, "Exit_status": 1, "ExitTime": "2026-11-24T01:15:09-08:00",
                        "Stdout": "x" * 300_000, "Stderr": f"{PG_DUMP_ERROR}\n"})


@pytest.mark.parametrize(("reply", "running", "exit_status", "exit_time"), [
    (GO_CRON_STARTED, False, None, None),
    (GO_CRON_DUMPING, True, None, None),
    (GO_CRON_FAILED, False, 1, datetime(2026, 11, 24, 9, 15, 9, tzinfo=UTC)),
])
def test_go_cron_endpoint_shapes(go_cron, reply, running, exit_status, exit_time) -> None:
    go_cron.state = reply
    got = dbbackup.cron_state(go_cron.url)
    assert (got.running, got.last_exit_status, got.last_exit_time) == (
        running, exit_status, exit_time)


def test_failing_dump_runs_are_critical_with_pg_dumps_error(setup, go_cron, capsys) -> None:
    """go-cron answers 503 with its JSON when the last run failed: that is the dump failing,
    not an unreachable endpoint."""
    go_cron.state = GO_CRON_FAILED
    url = go_cron.url
    with pytest.raises(urllib.error.HTTPError) as answer:  # the stand-in answers as go-cron does
        urllib.request.urlopen(url, timeout=5)
    assert answer.value.code == 503
    cfg = setup([3], health={"db_container": "", "db_health_url": url})
    for job in cfg.jobs:
        assert run(cfg, job).result == SUCCESS
    code, data = status(cfg, capsys)
    assert code == 2
    assert data["diagnoses"] == [
        f"DB backup failing: last dump run exited 1 at 2026-11-24T09:15:09Z: {PG_DUMP_ERROR}"]
    assert data["db_cron"] == {"running": False, "last_exit_status": 1,
                               "last_exit_time": "2026-11-24T09:15:09Z",
                               "last_stderr": PG_DUMP_ERROR}


@pytest.mark.parametrize("broken", ["closed port", "HTTP 502 page"])
def test_an_unreachable_go_cron_endpoint_stays_a_warning(setup, http_server, capsys,
                                                         broken) -> None:
    if broken == "closed port":
        url = "http://127.0.0.1:9/"
    else:  # a proxy in front of it answering an error page: not go-cron's JSON
        http_server.reply = {"error": "bad gateway"}
        http_server.status = 502
        url = f"http://127.0.0.1:{http_server.server_port}/"
    cfg = setup([3], health={"db_container": "", "db_health_url": url})
    for job in cfg.jobs:
        assert run(cfg, job).result == SUCCESS
    code, data = status(cfg, capsys)
    assert (code, data["state"]) == (1, "WARNING"), data["diagnoses"]
    assert data["problems"][0]["text"].startswith("Dump container's health endpoint unreachable")


def test_a_dribbling_go_cron_endpoint_does_not_hold_status(setup, capsys) -> None:
    """Issue 27 item 2: whatever answers on go-cron's port sends a byte a second (each byte
    reset the old per-read timeout: `status` was held 90 s). The probe lets go at its deadline,
    and status says so in its row."""
    with DribblingServer(every_s=1.0) as dribbler:
        url = dribbler.url  # as the config keeps it: no trailing slash
        cfg = setup([3], health={"db_container": "", "db_health_url": f"{url}/"})
        started = time.monotonic()
        _, data = status(cfg, capsys)
        spent = time.monotonic() - started
    rows = {c["name"]: (c["state"], c["detail"]) for c in data["checks"]}
    assert rows["db-backup last run"] == (
        "WARNING", f"go-cron endpoint {url} did not answer: no complete answer within 3 s")
    assert spent < 30  # the whole status: listing container, S3, and 3 s for go-cron


def test_dump_in_progress_per_go_cron_is_deferred(setup, go_cron, s3server, bucket) -> None:
    go_cron.state = GO_CRON_DUMPING
    cfg = setup([3], drilled=False, health={"db_container": "", "db_health_url": go_cron.url})
    assert run(cfg, "db-upload").result == DEFERRED
    assert s3server.list_sizes(bucket, "postgres/") == {}


def textfile_samples(prom: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(metric name, its sorted labels) -> value, as the textfile holds them."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(prom.read_text())
            for s in family.samples}


def test_metrics_file_holds_the_run(setup, tmp_path, capsys) -> None:
    prom = tmp_path / "ardua.prom"
    cfg = setup([3], metrics={"textfile": str(prom)})
    report = run(cfg, "db-upload")
    _, verdict = status(cfg, capsys)
    checked_at = datetime.strptime(verdict["checked_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    samples = textfile_samples(prom)
    job = (("job", "db-upload"),)
    assert samples[("ardua_backup_last_run_bytes", job)] == report.bytes > 0
    assert samples[("ardua_backup_last_run_files", job)] == report.files
    assert samples[("ardua_backup_last_run_result", (*job, ("result", "success")))] == 1
    assert samples[("ardua_backup_last_success_timestamp_seconds", job)] == pytest.approx(
        report.finished_at.timestamp())
    assert samples[("ardua_backup_s3_has_latest_dump", ())] == 1
    # NOW is fixed at import: the age is measured from the status check, not from NOW.
    dump_age = (checked_at - (NOW - timedelta(hours=3))).total_seconds()
    assert samples[("ardua_backup_dump_age_seconds", ())] == pytest.approx(dump_age, abs=2)


def test_metrics_give_each_databases_dump_age(setup, tmp_path, docker_client, pg_volume,
                                              capsys) -> None:
    """With several databases the unlabelled dump age is the stalest one's; the per-database
    gauge says which (a real volume holding two databases' pbl trees, a real status check)."""
    prom = tmp_path / "ardua.prom"
    cfg = setup([3], metrics={"textfile": str(prom)})
    fill_volume(docker_client, pg_volume, lambda root: make_backups_tree(
        root, [(NOW - timedelta(hours=30), os.urandom(2000))], db="shop"))
    _, verdict = status(cfg, capsys)
    checked_at = datetime.strptime(verdict["checked_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    samples = textfile_samples(prom)
    expected = {db: (checked_at - (NOW - timedelta(hours=h))).total_seconds()
                for db, h in (("ardua", 3), ("shop", 30))}
    per_database = {dict(labels)["database"]: value for (name, labels), value in samples.items()
                    if name == "ardua_backup_database_dump_age_seconds"}
    assert per_database == pytest.approx(expected, abs=2)
    assert samples[("ardua_backup_dump_age_seconds", ())] == per_database["shop"]


def test_metrics_forget_a_job_removed_from_the_config(setup, tmp_path, capsys) -> None:
    """A renamed job's last values would stay exported for ever: its failed last run keeps the
    shipped ArduaBackupRunFailed rule (last_run_result{result="failed"} == 1) firing."""
    prom = tmp_path / "ardua.prom"

    def jobs_in_textfile() -> dict[str, str]:
        return {dict(labels)["job"]: dict(labels)["result"]
                for (name, labels), value in textfile_samples(prom).items()
                if name == "ardua_backup_last_run_result" and value == 1}

    missing = {"source": str(tmp_path / "no-such-folder")}
    cfg = setup([3], metrics={"textfile": str(prom)}, jobs={"receipts-upload": missing})
    assert run(cfg, "db-upload").result == SUCCESS
    assert run(cfg, "receipts-upload").result == FAILED
    assert jobs_in_textfile() == {"db-upload": "success", "receipts-upload": "failed"}

    renamed = {"schedule": "45 * * * *", "source": str(tmp_path / "receipts"),
               "prefix": "receipts"}
    cfg = setup([3], metrics={"textfile": str(prom)},
                jobs={"receipts-upload": None, "receipts-new": renamed})
    status(cfg, capsys)  # the daemon's periodic check, or any run, rewrites the file
    assert jobs_in_textfile() == {"db-upload": "success"}
    assert "receipts-upload" not in prom.read_text()


def test_heartbeats_arrive_and_a_dead_url_does_not_fail(setup, http_server) -> None:
    base = f"http://127.0.0.1:{http_server.server_port}/ping/abc"
    cfg = setup([3], jobs={"db-upload": {"heartbeat_url": base},
                           "receipts-upload": {"heartbeat_url": "http://127.0.0.1:9/x"}})
    assert run(cfg, "db-upload").result == SUCCESS
    assert [(m, p) for m, p, _ in http_server.seen] == [("GET", "/ping/abc/start"),
                                                       ("GET", "/ping/abc")]
    assert run(cfg, "receipts-upload").result == SUCCESS
    for i in range(10):
        (Path(cfg.job("receipts-upload").source.location) / f"r{i}.pdf").unlink()
    cfg = setup([3], jobs={"receipts-upload": {"heartbeat_url": base}})
    assert run(cfg, "receipts-upload").result == REFUSED
    method, path, body = http_server.seen[-1]
    assert (method, path) == ("POST", "/ping/abc/fail")
    assert "REFUSED" in body and "deletion guard" in body


def _pbl_tree(cfg: config.Config, docker_client, trees: dict[str, list[tuple[float, bytes]]]):
    """postgres-backup-local's tree for several databases of POSTGRES_DB: {db: [(hours ago,
    body)]}, each laid out by make_backups_tree as backup.sh names them."""
    volume = cfg.job("db-upload").source.location
    for db, dumps in trees.items():
        fill_volume(docker_client, volume, lambda root, db=db, dumps=dumps: make_backups_tree(
            root, [(NOW - timedelta(hours=h), body) for h, body in dumps], db=db))


def test_each_database_is_judged_on_its_own(setup, docker_client, capsys) -> None:
    """Measured before: shop's newest dump 4 days old, ardua's 15 minutes: status said OK."""
    cfg = setup([])
    _pbl_tree(cfg, docker_client, {"ardua": [(24.25, os.urandom(3000)), (0.25, os.urandom(3000))],
                                   "shop": [(96, os.urandom(2000))]})
    for job in cfg.jobs:
        assert run(cfg, job).result == SUCCESS
    code, data = status(cfg, capsys)
    assert code == 2
    assert data["diagnoses"] == [
        "DB backup not producing new data: shop's newest dump 4d 0h old (pipeline healthy)"]
    rows = {d["database"]: d for d in data["databases"]}
    assert sorted(rows) == ["ardua", "shop"]
    assert rows["ardua"]["size"] == 3000 and rows["ardua"]["in_s3"] is True
    assert rows["ardua"]["previous_size"] == 3000 and rows["shop"]["age_s"] > 95 * 3600
    assert data["dump"]["key"].startswith("last/shop-")  # schema 1's key: the stalest database

    # shop is no longer dumped on purpose: health.databases pins the ones that must be fresh.
    text = cfg.path.read_text()
    assert '[health]\ndb_container = ""\n' in text
    cfg.path.write_text(text.replace('[health]\n', '[health]\ndatabases = ["ardua"]\n'))
    code, data = status(config.load(cfg.path), capsys)
    assert (code, [d["database"] for d in data["databases"]]) == (0, ["ardua"]), data["diagnoses"]


def test_an_empty_newest_dump_is_critical_and_never_offered(setup, docker_client, capsys) -> None:
    """The real backup.sh with a failing pg_dump -Fc left last/DB-YYYYmmdd-HHMMSS.dump at 0 B
    (its pg_dump writes straight to the final name); status called it a fresh dump."""
    cfg = setup([])
    _pbl_tree(cfg, docker_client, {"ardua": [(24.5, os.urandom(5000))]})
    failed_at = NOW - timedelta(hours=0.5)

    def failed_run(root: Path) -> None:  # set -Eeo pipefail: no daily/weekly/monthly links
        empty = root / "last" / f"ardua-{failed_at:%Y%m%d-%H%M%S}.dump"
        empty.write_bytes(b"")
        os.utime(empty, (failed_at.timestamp(), failed_at.timestamp()))

    fill_volume(docker_client, cfg.job("db-upload").source.location, failed_run)
    for job in cfg.jobs:
        assert run(cfg, job).result == SUCCESS
    code, data = status(cfg, capsys)
    assert code == 2
    empty = [d for d in data["diagnoses"] if "empty/shrunken" in d]
    assert len(empty) == 1 and empty[0].startswith(
        "DB backup producing empty/shrunken dumps: ardua's newest dump last/ardua-")
    assert "is 0 B (the previous last/ardua-" in empty[0] and "is 5000 B)" in empty[0]
    assert data["databases"][0]["in_s3"] is True  # uploaded like any file: S3 mirrors last/
    assert cli.main(["--config", str(cfg.path), "restore", "list"]) == 0
    out, err = capsys.readouterr()
    logger.remove()
    listed = [line.split()[-1] for line in out.splitlines()[1:]]
    held = s3.list_objects(cfg.destination(), "postgres")
    assert listed and all(held[k.removeprefix("postgres/")].size
                          for k in listed)
    key = data["databases"][0]["key"]
    assert data["databases"][0]["size"] == 0 and f"postgres/{key}" not in out
    assert f"postgres/{key}" in err
    assert "skipped 1 empty dump(s) (0 B" in err


def test_a_shrunken_dump_is_critical(setup, docker_client, capsys) -> None:
    cfg = setup([])
    _pbl_tree(cfg, docker_client, {"ardua": [(24.5, os.urandom(10_000)), (0.5, os.urandom(3000))]})
    for job in cfg.jobs:
        assert run(cfg, job).result == SUCCESS
    code, data = status(cfg, capsys)
    assert code == 2
    assert data["diagnoses"] == [
        f"DB backup producing empty/shrunken dumps: ardua's newest dump "
        f"{data['databases'][0]['key']} is 3000 B, 30% of the previous "
        f"{data['databases'][0]['previous_key']} (10000 B; health.min_size_share 50%)"]
