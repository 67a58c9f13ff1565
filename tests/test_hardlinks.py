"""upload.hardlinks: which files are candidates, what is copied from where (pure logic), and
servercopy.object_md5."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from supervisor.containers.rclone import ListedFile
from supervisor.record.report import RunReport
from supervisor.storage.destination import Destination
from supervisor.storage.s3 import S3Object
from supervisor.upload import hardlinks, servercopy
from supervisor.upload.hardlinks import CopyPlan, Group, Hashed

T1 = "2026-03-02T01:00:00.123456789Z"
T2 = "2026-03-03T01:00:00.5Z"
WHEN = datetime(2026, 3, 2, tzinfo=UTC)
MD5_A, MD5_B = hashlib.md5(b"a").hexdigest(), hashlib.md5(b"b").hexdigest()


def obj(rel: str, size: int, etag: str) -> S3Object:
    return S3Object(f"postgres/{rel}", size, etag, WHEN)


def day(n: int, size: int = 100, mod_time: str = T1) -> list[ListedFile]:
    """One pbl day: the dump in last/ and its three hard links."""
    return [ListedFile(p, size, mod_time) for p in (
        f"last/db-2026030{n}-010000.dump", f"daily/db-2026030{n}.dump", "weekly/db-202610.dump",
        "monthly/db-202603.dump")]


def test_exact_pattern_escapes_globs() -> None:
    assert hardlinks.exact_pattern("last/a[1]*{x}?.dump") == r"/last/a\[1\]\*\{x\}\?.dump"
    assert hardlinks.exact_pattern("a\\b") == "/a\\\\b"


def test_etag_md5_only_for_plain_md5_etags() -> None:
    assert hardlinks.etag_md5(f'"{MD5_A}"') == MD5_A
    assert hardlinks.etag_md5(f'"{MD5_A}-3"') is None
    assert hardlinks.etag_md5("") is None


def test_object_md5_from_etag_or_rclone_metadata() -> None:
    b64 = base64.b64encode(bytes.fromhex(MD5_B)).decode()
    assert servercopy.object_md5({"ETag": f'"{MD5_A}"'}) == MD5_A
    assert servercopy.object_md5({"ETag": '"x-2"', "Metadata": {"md5chksum": b64}}) == MD5_B
    assert servercopy.object_md5({"ETag": '"x-2"', "Metadata": {"Md5chksum": b64}}) == MD5_B
    assert servercopy.object_md5({"ETag": '"x-2"', "Metadata": {"md5chksum": "!!"}}) is None
    assert servercopy.object_md5({"ETag": '"x-2"'}) is None


def test_new_day_is_one_candidate_group() -> None:
    groups = hardlinks.candidate_groups(day(2), {})
    assert groups == [Group(100, T1, tuple(sorted(f.path for f in day(2))))]


def test_unchanged_day_needs_no_hashing() -> None:
    mirror = {f.path: obj(f.path, 100, MD5_A) for f in day(2)}
    assert hardlinks.candidate_groups(day(2), mirror) == []


def test_empty_files_singletons_and_markers_are_no_candidates() -> None:
    listed = [ListedFile("a", 0, T1), ListedFile("b", 0, T1), ListedFile("c", 5, T1),
              ListedFile("d", 5, T2), ListedFile(".last_success", 5, T1)]
    assert hardlinks.candidate_groups(listed, {}) == []


def test_same_size_different_etags_is_a_candidate() -> None:
    # weekly/ was re-linked to a new dump of the very same size: S3 holds the old one there
    mirror = {f.path: obj(f.path, 100, MD5_A) for f in day(2)}
    mirror["weekly/db-202610.dump"] = obj("weekly/db-202610.dump", 100, MD5_B)
    assert len(hardlinks.candidate_groups(day(2), mirror)) == 1


def test_candidates_stay_within_the_command_line_bounds(monkeypatch) -> None:
    monkeypatch.setattr(hardlinks, "MAX_CANDIDATE_FILES", 5)
    listed = [ListedFile(f"{d}/small{i}", 10, T1) for i in range(3) for d in "ab"]
    listed += [ListedFile(f"{d}/big", 1000, T2) for d in "abcd"]
    groups = hardlinks.candidate_groups(listed, {})
    assert [g.size for g in groups] == [1000]  # the biggest saving first, the rest left out


def hashed(files: list[ListedFile], md5: str = MD5_A) -> dict[str, Hashed]:
    return {f.path: Hashed(f.path, f.size, f.mod_time, md5) for f in files}


def test_new_day_seeds_one_and_copies_three() -> None:
    files = day(2)
    groups = hardlinks.candidate_groups(files, {})
    plans = hardlinks.plan_copies(groups, hashed(files), {})
    assert plans == [CopyPlan("daily/db-20260302.dump", MD5_A, 100, (
        "last/db-20260302-010000.dump", "monthly/db-202603.dump", "weekly/db-202610.dump"),
        seed=True)]
    assert plans[0].bytes_saved == 300


def test_content_already_in_s3_is_the_donor() -> None:
    files = day(2)
    mirror = {"last/db-20260302-010000.dump": obj("last/db-20260302-010000.dump", 100, MD5_A),
              "weekly/db-202610.dump": obj("weekly/db-202610.dump", 90, MD5_B)}
    plans = hardlinks.plan_copies(hardlinks.candidate_groups(files, mirror), hashed(files),
                                  mirror)
    assert plans == [CopyPlan("last/db-20260302-010000.dump", MD5_A, 100, (
        "daily/db-20260302.dump", "monthly/db-202603.dump", "weekly/db-202610.dump"),
        seed=False)]


def test_same_size_and_mtime_but_other_content_is_never_copied() -> None:
    files = [ListedFile("a", 100, T1), ListedFile("b", 100, T1), ListedFile("c", 100, T1)]
    hashes = hashed(files[:2]) | hashed(files[2:], MD5_B)
    plans = hardlinks.plan_copies(hardlinks.candidate_groups(files, {}), hashes, {})
    assert plans == [CopyPlan("a", MD5_A, 100, ("b",), seed=True)]  # c is uploaded by the sync


def test_a_file_changed_since_the_listing_is_left_to_the_sync() -> None:
    files = [ListedFile("a", 100, T1), ListedFile("b", 100, T1)]
    hashes = hashed(files)
    hashes["b"] = Hashed("b", 100, T2, MD5_A)  # touched between listing and hashing
    assert hardlinks.plan_copies(hardlinks.candidate_groups(files, {}), hashes, {}) == []


def test_multipart_donor_is_checked_by_its_metadata() -> None:
    files = [ListedFile("a", 100, T1), ListedFile("b", 100, T1)]
    mirror = {"a": obj("a", 100, f"{MD5_B}-2")}
    plans = hardlinks.plan_copies(hardlinks.candidate_groups(files, mirror), hashed(files),
                                  mirror)
    assert plans == [CopyPlan("a", MD5_A, 100, ("b",), seed=False, donor_unverified=True)]


def test_encrypted_donor_is_any_object_of_the_files_size() -> None:
    """An encrypted mirror (listed by file name and size, storage.crypt.plain): its ETags are
    MD5s of ciphertext, so the file already there is a donor its HEAD decides on, never a
    reason to upload it again."""
    files = [ListedFile("last/x", 100, T1), ListedFile("daily/x", 100, T1)]
    mirror = {"last/x": obj("last/x", 100, MD5_B)}
    plans = hardlinks.plan_copies(hardlinks.candidate_groups(files, mirror), hashed(files),
                                  mirror, encrypted=True)
    assert plans == [CopyPlan("last/x", MD5_A, 100, ("daily/x",), seed=False,
                              donor_unverified=True)]


def test_hash_output_is_parsed_and_command_names_exact_files() -> None:
    out = json.dumps([
        {"Path": "last/x.dump", "Size": 3, "ModTime": T1, "IsDir": False,
         "Hashes": {"md5": MD5_A.upper()}},
        {"Path": "last", "Size": -1, "IsDir": True},
        {"Path": "daily/x.dump", "Size": 3, "ModTime": T1, "IsDir": False, "Hashes": {}},
    ])
    assert hardlinks.parse_hashes(out) == {"last/x.dump": Hashed("last/x.dump", 3, T1, MD5_A)}
    command = hardlinks.hash_command(["last/x*.dump"])
    assert command[:6] == ["lsjson", "--recursive", "--files-only", "--hash-type", "md5",
                           "/source/"]
    assert command[6:8] == ["--include", r"/last/x\*.dump"]
    seed = hardlinks.seed_command(Destination("b"), "postgres", 600, ["last/x.dump"])
    assert seed[:3] == ["copy", "/source/", ":s3:b/postgres/"]
    assert "sync" not in seed and "--checksum" in seed


def test_report_fields_carry_copies() -> None:
    report = RunReport(job="db-upload", run_id="r", result="success", exit_code=0,
                       started_at=WHEN, finished_at=WHEN, duration_s=1.0,
                       copied_server_side=3, bytes_saved=300)
    assert report.fields()["copied_server_side"] == 3
    assert report.fields()["bytes_saved"] == 300
    assert "copied in S3      3 files" in report.summary()
