"""A busy receipts folder: the run syncs what has settled and leaves the files changed within
guard.quiet_period for the next run, on both sides (not uploaded, not deleted from S3). Real CLI,
real rclone container, real SeaweedFS, real files written while the run goes on."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.config import load as config
from supervisor.containers import engine as docker_runner
from supervisor.core.states import DEFERRED, SUCCESS
from supervisor.restore import drill
from supervisor.upload import run as pipeline
from tests.harness.cli import run_cli
from tests.harness.files import settle
from tests.harness.poll import poll

pytestmark = pytest.mark.docker
OLD = {f"2026/03/r{i}.pdf": os.urandom(1500 + i) for i in range(10)}


def receipts_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    return settle(root)


def age(root: Path, *rels: str) -> None:
    """Dates these files an hour back: they have settled."""
    when = time.time() - 3600
    for rel in rels:
        os.utime(root / rel, (when, when))


def s3_receipts(server, bucket: str) -> dict[str, bytes]:
    objects = server.list_keys(bucket, "receipts/")
    objects.pop("receipts/.last_success", None)
    return {key.removeprefix("receipts/"): body for key, body in objects.items()}


def final_fields(stderr: str) -> dict[str, str]:
    """The fields of the run's final log line (`[KEY=VALUE ...]` without a journal)."""
    line = next(line for line in reversed(stderr.splitlines()) if "RESULT=" in line)
    return dict(re.findall(r"([A-Z_]+)=(\S+)", line.rsplit("[", 1)[1].rstrip("]")))


class Writer:
    """A shop's receipt writer: one new file every `interval` s, each written in two halves
    (a reader in between sees half a receipt). Bounded: at most `limit` files."""

    def __init__(self, root: Path, interval: float = 0.5, limit: int = 100):
        self.root, self.interval, self.limit = root, interval, limit
        self.files: dict[str, bytes] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)

    def _write(self) -> None:
        for i in range(self.limit):
            if self.stop.is_set():
                return
            rel, body = f"busy/receipt-{i:03d}.pdf", os.urandom(4096)
            (self.root / "busy").mkdir(exist_ok=True)
            with open(self.root / rel, "wb") as f:
                f.write(body[:2048])
                f.flush()
                self.stop.wait(0.1)  # pacing of the writer, not synchronisation
                f.write(body[2048:])
            self.files[rel] = body
            self.stop.wait(self.interval)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def stop_at_listing(client: docker.DockerClient, source: Path, writer: Writer) -> None:
    """Stops the writer when the run's listing container starts (a file in progress is
    finished): every receipt it wrote exists when rclone lists the folder, so the young set is
    known exactly. (A file created after the listing is the window docs/design.md step 4
    describes.)"""
    events = client.events(decode=True, filters={
        "type": "container", "event": "start",
        "label": f"{docker_runner.LABEL_READS}={source}"})

    def watch() -> None:
        for _event in events:
            writer.stop.set()
            events.close()
            return

    threading.Thread(target=watch, daemon=True).start()


def test_busy_folder_uploads_what_settled_and_leaves_young_files(
    docker_client, s3server, bucket, write_config, tmp_path
) -> None:
    receipts = receipts_folder(tmp_path / "receipts", OLD)
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts,
                       drill={"receipts_sample": 100})
    with Writer(receipts) as writer:
        poll(lambda: len(writer.files) >= 3, "the writer's first receipts", timeout=30)
        stop_at_listing(docker_client, receipts, writer)
        result = run_cli("run-once", "receipts-upload", config=cfg)
        assert writer.stop.is_set(), "the run never listed the folder"
    young = dict(writer.files)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert re.search(rf"skipped young\s+{len(young)}\b", result.stdout), result.stdout
    assert f"{len(young)} file(s) changed within guard.quiet_period left for the next run" \
        in result.stdout
    fields = final_fields(result.stderr)
    assert (fields["RESULT"], fields["SKIPPED_YOUNG"], fields["FILES"]) == (
        "success", str(len(young)), str(len(OLD)))
    assert "busy/receipt-000.pdf" in result.stderr  # the line naming the skipped files
    assert s3_receipts(s3server, bucket) == OLD  # settled: all there, byte-identical
    # The drill's spot check expects only receipts that had settled by that upload.
    cfg_loaded = config.load(cfg)
    spot = drill.spot_check_receipts(cfg_loaded)
    assert (spot.checked_local, spot.not_in_s3, spot.ok) == (len(OLD), (), True)

    age(receipts, *young)  # they settle
    second = run_cli("run-once", "receipts-upload", config=cfg)

    assert second.returncode == 0, second.stdout + second.stderr
    assert final_fields(second.stderr)["SKIPPED_YOUNG"] == "0"
    assert s3_receipts(s3server, bucket) == {**OLD, **young}


def test_receipt_rewritten_in_place_keeps_its_old_copy_until_it_settles(
    s3server, bucket, write_config, tmp_path
) -> None:
    # Names with rclone glob characters: unescaped, "/2026/a[1].pdf" would match 2026/a1.pdf and
    # "/2026/back\\slash.pdf" 2026/backslash.pdf. (back\\slash.pdf stays young: SeaweedFS
    # stores a backslash in a key as "/".)
    files = {**OLD, "2026/a[1].pdf": b"old a[1]", "2026/a1.pdf": b"old a1",
             "2026/{x,y} *?.pdf": b"old braces"}
    receipts = receipts_folder(tmp_path / "receipts", files)
    prom = tmp_path / "ardua.prom"
    cfg = write_config(tmp_path, s3server, bucket, receipts_dir=receipts,
                       metrics={"textfile": str(prom)})
    assert run_cli("run-once", "receipts-upload", config=cfg).returncode == 0
    assert s3_receipts(s3server, bucket) == files
    (receipts / "2026/a[1].pdf").write_bytes(b"NEW a[1], still being written")  # young
    (receipts / "2026/{x,y} *?.pdf").write_bytes(b"NEW braces")  # young
    (receipts / "2026/back\\slash.pdf").write_bytes(b"young, new")
    (receipts / "2026/a1.pdf").write_bytes(b"new a1, done")
    (receipts / "2026/backslash.pdf").write_bytes(b"settled, new")
    age(receipts, "2026/a1.pdf", "2026/backslash.pdf")

    result = run_cli("run-once", "receipts-upload", config=cfg)

    assert result.returncode == 0, result.stdout + result.stderr
    fields = final_fields(result.stderr)
    assert (fields["SKIPPED_YOUNG"], fields["FILES"], fields["DELETES"]) == ("3", "2", "0")
    # Not deleted, not half-written: the old copies stay until the new ones settle.
    settled = {**files, "2026/a1.pdf": b"new a1, done", "2026/backslash.pdf": b"settled, new"}
    assert s3_receipts(s3server, bucket) == settled
    gauges = {s.name: s.value for family in text_string_to_metric_families(prom.read_text())
              for s in family.samples if s.labels.get("job") == "receipts-upload"}
    assert gauges["ardua_backup_last_run_skipped_young"] == 3

    age(receipts, "2026/a[1].pdf", "2026/{x,y} *?.pdf")
    result = run_cli("run-once", "receipts-upload", config=cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    assert final_fields(result.stderr)["SKIPPED_YOUNG"] == "1"
    assert s3_receipts(s3server, bucket) == {
        **settled, "2026/a[1].pdf": b"NEW a[1], still being written",
        "2026/{x,y} *?.pdf": b"NEW braces"}


def test_nothing_settled_or_too_many_young_defers(s3server, bucket, write_config,
                                                  tmp_path, monkeypatch) -> None:
    receipts = tmp_path / "receipts"
    receipts.mkdir()
    for i in range(3):
        (receipts / f"new-{i}.pdf").write_bytes(b"just written")
    cfg = config.load(write_config(tmp_path, s3server, bucket, receipts_dir=receipts))

    report = pipeline.run_job(cfg, "receipts-upload")
    assert report.result == DEFERRED, report.message
    assert "nothing has settled yet" in report.message

    (receipts / "old.pdf").write_bytes(b"settled")
    age(receipts, "old.pdf")
    monkeypatch.setattr(pipeline, "MAX_SKIPPED_YOUNG", 2)  # 3 young files: one too many
    report = pipeline.run_job(cfg, "receipts-upload")
    assert report.result == DEFERRED, report.message
    assert "too many to leave out of one sync (at most 2 files" in report.message
    assert s3server.list_sizes(bucket, "receipts/") == {}

    monkeypatch.setattr(pipeline, "MAX_SKIPPED_YOUNG", 3)
    report = pipeline.run_job(cfg, "receipts-upload")
    assert (report.result, report.skipped_young, report.files) == (SUCCESS, 3, 1)
    assert s3_receipts(s3server, bucket) == {"old.pdf": b"settled"}
