"""A fault-injecting HTTP/1.1 proxy in front of a real S3 server (SeaweedFS), for tests.

rclone (in a host-network container) and boto3 are pointed at it (the destination's
`endpoint_url`); it forwards each request byte for byte (the Host header included, so SigV4
still verifies at the server) unless a rule picks it for a fault:

- "503": the answer S3 gives an overloaded client, `503 Slow Down` with S3's XML error body
  (Code `SlowDown`, Message "Please reduce your request rate.", as listed in the S3 API
  reference, https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html, and sent
  with a RequestId and HostId like every S3 error document);
- "reset": the connection is reset (SO_LINGER 0, then close: the kernel sends RST), the
  request not forwarded;
- "ack": a PUT answered `200 OK` with a plausible ETag (the MD5 of the payload, as S3 gives for
  a single-part upload) but never forwarded: a server that acks what it does not store. A HEAD
  of such a key is answered as if it were there (a cache in front of a store that lost it), so
  a client that reads back what it wrote (rclone HEADs each upload) believes it: only a
  listing tells the truth;
- "outage": from this request on, a total outage: the listening socket is closed (new
  connections are refused) and every open connection is reset, until `heal()`.

A rule picks requests by kind (`classify`), by User-Agent, at most `count` times and by
probability: the draw for a request is seeded by the seed, the rule, the request's method and
key and how many times that same request came before, so a run is reproducible however rclone's
parallel transfers interleave. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import secrets
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
MAX_HEAD = 64 * 1024
UPSTREAM_TIMEOUT_S = 60.0

# Request kinds a rule can pick (path-style addressing: /BUCKET/KEY?query).
LIST, HEAD, GET, PUT, SENTINEL, PART, COPY, POST, DELETE = (
    "LIST", "HEAD", "GET", "PUT", "SENTINEL", "PART", "COPY", "POST", "DELETE")
EVERY_KIND = (LIST, HEAD, GET, PUT, SENTINEL, PART, COPY, POST, DELETE)
ACTIONS = frozenset({"503", "reset", "ack", "outage"})
SENTINEL_NAME = ".last_success"

SLOWDOWN_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    "<Message>Please reduce your request rate.</Message><RequestId>{rid}</RequestId>"
    "<HostId>{hid}</HostId></Error>"
)


def classify(method: str, target: str, headers: dict[str, str]) -> str:
    """The kind of one S3 request, from its method, path and query."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    key = url.path.lstrip("/").partition("/")[2]
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return PART
        if "x-amz-copy-source" in headers:
            return COPY
        return SENTINEL if key.rsplit("/", 1)[-1] == SENTINEL_NAME else PUT
    if method == "GET" and not key:
        return LIST
    return {"HEAD": HEAD, "GET": GET, "POST": POST, "DELETE": DELETE}.get(method, method)


@dataclass
class Rule:
    """Answer requests of these kinds with `action`, each with `probability`, at most `count`
    times in all (None: no limit), only those from `agent` if set."""

    kinds: frozenset[str]
    action: str
    probability: float = 1.0
    count: int | None = None
    agent: str = ""  # only requests whose User-Agent holds this ("rclone/": not boto3's)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")


def rule(kinds: Iterable[str] | str, action: str, probability: float = 1.0,
         count: int | None = None, agent: str = "") -> Rule:
    return Rule(frozenset([kinds] if isinstance(kinds, str) else kinds), action, probability,
                count, agent)


class _Reader:
    """Buffered reads of one socket, keeping the raw bytes to forward them unchanged."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("peer closed")
        self.buf += data

    def until(self, delim: bytes, limit: int = MAX_HEAD) -> bytes:
        while (at := self.buf.find(delim)) < 0:
            if len(self.buf) > limit:
                raise ConnectionError("head too long")
            self._fill()
        out, self.buf = self.buf[: at + len(delim)], self.buf[at + len(delim):]
        return out

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        """Everything until the peer closes (a response without a length)."""
        chunks = [self.buf]
        self.buf = b""
        while data := self.sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


@dataclass
class _Message:
    head: bytes  # the raw start line and headers, up to and including the blank line
    start: str
    headers: dict[str, str]  # lower-case names
    body: bytes  # raw, as framed on the wire (chunked stays chunked)
    payload: bytes  # the body without chunk framing

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def _read_head(reader: _Reader) -> tuple[bytes, str, dict[str, str]]:
    head = reader.until(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return head, lines[0], headers


def _read_body(reader: _Reader, headers: dict[str, str], has_body: bool,
               to_close: bool) -> tuple[bytes, bytes]:
    """(raw body, payload) framed by chunked encoding, Content-Length or (a response) close."""
    if not has_body:
        return b"", b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raw, payload = [], []
        while True:
            size_line = reader.until(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            raw.append(size_line)
            if size == 0:
                while (trailer := reader.until(b"\r\n")) != b"\r\n":
                    raw.append(trailer)
                raw.append(trailer)
                return b"".join(raw), b"".join(payload)
            data = reader.exact(size + 2)
            raw.append(data)
            payload.append(data[:-2])
    if "content-length" in headers:
        body = reader.exact(int(headers["content-length"]))
        return body, body
    if to_close:
        body = reader.rest()
        return body, body
    return b"", b""


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: SO_LINGER on with a zero timeout. shutdown(SHUT_RD) first
    wakes a thread blocked reading it (a bare close() would not, and the RST would wait)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    sock.close()


def _read_answer(reader: _Reader, method: str) -> _Message:
    """The upstream's final answer (interim 1xx answers are skipped)."""
    while True:
        head, start, headers = _read_head(reader)
        status = int(start.split(" ")[1])
        if not 100 <= status < 200:
            break
    has_body = method != "HEAD" and status not in (204, 304)
    closes = headers.get("connection", "").lower() == "close"
    body, payload = _read_body(reader, headers, has_body, closes or ("content-length" not in
                               headers and "transfer-encoding" not in headers))
    return _Message(head, start, headers, body, payload)


class FaultProxy:
    """`FaultProxy(upstream_url)` as a context manager; `endpoint_url` is what clients use."""

    def __init__(self, upstream_url: str, seed: int = 0) -> None:
        up = urlsplit(upstream_url)
        self.upstream = (up.hostname or HOST, up.port or 80)
        self.seed = seed
        self._asked: Counter[tuple[str, str]] = Counter()  # (method, key) -> times seen
        self.rules: list[Rule] = []
        self.seen: Counter[tuple[str, str]] = Counter()  # (kind, action or "forwarded")
        self._fired: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._acked: dict[str, tuple[str, int]] = {}  # path -> (ETag, size) of acked PUTs
        self._listener: socket.socket | None = None
        self.port = 0
        self.down = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._listen()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- control -------------------------------------------------------------------------------

    def set_rules(self, *rules: Rule, seed: int = 0) -> None:
        """Replaces the rules (and their counts) and reseeds; ends an outage."""
        with self._lock:
            self.rules, self._fired, self._asked = list(rules), Counter(), Counter()
            self._acked = {}
            self.seed = seed
            self.seen.clear()
        if self.down:
            self.heal()

    def outage(self) -> None:
        """A total outage from now on: connections refused, open ones reset."""
        with self._lock:
            self.down = True
            listener, self._listener = self._listener, None
            clients, self._clients = list(self._clients), set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); the port stops listening
            listener.close()
        for sock in clients:
            _reset(sock)

    def heal(self) -> None:
        """Ends an outage (listening again on the same port) and drops every rule."""
        with self._lock:
            self.rules, self.down = [], False
        if self._listener is None:
            self._listen()

    def count(self, action: str) -> int:
        return sum(n for (_, act), n in self.seen.items() if act == action)

    def close(self) -> None:
        self.outage()

    # -- serving -------------------------------------------------------------------------------

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True,
                         name="faultproxy-accept").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: an outage or the end
            with self._lock:
                if self.down:
                    _reset(client)
                    continue
                self._clients.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True,
                             name="faultproxy-conn").start()

    def _pick(self, kind: str, method: str, target: str, agent: str) -> str | None:
        key = urlsplit(target).path.lstrip("/").partition("/")[2]  # the bucket's name aside
        with self._lock:
            if self.down:
                return "reset"
            self._asked[(method, key)] += 1
            nth = self._asked[(method, key)]
            for index, r in enumerate(self.rules):
                if kind not in r.kinds or (r.count is not None and self._fired[index] >= r.count):
                    continue
                if r.agent not in agent:
                    continue
                draw = random.Random(f"{self.seed}|{index}|{method}|{key}|{nth}").random()
                if draw < r.probability:
                    self._fired[index] += 1
                    self.seen[(kind, r.action)] += 1
                    return r.action
            self.seen[(kind, "forwarded")] += 1
            return None

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        reader, up_reader = _Reader(client), None
        try:
            while True:
                head, start, headers = _read_head(reader)
                method, target = start.split(" ")[:2]
                if "100-continue" in headers.get("expect", "").lower():
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # as S3 does, at once
                body, payload = _read_body(reader, headers, True, False)
                request = _Message(head, start, headers, body, payload)
                action = self._pick(classify(method, target, headers), method, target,
                                    headers.get("user-agent", ""))
                if action in ("reset", "outage"):
                    if action == "outage":
                        self.outage()
                    _reset(client)
                    return
                if action is None and method == "HEAD":
                    action = "ack" if urlsplit(target).path in self._acked else None
                if action is not None:
                    client.sendall(self._fault_answer(action, method, target, request))
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self.upstream, UPSTREAM_TIMEOUT_S)
                    up_reader = _Reader(upstream)
                assert up_reader is not None
                upstream.sendall(head + body)
                answer = _read_answer(up_reader, method)
                client.sendall(answer.head + answer.body)
                if answer.closes or request.closes:
                    return
        except (OSError, ValueError, ConnectionError):
            return
        finally:
            with self._lock:
                self._clients.discard(client)
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()


    def _fault_answer(self, action: str, method: str, target: str, request: _Message) -> bytes:
        rid = secrets.token_hex(8).upper()
        common = [f"Date: {formatdate(usegmt=True)}", f"x-amz-request-id: {rid}",
                  "Server: AmazonS3"]
        if action == "503":
            body = SLOWDOWN_BODY.format(rid=rid, hid=secrets.token_urlsafe(48)).encode()
            lines = ["HTTP/1.1 503 Slow Down", *common, "Content-Type: application/xml",
                     f"Content-Length: {len(body)}"]
            return _answer(lines, b"" if method == "HEAD" else body)
        path = urlsplit(target).path
        if method == "HEAD":  # an acked key, as S3 answers a HEAD of a stored object
            etag, size = self._acked[path]
            return _answer(["HTTP/1.1 200 OK", *common, f'ETag: "{etag}"',
                            f"Content-Length: {size}", "Content-Type: application/octet-stream",
                            f"Last-Modified: {formatdate(usegmt=True)}"], b"")
        # What S3 answers a stored single-part PUT, without storing anything.
        data = _decoded(request)
        etag = hashlib.md5(data).hexdigest()  # S3: a single-part ETag is the MD5
        with self._lock:
            self._acked[path] = (etag, len(data))
        return _answer(["HTTP/1.1 200 OK", *common, f'ETag: "{etag}"', "Content-Length: 0"],
                       b"")


def _answer(lines: list[str], body: bytes) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _decoded(request: _Message) -> bytes:
    """The object's bytes: aws-chunked payloads (SigV4 streaming) carry chunk signatures."""
    if "aws-chunked" not in request.headers.get("content-encoding", "") and not \
            request.headers.get("x-amz-content-sha256", "").startswith("STREAMING-"):
        return request.payload
    out, rest = [], request.payload
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)
