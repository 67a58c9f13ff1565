"""`doctor`: what protects the bucket, what the credentials can do, and the IAM policy they need.

`rclone sync` mirrors local mistakes to S3 by design; what makes them undoable is the bucket's
configuration, which ardua-backup never changes itself. One row per protection, each OK /
WARNING / CRITICAL / UNKNOWN; a server that does not implement an API (NotImplemented,
MethodNotAllowed, XNotImplemented, HTTP 501) is UNKNOWN, not an error, and so is a
configuration these credentials may not read (the least-privilege key of `iam_policy` may not
read lifecycle, encryption, object-lock or public-access settings: run doctor with a key that
may, or accept those rows as UNKNOWN).

Seams (`ardua-backup doctor [--json] [--iam-policy] [--destination NAME]`, a section per
destination):

    diagnose(dest: Destination, prefixes: Sequence[str], *, sse: str = "") -> list[Row]
        prefixes: the prefixes of the jobs that copy to dest; sse: its server_side_encryption
        (a missing bucket default encryption is then no warning, the uploads ask for it
        themselves). With dest.object_lock_mode set, a bucket that cannot lock is CRITICAL and
        a "retention" row checks the lock on each job's sentinel.
    overall(rows) -> str;  exit_code(rows) -> int   (core.states.STATUS_EXIT: OK 0 ... UNKNOWN 3)
    render(rows) -> str                              the table and the verdict line
    render_sections([Section(dest, rows)]) -> str    a heading and table per destination
    to_json(rows, checked_at=None) -> dict           {"schema": 1, "checked_at", "state",
                                                      "exit_code", "checks": [...]}
    sections_json(sections, checked_at=None) -> dict  the same, each check with its
                                                      "destination", plus "destinations"
    iam_policy(bucket, prefixes, *, lock=False) -> dict   `doctor --iam-policy`
        (print with json.dumps(..., indent=2)); policy_notes(dest, offsite) what goes beside it
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from supervisor.core.states import CRITICAL, OK, STATUS_EXIT, UNKNOWN, WARNING, worst
from supervisor.core.text import printable
from supervisor.storage import crypt, cryptform, s3
from supervisor.storage.destination import Destination

JSON_SCHEMA_VERSION = 1
NOT_IMPLEMENTED = frozenset({"NotImplemented", "MethodNotAllowed", "XNotImplemented"})
_DENIED = frozenset({"AccessDenied", "403", "AllAccessDisabled"})
_ABSENT = frozenset({
    "NoSuchLifecycleConfiguration", "ServerSideEncryptionConfigurationNotFoundError",
    "ObjectLockConfigurationNotFoundError", "NoSuchPublicAccessBlockConfiguration",
})
_ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
_PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


@dataclass(frozen=True)
class Row:
    name: str
    state: str
    detail: str


def overall(rows: Sequence[Row]) -> str:
    return worst(r.state for r in rows)


def exit_code(rows: Sequence[Row]) -> int:
    return STATUS_EXIT[overall(rows)]


def _table(rows: Sequence[Row]) -> list[str]:
    width = max((len(r.name) for r in rows), default=5)
    lines = [f"{'CHECK':<{width}}  {'STATE':<8}  DETAIL"]
    # A detail may hold names from the bucket (lifecycle rule IDs): escaped for the terminal.
    return lines + [f"{r.name:<{width}}  {r.state:<8}  {printable(r.detail)}" for r in rows]


def render(rows: Sequence[Row]) -> str:
    bad = [r.name for r in rows if r.state != OK]
    verdict = f"check {', '.join(bad)}" if bad else "the bucket is protected"
    return "\n".join([*_table(rows), "", f"{overall(rows)}: {verdict}"])


@dataclass(frozen=True)
class Section:
    """One destination's rows."""

    dest: Destination
    rows: list[Row]


def _all_rows(sections: Sequence[Section]) -> list[Row]:
    return [r for section in sections for r in section.rows]


def render_sections(sections: Sequence[Section]) -> str:
    """A heading and a table per destination, then one verdict naming what is not OK where."""
    lines: list[str] = []
    for section in sections:
        dest = section.dest
        lines += [f"{dest.name}: s3://{dest.bucket} at {dest.where}", *_table(section.rows), ""]
    bad = [f"{s.dest.name} {r.name}" for s in sections for r in s.rows if r.state != OK]
    verdict = (f"check {', '.join(bad)}" if bad else
               "every bucket is protected" if len(sections) > 1 else "the bucket is protected")
    return "\n".join([*lines, f"{overall(_all_rows(sections))}: {verdict}"])


def sections_exit_code(sections: Sequence[Section]) -> int:
    return exit_code(_all_rows(sections))


def to_json(rows: Sequence[Row], checked_at: datetime | None = None) -> dict[str, Any]:
    when = (checked_at or datetime.now(UTC)).astimezone(UTC)
    return {
        "schema": JSON_SCHEMA_VERSION,
        "checked_at": f"{when:%Y-%m-%dT%H:%M:%SZ}",
        "state": overall(rows),
        "exit_code": exit_code(rows),
        "checks": [{"name": r.name, "state": r.state, "detail": r.detail} for r in rows],
    }


def sections_json(sections: Sequence[Section],
                  checked_at: datetime | None = None) -> dict[str, Any]:
    """to_json of every row, each check naming its destination, and a verdict per destination."""
    data = to_json(_all_rows(sections), checked_at)
    data["checks"] = [{**check, "destination": s.dest.name}
                      for s in sections for check in to_json(s.rows)["checks"]]
    data["destinations"] = [{"name": s.dest.name, "bucket": s.dest.bucket,
                             "endpoint": s.dest.where, "state": overall(s.rows),
                             "exit_code": exit_code(s.rows)} for s in sections]
    return data


# -- pure judges ---------------------------------------------------------------------------------


def _listed(prefixes: Sequence[str]) -> str:
    return ", ".join(f"{p}/" for p in prefixes)


def judge_versioning(bucket: str, status: str, mfa_delete: str = "") -> Row:
    mfa = "; MFA delete is on" if mfa_delete == "Enabled" else ""
    if status == "Enabled":
        return Row("versioning", OK, f"Enabled: overwrites and deletions keep the old version, "
                                     f"restore --at can undo a bad sync{mfa}")
    turn_on = (f"aws s3api put-bucket-versioning --bucket {bucket} "
               f"--versioning-configuration Status=Enabled")
    if status == "Suspended":
        return Row("versioning", CRITICAL, f"Suspended: from now on a bad sync overwrites and "
                                           f"deletes for good (older versions stay); {turn_on}")
    return Row("versioning", CRITICAL, f"off: a bad sync (a wiped folder, a broken dump) cannot "
                                       f"be undone; turn it on: {turn_on}")


def _rule_prefix(rule: Mapping[str, Any]) -> str | None:
    """The key prefix a lifecycle rule applies to, or None when it also filters on tags or
    sizes (then it covers only some objects)."""
    if "Filter" not in rule:
        return str(rule.get("Prefix", ""))  # the legacy top-level Prefix
    flt = rule["Filter"] or {}
    if set(flt) - {"Prefix", "And"}:
        return None
    if "And" in flt:
        if set(flt["And"]) - {"Prefix"}:
            return None
        return str(flt["And"].get("Prefix", ""))
    return str(flt.get("Prefix", ""))


def _covers(rule: Mapping[str, Any], prefix: str) -> bool:
    applies_to = _rule_prefix(rule)
    return (rule.get("Status") == "Enabled" and applies_to is not None
            and f"{prefix}/".startswith(applies_to))


def judge_lifecycle(rules: Sequence[Mapping[str, Any]] | None, prefixes: Sequence[str]) -> Row:
    """rules None: the bucket has no lifecycle configuration."""
    rules = rules or []
    expiry: dict[str, int] = {}  # prefix -> shortest NoncurrentDays of a covering rule
    abort: dict[str, int] = {}
    harmful: list[str] = []
    for prefix in prefixes:
        for rule in (r for r in rules if _covers(r, prefix)):
            noncurrent = rule.get("NoncurrentVersionExpiration") or {}
            multipart = rule.get("AbortIncompleteMultipartUpload") or {}
            _keep_shortest(expiry, prefix, noncurrent.get("NoncurrentDays"))
            _keep_shortest(abort, prefix, multipart.get("DaysAfterInitiation"))
            harmful += _harmful(rule, prefix)
    problems = [*_uncovered(prefixes, expiry, abort), *harmful]
    if problems:
        return Row("lifecycle", WARNING, "; ".join(problems))
    reach = min(expiry.values()) if expiry else 0
    return Row("lifecycle", OK, f"noncurrent versions expire after {reach} days (how far back "
                                f"restore --at reaches); incomplete multipart uploads are "
                                f"aborted after {max(abort.values(), default=0)} days")


def _keep_shortest(shortest: dict[str, int], prefix: str, days: Any) -> None:
    """Record a rule's day count for prefix, keeping the shortest one seen (None: no count)."""
    if days is not None:
        shortest[prefix] = min(int(days), shortest.get(prefix, int(days)))


def _harmful(rule: Mapping[str, Any], prefix: str) -> list[str]:
    """What a rule covering prefix would do to the backups behind the daemon's back."""
    rid = rule.get("ID") or "(no ID)"
    found = []
    current = rule.get("Expiration") or {}
    if current.get("Days") is not None or current.get("Date") is not None:
        when = (f"after {current['Days']} days" if current.get("Days") is not None
                else f"on {current['Date']}")
        found.append(f"rule {rid} expires current objects under {prefix}/ {when}: S3 "
                     f"would delete live backups on its own (retention is local)")
    moves = [*(rule.get("Transitions") or []), *(rule.get("NoncurrentVersionTransitions") or [])]
    if any(t.get("StorageClass") in _ARCHIVE_CLASSES for t in moves):
        found.append(f"rule {rid} moves objects under {prefix}/ to an archive class: "
                     f"those need a restore request before restore db can read them")
    return found


def _uncovered(prefixes: Sequence[str], expiry: Mapping[str, int],
               abort: Mapping[str, int]) -> list[str]:
    """The prefixes no enabled rule expires noncurrent versions / aborts uploads under."""
    problems = []
    no_expiry = [p for p in prefixes if p not in expiry]
    no_abort = [p for p in prefixes if p not in abort]
    if no_expiry:
        problems.append(f"no enabled rule expires noncurrent versions under {_listed(no_expiry)} "
                        f"(every overwritten or deleted file is kept and billed forever; add "
                        f"NoncurrentVersionExpiration)")
    if no_abort:
        problems.append(f"no enabled rule aborts incomplete multipart uploads under "
                        f"{_listed(no_abort)} (parts of interrupted uploads are billed "
                        f"forever; add AbortIncompleteMultipartUpload)")
    return problems


def judge_object_lock(config: Mapping[str, Any] | None, dest: Destination | None = None) -> Row:
    """config: the bucket's ObjectLockConfiguration (None: none); dest: whose object_lock_mode
    says whether the product locks what it writes there."""
    wants = dest.object_lock_mode if dest is not None else ""
    if not config or config.get("ObjectLockEnabled") != "Enabled":
        if dest is not None and wants:
            return Row("object lock", CRITICAL, f"{dest.setting('object_lock_mode')} is {wants} "
                                                f"but bucket {dest.bucket} cannot lock, so every "
                                                f"write there fails; Object Lock is enabled when "
                                                f"a bucket is created: create one with "
                                                f"--object-lock-enabled-for-bucket and set "
                                                f"{dest.setting('bucket')} to it (AWS can also "
                                                f"enable it on this bucket once versioned: "
                                                f"put-object-lock-configuration)")
        return Row("object lock", OK, "not enabled (optional: a default retention also keeps a "
                                      "stolen admin key from purging versions)")
    ours = (f"; every object ardua-backup writes is locked {wants} for "
            f"{dest.object_lock_days} days ({dest.setting('object_lock_mode')})"
            if dest is not None and wants else "")
    retention = (config.get("Rule") or {}).get("DefaultRetention") or {}
    if not retention:
        return Row("object lock", OK, f"enabled, no default retention{ours}")
    span = (f"{retention['Days']} days" if "Days" in retention
            else f"{retention.get('Years')} years")
    return Row("object lock", OK, f"default retention {retention.get('Mode')} {span}: every new "
                                  f"version is locked that long; sync deletions still succeed "
                                  f"and leave delete markers (expected), and noncurrent-version "
                                  f"expiry waits for the lock{ours}")


def judge_retention(dest: Destination, heads: Mapping[str, Mapping[str, Any] | None],
                    now: datetime) -> Row:
    """heads: each job's sentinel key -> its HEAD (None: not written yet). The sentinel is the
    last object a good run writes: locked as asked, the run's writes were."""
    locked, problems = [], []
    for key, head in heads.items():
        if head is None:
            continue
        mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
        if not mode or until is None:
            problems.append(f"{key} carries no retention")
        elif mode != dest.object_lock_mode or until <= now:
            problems.append(f"{key} is locked {mode} until {until:%Y-%m-%d %H:%M}Z")
        else:
            locked.append(f"{key} {mode} until {until:%Y-%m-%d}")
    if problems:
        return Row("retention", WARNING, f"{'; '.join(problems)}, not {dest.object_lock_mode} for "
                                         f"{dest.object_lock_days} days from its run: the server "
                                         f"did not keep the lock (or these credentials lack "
                                         f"s3:GetObjectRetention, without which a HEAD hides it)")
    if not locked:
        return Row("retention", OK, "no sentinel written yet: after the first run this shows "
                                    "its lock")
    return Row("retention", OK, f"the last runs' writes are locked: {', '.join(locked)}")


def judge_encryption(config: Mapping[str, Any] | None, sse: str = "",
                     setting: str = "s3.server_side_encryption") -> Row:
    """setting: the full name of the destination's server_side_encryption, for the advice."""
    rules = (config or {}).get("Rules") or []
    default = next((r.get("ApplyServerSideEncryptionByDefault") for r in rules
                    if r.get("ApplyServerSideEncryptionByDefault")), None)
    if default:
        algorithm = default.get("SSEAlgorithm", "?")
        key = default.get("KMSMasterKeyID")
        return Row("encryption", OK, f"default encryption {algorithm}"
                                     + (f" with key {key}" if key else ""))
    if sse:
        return Row("encryption", OK, f"no bucket default, but every upload asks for {sse} "
                                     f"({setting})")
    return Row("encryption", WARNING, f"no default encryption: objects are stored unencrypted; "
                                      f"set the bucket's default encryption or {setting}")


CLIENT_SIDE = "client-side encryption"


def judge_client_side(dest: Destination, prefixes: Sequence[str]) -> Row:
    """rclone crypt on or off; on, the key must decrypt the newest object under the prefixes
    (its first block: storage.cryptform): a key that no longer matches is backup loss."""
    if not dest.encrypted:
        return Row(CLIENT_SIDE, OK, "off: whoever can read the bucket reads the backups "
                                    "(docs/encryption.md)")
    try:
        newest = cryptform.newest(o for p in prefixes
                                  for rel, o in s3.list_objects(dest, p, raw=True).items()
                                  if rel.endswith(crypt.SUFFIX))
        if newest is None:
            return Row(CLIENT_SIDE, OK, "on (rclone crypt); no encrypted object yet to prove "
                                        "the key on")
        cryptform.plain_head(dest, newest)
    except (cryptform.WrongKey, cryptform.NotEncrypted) as exc:
        return Row(CLIENT_SIDE, CRITICAL, f"on (rclone crypt), but {exc}: restores fail; put "
                                          f"back the key these objects were written with")
    except s3.S3Error as exc:
        return Row(CLIENT_SIDE, UNKNOWN, f"on (rclone crypt); the key could not be proved: {exc}")
    return Row(CLIENT_SIDE, OK, f"on (rclone crypt): the key decrypts the newest object "
                                f"{printable(dest.key_url(newest.key))}")


def judge_public_access(config: Mapping[str, Any] | None) -> Row:
    if config is None:
        return Row("public access block", WARNING, "none on the bucket: a bucket policy or ACL "
                                                   "could make backups public (an account-level "
                                                   "block may still apply); turn on all four")
    off = [flag for flag in _PAB_FLAGS if not config.get(flag)]
    if off:
        return Row("public access block", WARNING, f"off: {', '.join(off)}")
    return Row("public access block", OK, "all four settings on")


# -- calls ---------------------------------------------------------------------------------------


class _Absent:
    """The call answered that this configuration does not exist."""


_ABSENT_ANSWER = _Absent()


def _code(exc: ClientError) -> tuple[str, int]:
    return (str(exc.response.get("Error", {}).get("Code", "")),
            int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0))


def _call(dest: Destination, name: str, api: str, fn: Callable[[], Any]) -> Any:
    """The answer, _ABSENT_ANSWER, or a Row saying why there is none (UNKNOWN)."""
    try:
        return fn()
    except ClientError as exc:
        code, http = _code(exc)
        if code in _ABSENT:
            return _ABSENT_ANSWER
        if code in NOT_IMPLEMENTED or http in (405, 501):
            return Row(name, UNKNOWN, f"the server does not implement {api} ({code or http})")
        if code in _DENIED:
            return Row(name, UNKNOWN, f"these credentials may not call {api} ({code}); run "
                                      f"doctor with a key that may read the bucket's settings")
        return Row(name, UNKNOWN, f"{api}: {s3.describe(exc, dest)}")
    except BotoCoreError as exc:
        return Row(name, UNKNOWN, f"{api}: {s3.describe(exc, dest)}")


def _access(dest: Destination, client: Any, prefixes: Sequence[str]) -> tuple[Row, bool]:
    """(row, go on). Lists each prefix (what the least-privilege policy allows, where a
    HEAD of the bucket needs an unconditioned s3:ListBucket)."""
    denied = []
    for prefix in prefixes:
        try:
            client.list_objects_v2(Bucket=dest.bucket, Prefix=f"{prefix}/", MaxKeys=1)
        except ClientError as exc:
            code, _ = _code(exc)
            if code in ("NoSuchBucket", "404"):
                return Row("access", CRITICAL, s3.describe(exc, dest)), False
            if code in _DENIED:
                denied.append(prefix)
                continue
            return Row("access", UNKNOWN, s3.describe(exc, dest)), False
        except BotoCoreError as exc:
            return Row("access", UNKNOWN, s3.describe(exc, dest)), False
    if denied:
        return Row("access", CRITICAL, f"these credentials may not list {_listed(denied)}: "
                                       f"uploads, status and restores fail there"), True
    return Row("access", OK, f"these credentials can list {_listed(prefixes)} in "
                             f"s3://{dest.bucket}"), True


def _version_listing(dest: Destination, client: Any, prefixes: Sequence[str]) -> Row:
    name = "version listing"
    for prefix in prefixes:
        answer = _call(dest, name, "ListObjectVersions",
                       lambda p=prefix: client.list_object_versions(
                           Bucket=dest.bucket, Prefix=f"{p}/", MaxKeys=1))
        if isinstance(answer, Row):
            if "may not call" in answer.detail:
                return Row(name, WARNING, f"these credentials may not list object versions under "
                                          f"{prefix}/: restore --at fails (grant "
                                          f"s3:ListBucketVersions and s3:GetObjectVersion)")
            return answer
    return Row(name, OK, f"these credentials can list object versions under "
                         f"{_listed(prefixes)} (what restore --at reads)")


def _sentinel_head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(client.head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if _code(exc)[0] in ("404", "NoSuchKey"):
            return None
        raise


def _retention(dest: Destination, client: Any, prefixes: Sequence[str]) -> Row:
    """Read with a HEAD, as AWS shows a version's lock (moto 5.2.6 has no GetObjectRetention)."""
    heads = {}
    for key in (dest.sentinel_key(p) for p in prefixes):
        answer = _call(dest, "retention", "HeadObject",
                       lambda k=key: _sentinel_head(client, dest.bucket, k))
        if isinstance(answer, Row):
            return answer
        heads[key] = answer
    return judge_retention(dest, heads, datetime.now(UTC))


def diagnose(dest: Destination, prefixes: Sequence[str], *, sse: str = "") -> list[Row]:
    client = s3.client(dest, fast=True)
    bucket = dest.bucket
    access, go_on = _access(dest, client, prefixes)
    if not go_on:
        return [access]
    rows = [access]

    answer = _call(dest, "versioning", "GetBucketVersioning",
                   lambda: client.get_bucket_versioning(Bucket=bucket))
    rows.append(answer if isinstance(answer, Row) else judge_versioning(
        bucket, str(answer.get("Status", "")), str(answer.get("MFADelete", ""))))

    rows.append(_version_listing(dest, client, prefixes))

    answer = _call(dest, "lifecycle", "GetBucketLifecycleConfiguration",
                   lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket))
    rows.append(answer if isinstance(answer, Row) else judge_lifecycle(
        None if answer is _ABSENT_ANSWER else answer.get("Rules", []), prefixes))

    answer = _call(dest, "object lock", "GetObjectLockConfiguration",
                   lambda: client.get_object_lock_configuration(Bucket=bucket))
    rows.append(answer if isinstance(answer, Row) else judge_object_lock(
        None if answer is _ABSENT_ANSWER else answer.get("ObjectLockConfiguration"), dest))
    if dest.object_lock_mode:
        rows.append(_retention(dest, client, prefixes))

    answer = _call(dest, "encryption", "GetBucketEncryption",
                   lambda: client.get_bucket_encryption(Bucket=bucket))
    rows.append(answer if isinstance(answer, Row) else judge_encryption(
        None if answer is _ABSENT_ANSWER else answer.get("ServerSideEncryptionConfiguration"),
        sse, dest.setting("server_side_encryption")))

    rows.append(judge_client_side(dest, prefixes))

    answer = _call(dest, "public access block", "GetPublicAccessBlock",
                   lambda: client.get_public_access_block(Bucket=bucket))
    rows.append(answer if isinstance(answer, Row) else judge_public_access(
        None if answer is _ABSENT_ANSWER else answer.get("PublicAccessBlockConfiguration")))
    return rows


# -- least-privilege policy ----------------------------------------------------------------------


def iam_policy(bucket: str, prefixes: Sequence[str], *, lock: bool = False) -> dict[str, Any]:
    """What the host's key needs for uploads, status, drills and restores (also --at), and
    nothing that could destroy history: no s3:DeleteObjectVersion (a DeleteObject on a
    versioned bucket only adds a delete marker), no lifecycle, versioning or bucket-policy
    changes. A stolen host key can then hide files behind delete markers, never purge them.

    lock (the destination's object_lock_mode is set): AWS authorizes a PUT or copy carrying a
    retention as s3:PutObjectRetention too; s3:GetObjectRetention lets a HEAD show the lock and
    s3:GetBucketObjectLockConfiguration lets doctor tell whether the bucket can lock. Never
    s3:BypassGovernanceRetention: GOVERNANCE would then stop nothing this key does."""
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects = [f"{bucket_arn}/{p}/*" for p in prefixes]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListOnlyTheBackupPrefixes",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{p}/*" for p in prefixes]}},
        },
        {
            "Sid": "ReadTheVersioningStatus",
            "Effect": "Allow",
            "Action": ["s3:GetBucketVersioning"],
            "Resource": bucket_arn,
        },
        {
            "Sid": "ObjectsUnderTheBackupPrefixes",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                       "s3:DeleteObject"],
            "Resource": objects,
        },
    ]
    if lock:
        statements += [
            {
                "Sid": "ReadWhetherTheBucketCanLock",
                "Effect": "Allow",
                "Action": ["s3:GetBucketObjectLockConfiguration"],
                "Resource": bucket_arn,
            },
            {
                "Sid": "LockWhatItWrites",
                "Effect": "Allow",
                "Action": ["s3:PutObjectRetention", "s3:GetObjectRetention"],
                "Resource": objects,
            },
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def policy_notes(dest: Destination, offsite: bool) -> list[str]:
    """What to know beside a destination's policy (offsite: not the first destination)."""
    notes = [f"{dest.name}: the policy for the key in {dest.setting('credentials_file')} "
             f"(s3://{dest.bucket})"]
    if dest.object_lock_mode:
        notes.append(f"{dest.name}: with s3:PutObjectRetention for object_lock_mode "
                     f"{dest.object_lock_mode}; never grant s3:BypassGovernanceRetention")
    if offsite:
        notes.append(f"{dest.name}: an off-site copy: its key must never have "
                     f"s3:DeleteObjectVersion (this policy does not grant it), so a stolen "
                     f"host cannot purge both copies' history")
    return notes
