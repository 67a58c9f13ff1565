"""s3._timestamp: botocore's timestamp parser made fast for listings, same answers."""

from __future__ import annotations

from datetime import UTC, timedelta

import botocore.utils
import pytest

from supervisor.storage import s3
from supervisor.storage.destination import Destination
from tests.conftest import write_credentials


@pytest.mark.parametrize("text", [
    "2026-11-25T07:50:52.000Z", "2026-11-25T07:50:52Z", "2026-11-25T07:50:52.123456+01:00",
    "Wed, 25 Nov 2026 07:50:52 GMT", "1795591800", "2026-11-25T07:50:52",
])
def test_same_answer_as_botocore(text: str) -> None:
    assert s3._timestamp(text) == botocore.utils.parse_timestamp(text)


def test_a_real_listing_and_head_agree(s3server, bucket, tmp_path) -> None:
    s3server.put(bucket, "p/a.pdf", b"receipt")
    creds = write_credentials(tmp_path / "creds", s3server.access_key, s3server.secret_key)
    cfg = Destination(bucket, s3server.region, s3server.endpoint_url, creds, "default")
    listed = s3.list_objects(cfg, "p")["a.pdf"].last_modified
    head = s3.head(cfg, "p/a.pdf")["LastModified"]  # an RFC 1123 header: botocore's parser
    assert listed.utcoffset() == timedelta(0)
    assert abs(listed - head) < timedelta(seconds=1)
    assert listed.astimezone(UTC).year >= 2025
