"""A fault-injecting HTTP proxy between dpo and the S3-compatible test server (stdlib only).

dpo is pointed at the proxy (AWS_ENDPOINT_URL); the proxy forwards each request to the real
server (moto's) unless a rule picks it for a fault, drawn by a seeded random generator:

- `slowdown`  503 with S3's SlowDown XML body, nothing forwarded
- `internal`  500 with S3's InternalError XML body, nothing forwarded
- `reset`     the connection reset before anything is forwarded
- `drop`      forwarded (the server applies it), then the connection reset: the client never
              hears the answer (the ambiguous failure)
- `delay`     forwarded after a pause (`Rule.delay` seconds)
- `truncate`  forwarded, the answer's headers and half its body sent, then the connection
              closed (a body-less answer, a PUT's, is dropped instead, and counted as `drop`)

and, for the misconfiguration tests, S3's answers to bad keys, a denied access and a bucket in
another region (`ANSWERS`).

Rules match by method and a regular expression searched in the request's decoded path and
query (`/bucket/store/_dpo/manifests/00000002.json`, `/bucket?list-type=2&prefix=…`). Every
injected fault is counted by kind (`injected`) and logged (`log`), so a test can assert that
the fault it meant was taken.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

KINDS = ("slowdown", "internal", "reset", "drop", "delay", "truncate")
# Answers a misconfigured store gives (not among the random faults): status, S3 error code.
ANSWERS = {"badkey": (403, "InvalidAccessKeyId"), "denied": (403, "AccessDenied"),
           "region": (301, "PermanentRedirect")}
AMBIGUOUS = ("drop", "truncate")  # the server applied the request; the client cannot know
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade"}


@dataclass
class Rule:
    """Inject one of `kinds` into a matching request with probability `rate`, after skipping
    the first `skip` matches, at most `limit` times (None: no limit)."""

    kinds: tuple[str, ...]
    rate: float = 1.0
    method: str | None = None
    key: str | None = None  # a regular expression searched in the decoded path and query
    body: bytes | None = None  # a regular expression searched in the request's body
    limit: int | None = None
    skip: int = 0
    delay: float = 1.0
    seen: int = field(default=0, init=False)
    taken: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS) - set(ANSWERS)
        assert not unknown, f"unknown fault kinds {unknown}"

    def matches(self, method: str, target: str, body: bytes) -> bool:
        return ((self.method is None or self.method == method)
                and (self.key is None or re.search(self.key, target) is not None)
                and (self.body is None or re.search(self.body, body) is not None))


@dataclass(frozen=True)
class Injected:
    method: str
    target: str
    kind: str


class FaultProxy:
    """`with FaultProxy(upstream, seed=…) as proxy:` … `proxy.url` is the endpoint to give dpo."""

    def __init__(self, upstream: str, *, seed: int = 0, rules: list[Rule] | None = None) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port, upstream
        self.upstream = (parts.hostname, parts.port)
        self.random = random.Random(seed)
        self.rules: list[Rule] = list(rules or [])
        self.injected: Counter[str] = Counter()
        self.log: list[Injected] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fault-proxy")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_rules(self, *rules: Rule) -> None:
        with self._lock:
            self.rules = list(rules)

    def choose(self, method: str, target: str, body: bytes) -> tuple[str, Rule] | None:
        """The fault for this request, if a rule picks it (thread-safe, seeded)."""
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if not rule.matches(method, target, body):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip or (rule.limit is not None
                                             and rule.taken >= rule.limit):
                    continue
                if self.random.random() < rule.rate:
                    rule.taken += 1
                    return self.random.choice(rule.kinds), rule
            return None

    def record(self, method: str, target: str, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1
            self.log.append(Injected(method, target, kind))

    def forward(self, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
            return response.status, response.reason, kept, data
        finally:
            conn.close()


def _error_body(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the counts and the log say what happened

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reset(self) -> None:
            # SO_LINGER 0: close() sends a RST, as a dropped connection or a crashed LB does
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _send(self, status: int, reason: str, headers: list[tuple[str, str]],
                  body: bytes, *, cut: bool = False) -> None:
            self.send_response_only(status, reason)
            for name, value in headers:
                if name.lower() != "content-length":
                    self.send_header(name, value)
            length = next((v for k, v in headers if k.lower() == "content-length"), None)
            if self.command != "HEAD" or length is None:
                length = str(len(body))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body[: len(body) // 2] if cut else body)
            self.wfile.flush()
            if cut:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        def _handle(self) -> None:
            body = self._body()
            target = unquote(self.path)
            picked = proxy.choose(self.command, target, body)
            kind = picked[0] if picked else None
            if kind in ("slowdown", "internal") or kind in ANSWERS:
                proxy.record(self.command, target, kind)
                status, code, text = ((503, "SlowDown", "Please reduce your request rate.")
                                      if kind == "slowdown" else
                                      (500, "InternalError", "We encountered an internal error.")
                                      if kind == "internal" else (*ANSWERS[kind], kind))
                xml = _error_body(code, text)
                self._send(status, code, [("Content-Type", "application/xml")], xml)
                return
            if kind == "reset":
                proxy.record(self.command, target, kind)
                self._reset()
                return
            if kind == "delay":
                assert picked is not None
                proxy.record(self.command, target, kind)
                time.sleep(picked[1].delay)
            status, reason, headers, data = proxy.forward(
                self.command, self.path, list(self.headers.items()), body)
            if kind == "truncate" and (len(data) < 2 or self.command == "HEAD"):
                kind = "drop"  # nothing to cut: the answer is lost whole
            if kind == "drop":
                proxy.record(self.command, target, kind)
                self._reset()
                return
            if kind == "truncate":
                proxy.record(self.command, target, kind)
            self._send(status, reason, headers, data, cut=kind == "truncate")

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
