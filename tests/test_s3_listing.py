"""s3.list_objects reads ListObjectsV2 pages itself (presigned URLs, lxml) instead of
through botocore's parser: it must give exactly botocore's answer, over several pages and for
keys that need escaping, and fail with the same one-line errors. Real SeaweedFS."""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import re
import socketserver
import threading
import urllib.parse
from pathlib import Path

import pytest

from supervisor.storage import s3
from supervisor.storage.destination import Destination
from tests.conftest import write_credentials

AWKWARD = [
    "a b.pdf", "a+b.pdf", "100%.pdf", "x&y<z>.pdf", "quote\"d'.pdf", "ü/ñ 2026.pdf",
    "tab\tname.pdf", "semi;colon=eq?.pdf", "#hash.pdf", "dir/sub dir/deep.pdf",
]


def _config(s3server, bucket: str, tmp_path: Path, secret: str | None = None) -> Destination:
    creds = write_credentials(tmp_path / "creds", s3server.access_key,
                              secret or s3server.secret_key)
    return Destination(bucket, s3server.region, s3server.endpoint_url, creds, "default")


def _botocore(cfg: Destination, prefix: str) -> dict[str, tuple[str, int, str, object]]:
    """botocore's own paginated answer, as list_objects keys it."""
    found = {}
    for page in s3.client(cfg).get_paginator("list_objects_v2").paginate(
            Bucket=cfg.bucket, Prefix=f"{prefix}/", MaxKeys=7):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix) + 1:]] = (
                item["Key"], item["Size"], item["ETag"].strip('"'), item["LastModified"])
    return found


def test_same_answer_as_botocore(s3server, bucket, tmp_path, monkeypatch) -> None:
    for i, name in enumerate(AWKWARD):
        s3server.put(bucket, f"p/{name}", b"x" * i)
    for i in range(25):
        s3server.put(bucket, f"p/many/r{i:03d}.pdf", b"receipt %d" % i)
    s3server.put(bucket, "other/p-not-this.pdf", b"elsewhere")
    s3server.put(bucket, "px/not-this-either.pdf", b"a longer prefix")
    cfg = _config(s3server, bucket, tmp_path)
    # Pages of 7 keys: the continuation token is followed through five pages.
    real = s3._listing_pages

    def small_pages(c, bucket_name, prefix):
        pages = []
        original = c.generate_presigned_url

        def presign(operation, Params, **kw):
            return original(operation, Params={**Params, "MaxKeys": 7}, **kw)

        monkeypatch.setattr(c, "generate_presigned_url", presign)
        for page in real(c, bucket_name, prefix):
            pages.append(page)
            yield page
        assert len(pages) == 5

    monkeypatch.setattr(s3, "_listing_pages", small_pages)
    ours = {rel: (o.key, o.size, o.etag, o.last_modified)
            for rel, o in s3.list_objects(cfg, "p").items()}
    assert ours == _botocore(cfg, "p")
    assert set(ours) == {*AWKWARD, *(f"many/r{i:03d}.pdf" for i in range(25))}


def test_errors_are_the_same_one_line(s3server, bucket, tmp_path) -> None:
    s3server.put(bucket, "p/a.pdf", b"receipt")
    wrong = _config(s3server, bucket, tmp_path, secret="not-the-secret")
    with pytest.raises(s3.S3Error, match=r"refused the credentials for bucket .* \(Signature"
                                         r"DoesNotMatch\); check s3.credentials_file"):
        s3.list_objects(wrong, "p")
    missing = _config(s3server, "no-such-bucket-here", tmp_path)
    with pytest.raises(s3.S3Error, match="bucket 'no-such-bucket-here' does not exist"):
        s3.list_objects(missing, "p")
    dead = Destination(bucket, s3server.region, "http://127.0.0.1:9", tmp_path / "creds", "default")
    with pytest.raises(s3.S3Error, match=r"is unreachable; check s3\.endpoint_url"):
        s3.list_objects(dead, "p")
    assert s3.list_objects(_config(s3server, bucket, tmp_path), "empty") == {}


def test_a_wrong_early_token_is_not_trusted(s3server, bucket, tmp_path, monkeypatch) -> None:
    """The next page is fetched early with the token read from the raw answer; if that hint is
    not the parsed page's token, the page is fetched again with the right one."""
    for i in range(20):
        s3server.put(bucket, f"p/r{i:05d}.pdf", b"")
    cfg = _config(s3server, bucket, tmp_path)
    c = s3.client(cfg)
    original = c.generate_presigned_url
    tokens = []

    def presign(operation, Params, **kw):
        tokens.append(Params.get("ContinuationToken"))
        return original(operation, Params={**Params, "MaxKeys": 7}, **kw)

    monkeypatch.setattr(c, "generate_presigned_url", presign)
    monkeypatch.setattr(s3, "_NEXT_TOKEN", re.compile(rb"<Key>([^<&]+)</Key>"))  # a wrong hint
    listed = s3.list_objects(cfg, "p")
    assert sorted(listed) == [f"r{i:05d}.pdf" for i in range(20)]
    # 3 pages: the first, then per page a fetch with the wrong hint and (but for the last
    # page, which has no next) one with the parsed token.
    assert len(tokens) == 6 and tokens[0] is None


class _CuttingProxy(socketserver.ThreadingTCPServer):
    """Forwards each request to the S3 server as it came (Host header and all, so its signature
    holds) and passes the answer back, but cuts the first `cut` listing answers off: the
    headers and half the body, then the connection closes, as a reset mid-transfer does."""

    daemon_threads = True

    def __init__(self, upstream: str, cut: int):
        self.upstream, self.cut, self.listings = upstream, cut, 0
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(http.server.BaseHTTPRequestHandler):
    server: _CuttingProxy

    def do_GET(self) -> None:
        up = http.client.HTTPConnection(urllib.parse.urlsplit(self.server.upstream).netloc)
        up.request("GET", self.path, headers=dict(self.headers))
        answer = up.getresponse()
        body = answer.read()
        listing = "list-type=2" in self.path
        self.server.listings += listing
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if listing and self.server.listings <= self.server.cut:
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_answer_cut_off_midway_is_fetched_again(s3server, bucket, tmp_path) -> None:
    """A listing page whose connection breaks mid-body (its Content-Length not reached) is
    fetched again, not parsed as a broken page (botocore reads it without checking the length
    and fails in its parser); past the retries, one line naming the endpoint."""
    for i in range(5):
        s3server.put(bucket, f"p/r{i}.pdf", b"x" * i)
    for cut, ok in ((1, True), (4, False)):  # the retry policy: 4 tries
        with _CuttingProxy(s3server.endpoint_url, cut) as proxy:
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            cfg = dataclasses.replace(_config(s3server, bucket, tmp_path),
                                      endpoint_url=proxy.endpoint)
            try:
                if ok:
                    assert sorted(s3.list_objects(cfg, "p")) == [f"r{i}.pdf" for i in range(5)]
                else:
                    with pytest.raises(s3.S3Error, match=r"^S3 endpoint http://127\.0\.0\.1:\d+ "
                                                         r"closed the connection before "
                                                         r"answering \(reset\)"):
                        s3.list_objects(cfg, "p")
            finally:
                proxy.shutdown()
            assert proxy.listings == cut + ok  # each cut answer fetched again, 4 at most


# The shape of an AWS ListObjectsV2 answer (API reference, ListObjectsV2, Response Syntax).
_PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
<IsTruncated>false</IsTruncated>
<Contents><Key>p/a</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>
<ETag>&quot;e1&quot;</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/b%20c</Key><LastModified>2026-01-02T00:00:00.000Z</LastModified>
<ETag>{etag}</ETag><Size>22</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>p/d</Key><Size>333</Size><ETag>"e3"</ETag>
<LastModified>2026-01-03T00:00:00.000Z</LastModified></Contents>
</ListBucketResult>"""


@pytest.mark.parametrize("namespaced", [True, False])
def test_page_objects_field_by_field_or_object_by_object(namespaced: bool) -> None:
    """Four field lists when the page is regular; an empty ETag leaves one list short, and
    the objects must still be read whole (not a field shifted onto its neighbour)."""
    expected = [("p/a", "1", '"e1"', "2026-01-01T00:00:00.000Z"),
                ("p/b%20c", "22", '"e2"', "2026-01-02T00:00:00.000Z"),
                ("p/d", "333", '"e3"', "2026-01-03T00:00:00.000Z")]
    for etag, second in (('"e2"', '"e2"'), ("", "")):
        xml = _PAGE.format(etag=etag)
        if not namespaced:  # some S3-compatible servers answer without the namespace
            xml = xml.replace(' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', "")
        page = s3._parse(xml.encode(), "list_objects_v2")
        want = [expected[0], (*expected[1][:2], second, expected[1][3]), expected[2]]
        assert s3.page_objects(page) == want


class _SameTokenS3(http.server.BaseHTTPRequestHandler):
    """An endpoint that answers every ListObjectsV2 with a truncated page of one key and the
    same NextContinuationToken: followed, the listing never ends."""

    def do_GET(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        body = _PAGE.replace("<IsTruncated>false</IsTruncated>",
                             "<IsTruncated>true</IsTruncated><NextContinuationToken>"
                             "again</NextContinuationToken>").replace("{etag}", '"e2"').encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_repeated_continuation_token_stops_the_listing(tmp_path) -> None:
    """Issue 27 item 5: an endpoint that repeats its token held the listing (and `status`,
    the guards) forever. It ends with one line naming the endpoint."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SameTokenS3)
    server.requests = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    creds = write_credentials(tmp_path / "creds", "AKIDEXAMPLE", "not-a-real-secret")
    cfg = Destination("b", "us-east-1", endpoint, creds, "default")
    outcome: list[BaseException | dict] = []

    def listing() -> None:
        try:
            outcome.append(s3.list_objects(cfg, "p"))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=listing, daemon=True)
    worker.start()
    worker.join(30)
    server.shutdown()
    server.server_close()
    assert not worker.is_alive(), f"still listing after {server.requests} pages"
    assert isinstance(outcome[0], s3.S3Error)
    assert str(outcome[0]) == (
        f"S3 endpoint {endpoint} sent the continuation token 'again' of s3://b/p/ twice: the "
        f"listing would never end, stopped (a broken or hostile endpoint)")
    assert server.requests <= 3  # the first page, the second, and at most one fetched ahead
