"""[destinations.NAME] tables: several copies of each job, each named; [s3] alone stays one
destination named s3. Pure parsing: every rule of the config and its one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor.config import load as config
from supervisor.config.load import ConfigError
from tests.harness.configs import MINIMAL

TWO = """
[destinations.primary]
bucket = "ardua-backups"
region = "us-west-2"
[destinations.offsite]
bucket = "ardua-offsite"
endpoint_url = "https://s3.example-provider.com"
object_lock_mode = "COMPLIANCE"
object_lock_days = 30
[jobs.db-upload]
schedule = "15 * * * *"
source = "volume:pg_backups"
prefix = "postgres"
[jobs.receipts-upload]
schedule = "45 * * * *"
source = "/data/receipts"
prefix = "receipts"
destinations = ["primary"]
"""


def parse(text: str) -> config.Config:
    return config.parse(text, Path("/etc/ab.toml"))


def test_two_destinations_in_file_order_and_each_job_to_its_own() -> None:
    cfg = parse(TWO)
    assert [d.name for d in cfg.destinations] == ["primary", "offsite"]
    assert cfg.destination().name == "primary"
    offsite = cfg.destination("offsite")
    assert (offsite.bucket, offsite.provider, offsite.table) == (
        "ardua-offsite", "Other", "destinations.offsite")
    assert offsite.setting("bucket") == "destinations.offsite.bucket"
    assert [d.name for d in cfg.destinations_of(cfg.job("db-upload"))] == ["primary", "offsite"]
    assert [d.name for d in cfg.destinations_of(cfg.job("receipts-upload"))] == ["primary"]


def test_object_lock_retain_until_is_now_plus_the_days() -> None:
    cfg = parse(TWO)
    now = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    assert cfg.destination("offsite").retain_until(now) == datetime(2027, 1, 5, 7, 0, tzinfo=UTC)
    assert cfg.destination("primary").retain_until(now) is None


def test_s3_alone_is_one_destination_named_s3() -> None:
    cfg = parse(MINIMAL)
    assert [(d.name, d.table, d.bucket) for d in cfg.destinations] == [
        ("s3", "s3", "ardua-backups")]
    assert cfg.destinations_of(cfg.job("db-upload")) == cfg.destinations


def test_settings_list_each_destination_by_its_table() -> None:
    shown = {key: value for key, value, _ in config.settings(parse(TWO))}
    assert shown["destinations.primary.bucket"] == "ardua-backups"
    assert shown["destinations.offsite.object_lock_days"] == 30
    assert shown["jobs.receipts-upload.destinations"] == ("primary",)
    assert not any(key.startswith("s3.") for key in shown)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda t: "[s3]\nbucket = 'x'\n" + t,
         r"^/etc/ab.toml: \[s3\] and \[destinations.\*\] together: move \[s3\]'s keys"),
        (lambda t: t.replace('destinations = ["primary"]', 'destinations = ["primary", "cold"]'),
         r"^/etc/ab.toml: jobs.receipts-upload.destinations: no destination named 'cold' "
         r"\(configured: offsite, primary\)$"),
        (lambda t: t.replace('destinations = ["primary"]', 'destinations = ["primary", "primary"]'),
         r"jobs.receipts-upload.destinations: names a destination twice"),
        (lambda t: t.replace('destinations = ["primary"]', 'destinations = "primary"'),
         r"jobs.receipts-upload.destinations: must be a list of names"),
        (lambda t: t.replace('"ardua-offsite"\nendpoint_url = "https://s3.example-provider.com"',
                             '"ardua-backups"'),
         r"^/etc/ab.toml: destinations.offsite.bucket: 'ardua-backups' at AWS \(us-east-1\) is "
         r"also destination primary's bucket, and job db-upload would mirror 'postgres' to "
         r"both$"),
        (lambda t: t.replace('object_lock_days = 30', 'object_lock_days = 0'),
         r"destinations.offsite.object_lock_days: must be 1 or more with object_lock_mode"),
        (lambda t: t.replace('object_lock_mode = "COMPLIANCE"', 'object_lock_mode = "governance"'),
         r"destinations.offsite.object_lock_mode: must be '', 'GOVERNANCE' or 'COMPLIANCE'"),
        (lambda t: t.replace('object_lock_mode = "COMPLIANCE"\n', ''),
         r"destinations.offsite.object_lock_mode: must be 'GOVERNANCE' or 'COMPLIANCE' with "
         r"object_lock_days set"),
        (lambda t: t.replace('[destinations.offsite]', '[destinations.Off_Site]'),
         r"\[destinations.Off_Site\]: destination names use a-z"),
        (lambda t: t.replace('region = "us-west-2"', 'colour = "blue"'),
         r"destinations.primary.colour: unknown key"),
        (lambda t: t.replace('region = "us-west-2"', 'server_side_encryption = "aes256"'),
         r"destinations.primary.server_side_encryption: 'aes256' is not one of"),
        (lambda t: t.replace('bucket = "ardua-offsite"\n', ''),
         r"destinations.offsite.bucket: is required"),
    ],
)
def test_each_broken_destination_rule_is_one_line_naming_the_key(change, error) -> None:
    with pytest.raises(ConfigError, match=error) as caught:
        parse(change(TWO))
    assert "\n" not in str(caught.value)


def test_one_bucket_for_two_destinations_is_fine_when_no_job_goes_to_both() -> None:
    text = TWO.replace('"ardua-offsite"\nendpoint_url = "https://s3.example-provider.com"',
                       '"ardua-backups"').replace(
        'prefix = "postgres"', 'prefix = "postgres"\ndestinations = ["offsite"]')
    cfg = parse(text)
    assert [d.bucket for d in cfg.destinations] == ["ardua-backups", "ardua-backups"]


def test_an_empty_destinations_table_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"\[destinations\] defines no destination"):
        parse(MINIMAL.replace("[s3]\nbucket = \"ardua-backups\"\n", "[destinations]\n"))
