"""What the run and the dry run share is public (report.human_size)."""

from __future__ import annotations

from supervisor.report import human_size


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**4)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3072.0 GiB"]
