"""Upload options: storage class and server-side encryption of every object ardua-backup puts.

One validated value (the config keys s3.storage_class, s3.server_side_encryption, s3.sse_kms_key_id,
checked together by validate_upload_options), two renderings: rclone's environment for every rclone
container (rclone.environment merges rclone_env), boto3 ExtraArgs for the objects the daemon
writes itself (s3.put_text: the sentinel, the drill marker). Pure: no I/O here.

rclone reads RCLONE_S3_STORAGE_CLASS, RCLONE_S3_SERVER_SIDE_ENCRYPTION and
RCLONE_S3_SSE_KMS_KEY_ID (`rclone help backend s3`, 1.75.2) and applies them with provider
`Other` too (measured against SeaweedFS). None is a secret: a KMS key ARN names a key, it does
not open it.

With aws:kms the ETag of an object is no MD5: rclone then stores the MD5 as md5chksum metadata on
every upload (its s3 backend sets etagIsNotMD5), and restore.verify checks that metadata instead
of the ETag. A listing does not carry metadata, so expect `--checksum` resyncs to HEAD objects
(not measured: SeaweedFS here has no KMS and answers aws:kms uploads with 500 InternalError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# AWS's StorageClass values for PutObject (botocore 1.44.5's S3 model), sorted by what they
# mean for a backup mirror that must restore on demand.
READABLE_CLASSES = (
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER_IR",
)
_REFUSED_CLASSES = {
    "GLACIER": "archived objects need a restore request (minutes to hours) before any GET, so "
               "restore db, the drill and the receipts spot check would fail; use GLACIER_IR "
               "(instant retrieval)",
    "DEEP_ARCHIVE": "archived objects need a restore request (up to 48 hours) before any GET, "
                    "so restore db, the drill and the receipts spot check would fail; use "
                    "GLACIER_IR (instant retrieval)",
    "OUTPOSTS": "only for S3 on Outposts buckets",
    "SNOW": "only for Snow Family devices",
    "EXPRESS_ONEZONE": "only for directory buckets, which have no versioning",
    "FSX_OPENZFS": "only for FSx access points",
    "FSX_ONTAP": "only for FSx access points",
    "AWS_BACKUP_WARM": "set by AWS Backup, not by uploads",
    "AWS_BACKUP_LOW_COST_WARM": "set by AWS Backup, not by uploads",
}
SSE_ALGORITHMS = ("", "AES256", "aws:kms")
_KMS_KEY = re.compile(r"^[A-Za-z0-9:/_.+=,@-]{1,2048}$")


@dataclass(frozen=True)
class UploadOptions:
    storage_class: str = ""  # "" = the bucket's default (STANDARD)
    server_side_encryption: str = ""  # "" = the bucket's default encryption
    sse_kms_key_id: str = ""  # only with aws:kms; "" = the AWS managed key aws/s3


def validate_upload_options(storage_class: str, sse: str, kms_key_id: str,
                            table: str = "s3") -> UploadOptions:
    """The three options, checked together; an error names them in `table` (the config's)."""
    if storage_class and storage_class not in READABLE_CLASSES:
        if storage_class in _REFUSED_CLASSES:
            raise ValueError(f"{table}.storage_class: {storage_class} is not usable for backups: "
                             f"{_REFUSED_CLASSES[storage_class]}")
        hint = (f"; write it in capitals: {storage_class.upper()}"
                if storage_class.upper() in READABLE_CLASSES else "")
        raise ValueError(f"{table}.storage_class: {storage_class!r} is not an S3 storage class; "
                         f"use one of {', '.join(READABLE_CLASSES)} or \"\"{hint}")
    if sse not in SSE_ALGORITHMS:
        hint = "; did you mean AES256?" if sse.upper().replace("-", "") == "AES256" else ""
        raise ValueError(f"{table}.server_side_encryption: {sse!r} is not one of \"\", \"AES256\", "
                         f"\"aws:kms\"{hint}")
    if kms_key_id and sse != "aws:kms":
        raise ValueError(f"{table}.sse_kms_key_id is set but {table}.server_side_encryption is "
                         f"{sse!r}: a KMS key only applies with \"aws:kms\"")
    if kms_key_id and not _KMS_KEY.match(kms_key_id):
        raise ValueError(f"{table}.sse_kms_key_id: not a KMS key id, key ARN or alias (no spaces "
                         "or control characters)")
    return UploadOptions(storage_class, sse, kms_key_id)


# Each option: its UploadOptions field, rclone's environment variable, boto3's ExtraArgs key.
_RENDERINGS = (
    ("storage_class", "RCLONE_S3_STORAGE_CLASS", "StorageClass"),
    ("server_side_encryption", "RCLONE_S3_SERVER_SIDE_ENCRYPTION", "ServerSideEncryption"),
    ("sse_kms_key_id", "RCLONE_S3_SSE_KMS_KEY_ID", "SSEKMSKeyId"),
)


def rclone_env(opts: UploadOptions) -> dict[str, str]:
    return {env: getattr(opts, f) for f, env, _ in _RENDERINGS if getattr(opts, f)}


def boto_extra_args(opts: UploadOptions) -> dict[str, str]:
    return {arg: getattr(opts, f) for f, _, arg in _RENDERINGS if getattr(opts, f)}


def describe(opts: UploadOptions) -> str:
    sc = opts.storage_class or "bucket default"
    sse = opts.server_side_encryption or "bucket default"
    if opts.sse_kms_key_id:
        sse += f" (key {opts.sse_kms_key_id})"
    elif opts.server_side_encryption == "aws:kms":
        sse += " (AWS managed key aws/s3)"
    return f"storage class {sc}, server-side encryption {sse}"
