"""boto3 access: the fast-failing preflight, the sentinel, listings."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.loaders
import botocore.session
import botocore.utils
import urllib3.exceptions
from botocore.awsrequest import AWSRequest
from botocore.compat import unquote_str
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from lxml import etree

from supervisor.core import retry
from supervisor.core.clock import now_utc
from supervisor.core.files import private_file_problem
from supervisor.core.redact import redact
from supervisor.storage import crypt, markers, upload_options
from supervisor.storage.destination import Destination

# Every client retries by the one policy (supervisor.core.retry, docs/design.md "Retries"):
# botocore's standard mode, ATTEMPTS tries in all ("total_max_attempts": botocore's own
# "max_attempts" counts the retries only, one more try than it says). It retries connection
# trouble, 500/502/503/504 and throttling (SlowDown), never 403/404 or an auth error. SigV4
# named, so a presigned URL (list_objects) is signed as every request is.
_RETRIES = {"mode": "standard", "total_max_attempts": retry.ATTEMPTS}
# Short timeouts for probes (preflight, status): a refused connection fails in well under a
# second, retries included.
_FAST = BotoConfig(connect_timeout=2, read_timeout=5, retries=_RETRIES, signature_version="s3v4")
_NORMAL = BotoConfig(connect_timeout=5, read_timeout=30, retries=_RETRIES,
                     signature_version="s3v4")


class S3Error(Exception):
    """An S3 problem, phrased as one line that says what to fix. `transient` says whether a
    retry could help (network trouble, 5xx) or not (credentials, a missing bucket)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def _transient(exc: Exception) -> bool:
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError
                  | ConnectionClosedError):
        return True
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) >= 500
    return False


def check_credentials_file(dest: Destination) -> None:
    path, setting = dest.credentials_file, dest.setting("credentials_file")
    if path is not None and (problem := private_file_problem(path, setting)):
        raise S3Error(problem)


def client(dest: Destination, fast: bool = False) -> Any:
    """An S3 client reading the configured credentials file (or the default chain: IAM role).

    Cached: making one costs about 130 ms (botocore loads its service models), and a status
    check or a drill makes dozens of calls. The key holds the credentials file's identity, so a
    rewritten file (rotated keys) gets a new client. boto3 clients are thread-safe."""
    return _client(dest, fast, _file_version(dest.credentials_file))


def _file_version(path: Path | None) -> tuple[int, int, int] | None:
    try:
        st = path.stat() if path else None
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size) if st else None


def _timestamp(value: str) -> datetime:
    """botocore's timestamp parser, fast for the ISO 8601 a listing has on every object:
    botocore's own goes through dateutil (~0.4 ms each, 8 s of a 20,000-object listing's 14 s,
    measured). Anything else (a HEAD's RFC 1123 Last-Modified, epoch seconds) goes to it."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return botocore.utils.parse_timestamp(value)
    return parsed if parsed.tzinfo else botocore.utils.parse_timestamp(value)


class _SearchPath(list):
    """A loader's search path that holds each folder once: every boto3.Session appends its own
    data folder to its loader's path, and here every client's session shares one loader."""

    def append(self, folder: Any) -> None:
        if folder not in self:
            super().append(folder)


# One data loader for every client's botocore session. A session's loader keeps what it loaded
# (the S3 service model, endpoints, the endpoint rule set): 12 MB per session, measured, and
# every cached client has a session of its own (its own credentials file and profile). Shared,
# a second client costs 0.5 MB; a run (its fast and normal client) 12 MB less RSS, measured
# (benchmarks/daemon_soak.py, docs/design.md "Memory"). It reads botocore's and boto3's own models
# only: AWS_DATA_PATH (extra models) is not searched. Loading is idempotent: two threads that
# miss its cache at once both load and store the same data.
_LOADER = botocore.loaders.Loader(extra_search_paths=_SearchPath())


@functools.lru_cache(maxsize=16)
def _client(dest: Destination, fast: bool, _version: tuple[int, int, int] | None) -> Any:
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
    if dest.credentials_file:
        core.set_config_variable("credentials_file", str(dest.credentials_file))
        core.set_config_variable("profile", dest.profile)
    try:
        session = boto3.Session(botocore_session=core)
        return session.client(
            "s3",
            region_name=dest.region,
            endpoint_url=dest.endpoint_url or None,
            config=_FAST if fast else _NORMAL,
        )
    except ProfileNotFound:
        raise S3Error(
            f"profile '{dest.profile}' is not in {dest.setting('credentials_file')} "
            f"{dest.credentials_file}"
        ) from None


def describe(exc: Exception, dest: Destination) -> str:
    """One line naming the cause of a failed S3 call."""
    where = dest.where
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return (f"S3 endpoint {where} is unreachable; check {dest.setting('endpoint_url')} and "
                f"the network")
    if isinstance(exc, ConnectionClosedError):  # its text holds the URL: a presigned one signs
        return (f"S3 endpoint {where} closed the connection before answering (reset); "
                f"check {dest.setting('endpoint_url')} and the network")
    if isinstance(exc, NoCredentialsError):
        return (f"no AWS credentials found: set {dest.setting('credentials_file')} or give the "
                f"host an IAM role")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        http = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket"):
            return (f"S3 bucket '{dest.bucket}' does not exist at {where}; "
                    f"check {dest.setting('bucket')}")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return (
                f"S3 at {where} refused the credentials for bucket '{dest.bucket}' ({code}); "
                f"check {dest.setting('credentials_file')} / {dest.setting('profile')}"
            )
        return f"S3 at {where} answered {code or http} for bucket '{dest.bucket}'"
    # botocore's text names the URL it was sending: a presigned listing's holds its signature.
    return f"S3 at {where} failed: {redact(str(exc))}"


def preflight(dest: Destination, prefix: str | None = None) -> None:
    """Fails fast, before any container starts: dead endpoint, wrong credentials, no bucket.

    With a prefix it lists one key under prefix/ instead of HEADing the bucket: AWS authorizes
    HeadBucket as an s3:ListBucket without a prefix, which the least-privilege policy of
    supervisor.health.doctor.iam_policy (ListBucket only on s3:prefix PREFIX/*) denies."""
    check_credentials_file(dest)
    try:
        if prefix is None:
            client(dest, fast=True).head_bucket(Bucket=dest.bucket)
        else:
            client(dest, fast=True).list_objects_v2(Bucket=dest.bucket, Prefix=f"{prefix}/",
                                                  MaxKeys=1)
    except (BotoCoreError, ClientError) as exc:
        raise S3Error(describe(exc, dest), _transient(exc)) from None


def lock_args(dest: Destination, now: datetime | None = None) -> dict[str, Any]:
    """boto3 arguments that lock an object written at `now` (default: this moment) until
    now + object_lock_days; none when the destination does not lock."""
    until = dest.retain_until(now or now_utc())
    if until is None:
        return {}
    return {"ObjectLockMode": dest.object_lock_mode, "ObjectLockRetainUntilDate": until}


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def put_text(dest: Destination, key: str, body: str, what: str) -> None:
    """A small object the daemon writes itself (sentinel, drill marker), with the configured
    storage class, encryption and Object Lock like every upload. A locked PUT carries its
    Content-MD5: AWS refuses one without a Content-MD5 or checksum header (PutObject API
    reference), and botocore sends a checksum only when request_checksum_calculation allows."""
    data = body.encode()
    locked = lock_args(dest)
    if locked:
        locked["ContentMD5"] = _md5_b64(data)
    try:
        client(dest).put_object(
            Bucket=dest.bucket, Key=key, Body=data, ContentType="text/plain",
            **upload_options.boto_extra_args(dest.upload_options), **locked,
        )
    except (BotoCoreError, ClientError) as exc:
        raise S3Error(f"writing the {what} failed: {describe(exc, dest)}") from None


# The MD5 of an empty request body: what a CopyObject (which sends none) declares.
_EMPTY_BODY_MD5 = _md5_b64(b"")


def _declare_empty_body(request: AWSRequest, **_: Any) -> None:
    if "x-amz-object-lock-mode" in request.headers and "Content-MD5" not in request.headers:
        request.headers["Content-MD5"] = _EMPTY_BODY_MD5


def copy_client(dest: Destination) -> Any:
    """The client for server-side copies: a locked CopyObject declares its empty body's
    Content-MD5. moto's server (5.2.6, s3/responses.py _key_response_put) refuses Object Lock
    headers on any PUT without Content-MD5 or a checksum, CopyObject included; AWS takes a
    locked copy without one (boto/s3transfer#224 copied locked objects there, and rclone
    1.75.2 sends none on its own CopyObject). The true MD5 of the empty body satisfies both."""
    c = client(dest)
    c.meta.events.register("before-sign.s3.CopyObject", _declare_empty_body,
                           unique_id="ardua-locked-copy-md5")
    return c


def write_sentinel(dest: Destination, prefix: str, when: datetime) -> str:
    body = markers.format_sentinel(when)
    put_text(dest, markers.sentinel_key(prefix), body, "sentinel")
    return body


def _version(version_id: str | None) -> dict[str, str]:
    """The VersionId argument of one object version; none = the current version."""
    return {"VersionId": version_id} if version_id else {}


def _named(key: str, version_id: str | None) -> str:
    return f"{key} (version {version_id})" if version_id else key


def head(dest: Destination, key: str, version_id: str | None = None) -> dict[str, Any]:
    """HEAD of one object (or one version of it); a missing key is an S3Error that names it."""
    try:
        return client(dest).head_object(Bucket=dest.bucket, Key=key, **_version(version_id))
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey",
                                                                  "NoSuchVersion"):
            raise S3Error(f"{dest.key_url(_named(key, version_id))} does not exist") from None
        raise S3Error(describe(exc, dest)) from None
    except BotoCoreError as exc:
        raise S3Error(describe(exc, dest)) from None


def download(
    dest: Destination, key: str, path: str, progress: Callable[[int], None] | None = None,
    version_id: str | None = None,
) -> None:
    """Downloads one object (or one version of it) to a file (ranged, parallel GETs for large
    objects)."""
    try:
        client(dest).download_file(dest.bucket, key, path, Callback=progress,
                                 ExtraArgs=_version(version_id) or None)
    except (BotoCoreError, ClientError) as exc:
        raise S3Error(f"downloading {dest.key_url(_named(key, version_id))} failed: "
                      f"{describe(exc, dest)}") from None


def read_chunks(dest: Destination, key: str) -> Iterator[bytes]:
    """An object's body in chunks, without holding it in memory."""
    try:
        body = client(dest).get_object(Bucket=dest.bucket, Key=key)["Body"]
        yield from body.iter_chunks(1 << 20)
    except (BotoCoreError, ClientError) as exc:
        raise S3Error(f"reading {dest.key_url(key)} failed: {describe(exc, dest)}") from None


def read_head(dest: Destination, key: str, size: int, version_id: str | None = None) -> bytes:
    """The first `size` bytes of an object or version (a ranged GET): enough to tell its
    format."""
    try:
        resp = client(dest).get_object(Bucket=dest.bucket, Key=key, Range=f"bytes=0-{size - 1}",
                                     **_version(version_id))
        return resp["Body"].read(size)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) == "InvalidRange":
            return b""  # an empty object has no byte 0
        raise S3Error(f"reading {dest.key_url(key)} failed: {describe(exc, dest)}") from None
    except BotoCoreError as exc:
        raise S3Error(f"reading {dest.key_url(key)} failed: {describe(exc, dest)}") from None


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str
    last_modified: datetime
    version_id: str | None = None  # None: the current version


def list_objects(dest: Destination, prefix: str, raw: bool = False) -> dict[str, S3Object]:
    """Every object under prefix/, keyed by the path relative to the prefix: as rclone shows
    the destination (`shown`), or with `raw` every object as it is.

    Read page by page with lxml from presigned ListObjectsV2 URLs, sent through the client's
    own HTTP session (its TLS, proxy and timeout settings): botocore parses each page twice (a
    check for an error inside a 200) and then walks it shape by shape, 6.7 s for a
    100,000-object listing. Same requests, same signature, same errors (a ClientError, as
    botocore raises)."""
    found: dict[str, S3Object] = {}
    try:
        for page in _listing_pages(client(dest), dest.bucket, f"{prefix}/"):
            encoded = page.findtext(f"{_namespace(page)}EncodingType") == "url"  # or ignored
            for key, size, etag, modified in page_objects(page):
                key = unquote_str(key) if encoded else key
                found[key[len(prefix) + 1 :]] = S3Object(
                    key, int(size), etag.strip('"'), _timestamp(modified))
    except (BotoCoreError, ClientError) as exc:
        raise S3Error(describe(exc, dest)) from None
    except _RepeatedToken as exc:
        raise S3Error(f"S3 endpoint {dest.where} sent the continuation token {exc} of "
                      f"{dest.url(prefix)} twice: the listing would never end, stopped "
                      f"(a broken or hostile endpoint)") from None
    return found if raw else shown(dest, found)


Listed = TypeVar("Listed")  # S3Object or versions.ObjectVersion: dataclasses with a size


def shown(dest: Destination, found: Mapping[str, Listed]) -> dict[str, Listed]:
    """A listing keyed as rclone shows the destination: encrypted, each `.bin` object under
    its file's name with its file's size (storage.crypt.plain: the one place names and sizes
    are mapped), each other object left out (crypt does not show it); its key stays the S3
    key. Plain: as listed."""
    if not dest.encrypted:
        return dict(found)
    mapped = {}
    for rel, obj in found.items():
        if (plain := crypt.plain(rel, obj.size)) is not None:
            mapped[plain[0]] = dataclasses.replace(obj, size=plain[1])  # type: ignore[type-var]
    return mapped


class _RepeatedToken(Exception):
    """A truncated page whose NextContinuationToken was seen before (or is empty): following
    it lists the same pages forever. The token, shortened, as the message."""


_FIELDS = ("Key", "Size", "ETag", "LastModified")


@functools.cache
def _page_paths(ns: str) -> tuple[etree.ETXPath, list[etree.ETXPath]]:
    """How many objects a page holds, and per field the texts of that field of each, in order."""
    return etree.ETXPath(f"count({ns}Contents)"), [
        etree.ETXPath(f"{ns}Contents/{ns}{name}/text()", smart_strings=False)
        for name in _FIELDS]


def page_objects(page: etree._Element) -> list[tuple[str, str, str, str]]:
    """(Key, Size, ETag, LastModified) of each object on a ListObjectsV2 page, as text.

    Read field by field, four lists in C, when each holds one text per object (the S3 schema
    has each field once): 0.1 s for 100,000 objects, where visiting each object's elements
    from Python took 0.4 s beside the source listing. A page that is not so regular (an empty
    ETag) is read object by object."""
    ns = _namespace(page)
    count, fields = _page_paths(ns)
    columns = [texts(page) for texts in fields]
    if all(len(column) == count(page) for column in columns):
        return list(zip(*columns, strict=True))
    return [tuple(item.findtext(f"{ns}{name}") or "" for name in _FIELDS)  # type: ignore[misc]
            for item in page.iterchildren(f"{ns}Contents")]


# The continuation token as it stands in a raw ListObjectsV2 answer: only a hint to fetch the
# next page early, checked against the parsed page before it is trusted.
_NEXT_TOKEN = re.compile(rb"<NextContinuationToken>([^<&]+)</NextContinuationToken>")


def _listing_pages(c: Any, bucket: str, prefix: str) -> Iterator[etree._Element]:
    """The pages in order. Each next page is fetched while this one is parsed (the fetch waits
    on S3, the parse on the CPU: 100,000 objects are 101 pages fetched in 1.0 s one after
    another, listed in 1.4-1.7 s, measured); its token, read from the raw answer, must be the
    parsed page's, or the page is fetched again with the parsed one. A token seen before ends
    the listing with _RepeatedToken: an endpoint that repeats one would be followed forever."""
    params = {"Bucket": bucket, "Prefix": prefix, "EncodingType": "url"}
    followed: set[str] = set()
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(_get, c, "list_objects_v2", params)
        while True:
            raw = ahead.result()
            hinted = _NEXT_TOKEN.search(raw)
            if hinted:
                params = {**params, "ContinuationToken": hinted.group(1).decode()}
                ahead = pool.submit(_get, c, "list_objects_v2", params)
            page = _parse(raw, "list_objects_v2")
            yield page
            ns = _namespace(page)
            if page.findtext(f"{ns}IsTruncated") != "true":
                return
            token = page.findtext(f"{ns}NextContinuationToken", "")
            if not token or token in followed:
                raise _RepeatedToken(repr(token[:40] + ("..." if len(token) > 40 else "")))
            followed.add(token)
            if params.get("ContinuationToken") != token:
                params = {**params, "ContinuationToken": token}
                ahead = pool.submit(_get, c, "list_objects_v2", params)


def _get(c: Any, operation: str, params: dict[str, str]) -> bytes:
    """One presigned GET, retried by the policy (connection trouble, 5xx, an error inside a
    200); the answer, or the ClientError botocore would raise."""
    for attempt in retry.policy(_transient):
        with attempt:
            url = c.generate_presigned_url(operation, Params=params, ExpiresIn=900)
            response = c._endpoint.http_session.send(AWSRequest("GET", url).prepare())
            try:
                body = response.content
            except urllib3.exceptions.HTTPError:  # a chunked answer cut off
                body = None
            length = response.headers.get("content-length")
            if body is None or (length is not None and len(body) != int(length)):
                # Cut off mid-body (botocore reads without checking the length, then fails to
                # parse it): a transient trouble, fetched again.
                raise ConnectionClosedError(endpoint_url=c.meta.endpoint_url)
            # An error document, also inside a 200 (S3 does that): parsed here, to be retried.
            if response.status_code != 200 or b"<Error>" in body[:512]:
                _parse(body, operation, response.status_code or 500)
    return body


def _parse(body: bytes, operation: str, status: int = 200) -> etree._Element:
    """An S3 answer's XML, or the ClientError botocore would raise for it."""
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError:
        root = etree.Element("Error")  # an HTML error page from a proxy, a cut-off body
    ns = _namespace(root)
    if status != 200 or root.tag == f"{ns}Error":
        error = {"Code": root.findtext(f"{ns}Code") or str(status),
                 "Message": root.findtext(f"{ns}Message", "")}
        raise ClientError({"Error": error, "ResponseMetadata": {
            "HTTPStatusCode": 500 if status == 200 else status}}, operation)
    return root


def _namespace(root: etree._Element) -> str:
    """`{http://s3.amazonaws.com/doc/2006-03-01/}` as ElementTree prefixes names, or ""."""
    return root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""


def read_text(dest: Destination, key: str) -> str | None:
    """The body of a small marker object, or None when there is no such object."""
    try:
        resp = client(dest, fast=True).get_object(Bucket=dest.bucket, Key=key)
        return resp["Body"].read(4096).decode("utf-8", "replace")
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404"):
            return None
        raise S3Error(describe(exc, dest)) from None
    except BotoCoreError as exc:
        raise S3Error(describe(exc, dest)) from None


def versioning_status(dest: Destination) -> str:
    """'Enabled', 'Suspended', or '' for a bucket that never had versioning."""
    try:
        answer = client(dest, fast=True).get_bucket_versioning(Bucket=dest.bucket)
        return str(answer.get("Status", ""))
    except (BotoCoreError, ClientError) as exc:
        raise S3Error(describe(exc, dest)) from None
