"""Where a copy lives: one bucket at one endpoint, reached with one set of credentials, written
with one set of upload options. Everything that talks to S3 (the boto3 client, the rclone
containers, the sentinel, the error messages) takes a Destination and asks it; nothing else
knows a bucket name.

A config's ``[destinations.NAME]`` tables are its Destinations, in the file's order; an ``[s3]``
table alone is one Destination named ``s3`` (how configs were written before there could be
several). Its setting names (``destinations.offsite.bucket``, ``s3.bucket``) are how errors tell
the operator what to fix.
Pure: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from supervisor.storage import crypt, markers
from supervisor.storage.upload_options import UploadOptions

# rclone's own name for the remote of every container: `:s3:` is the on-the-fly backend,
# configured by environment (containers.rclone.environment), never by a config file.
_RCLONE_BACKEND = ":s3:"


@dataclass(frozen=True)
class Destination:
    bucket: str
    region: str = "us-east-1"
    endpoint_url: str = ""  # "" = AWS
    credentials_file: Path | None = None  # None = IAM role / the default chain
    profile: str = "default"
    storage_class: str = ""
    server_side_encryption: str = ""
    sse_kms_key_id: str = ""
    object_lock_mode: str = ""  # "", GOVERNANCE or COMPLIANCE: every object written is locked
    object_lock_days: int = 0
    encryption_key_file: Path | None = None  # None: objects are written as they are
    table: str = "s3"  # the config table it was read from: names its settings in errors
    # The key file's passwords, read by config.load (never shown, never compared).
    crypt_key: crypt.CryptKey | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.table.rpartition(".")[2]

    def setting(self, key: str) -> str:
        """The full name of one of its settings, as the operator writes it: `s3.bucket`."""
        return f"{self.table}.{key}"

    def retain_until(self, now: datetime) -> datetime | None:
        """The Object Lock retain-until date of an object written at `now` (None: no lock)."""
        if not self.object_lock_mode:
            return None
        return now + timedelta(days=self.object_lock_days)

    @property
    def upload_options(self) -> UploadOptions:
        return UploadOptions(self.storage_class, self.server_side_encryption,
                             self.sse_kms_key_id)

    @property
    def provider(self) -> str:
        """rclone's S3 provider: AWS unless a custom endpoint points elsewhere."""
        return "Other" if self.endpoint_url else "AWS"

    @property
    def where(self) -> str:
        """The endpoint, for messages: its URL, or AWS and the region."""
        return self.endpoint_url or f"AWS ({self.region})"

    def url(self, prefix: str) -> str:
        """`s3://bucket/prefix/`: how logs, reports and container labels name a mirror."""
        return f"s3://{self.bucket}/{prefix}/"

    def key_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    @property
    def encrypted(self) -> bool:
        return self.encryption_key_file is not None

    def remote(self, prefix: str) -> str:
        """rclone's name for the prefix: the bucket on the S3 backend, or the crypt remote over
        it (containers.jobs mounts its config file). Trailing slash: without it rclone reports
        any HEAD failure as "is a file not a directory"."""
        if self.encrypted:
            return f"{crypt.REMOTE}:{prefix}/"
        return f"{_RCLONE_BACKEND}{self.bucket}/{prefix}/"

    def object_key(self, key: str) -> str:
        """The S3 key of the file a plain key names (`.bin` added when encrypted)."""
        return crypt.object_name(key) if self.encrypted else key

    def sentinel_key(self, prefix: str) -> str:
        return markers.sentinel_key(prefix)
