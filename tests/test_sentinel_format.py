"""The sentinel body format (pure)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from supervisor.storage import markers


def test_format_is_utc_second_precision_with_newline() -> None:
    when = datetime(2025, 12, 17, 17, 15, 4, 987654, tzinfo=timezone(timedelta(hours=-8)))
    assert markers.format_sentinel(when) == "2025-12-18T01:15:04Z OK\n"


def test_parse_round_trip_and_rejects() -> None:
    assert markers.parse_sentinel("2025-12-18T01:15:04Z OK\n") == datetime(
        2025, 12, 18, 1, 15, 4, tzinfo=UTC
    )
    for bad in ["", "2025-12-18T01:15:04Z", "2025-12-18T01:15:04Z FAIL", "yesterday OK"]:
        with pytest.raises(ValueError):
            markers.parse_sentinel(bad)
