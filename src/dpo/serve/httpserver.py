"""The HTTP server under `dpo serve`: the stdlib's `http.server`, bounded against clients that
hold on or send too much (docs/architecture.md says why not an ASGI server).

What one client can hold or cost, and what happens beyond it:

* a request (line and headers) must arrive within `header_timeout` seconds of the connection
  being ready for it, however slowly it drips: a deadline over all reads, not a per-read
  timeout a byte every few seconds would reset. Late: 408 (or a silent close when nothing
  came: an idle kept-alive connection). A body gets `body_timeout`; a reply `write_timeout`.
* the request line at most `max_line` bytes (414), the headers `max_headers` (431), a body
  `max_body` (413); a Content-Length that is not plain ASCII digits is a 400.
* at most `max_connections` connections (a quarter of the descriptor limit, at most 128).
  A new one at the limit closes the oldest *idle* one (its request, body included, not yet
  all there): idle or dripping clients cannot keep /health from answering. When every connection is busy
  with a request, the new one gets a 503 at once and is closed: a refusal, never a hang.
* out of descriptors all the same (a run holds many files): accept is retried after a pause,
  not in a loop that spins a core.

Each reply (headers and body) leaves in one send with TCP_NODELAY: two writes would wait for
the client's delayed ACK (~40 ms) on a kept-alive connection. A client that goes away is one
DEBUG line; an exception in an endpoint is an ERROR in the log with an id and a 500 that
names only the id. Nothing of a query string or a header reaches the log.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import resource
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loguru import logger

OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_PAUSE = 0.1  # seconds before accepting again when out of descriptors


def connection_limit(cap: int = 128) -> int:
    """A quarter of the soft descriptor limit, at most `cap`: the rest stays for runs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return cap
    return max(4, min(cap, soft // 4))


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 5.0
    body_timeout: float = 10.0
    write_timeout: float = 10.0
    max_line: int = 8192
    max_headers: int = 16384
    max_body: int = 65536
    max_connections: int = 64
    backlog: int = 128


def parse_count(text: str, low: int, high: int) -> int | None:
    """`text` as a whole number in low..high, or None. ASCII digits only: str.isdigit() takes
    '²' and '٣', which int() refuses or reads; a length check first, as int() of 5,000 digits
    raises (and costs) before any range check could."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)):
        return None
    value = int(text)
    return value if low <= value <= high else None


class DeadlineReader:
    """A connection's input, read against one deadline over many reads and a byte budget.
    Offers what http.server and http.client call: readline(limit) and read(n)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.deadline = float("inf")
        self.budget = sys.maxsize
        self.consumed = 0

    def arm(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.budget = sys.maxsize
        self.consumed = 0

    def limit(self, more: int) -> None:
        """From here at most `more` bytes (headers): beyond, http.client's LineTooLong (431)."""
        self.budget = self.consumed + more

    @property
    def started(self) -> bool:
        return self.consumed > 0 or bool(self.buffer)

    def _fill(self) -> bool:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _take(self, n: int) -> bytes:
        chunk = bytes(self.buffer[:n])
        del self.buffer[:n]
        self.consumed += n
        if self.consumed > self.budget:
            raise http.client.LineTooLong("request headers")
        return chunk

    def readline(self, limit: int = -1) -> bytes:
        limit = sys.maxsize if limit < 0 else limit
        while True:
            end = self.buffer.find(b"\n", 0, limit)
            if end >= 0:
                return self._take(end + 1)
            if len(self.buffer) >= limit or not self._fill():
                return self._take(min(limit, len(self.buffer)))

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buffer) < n) and self._fill():
            pass
        return self._take(len(self.buffer) if n < 0 else min(n, len(self.buffer)))


class ReplyBuffer:
    """A reply collected and sent with one sendall (at flush)."""

    closed = False

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def discard(self) -> None:
        self.parts.clear()

    def flush(self) -> None:
        if self.parts:
            data = b"".join(self.parts)
            self.parts.clear()
            self.sock.settimeout(self.timeout)  # a total for sendall, not per chunk
            self.sock.sendall(data)


class Slots:
    """The connections held (oldest first), each idle or busy with a request."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.held: dict[socket.socket, bool] = {}

    def admit(self, sock: socket.socket) -> bool:
        with self.lock:
            if len(self.held) >= self.limit:
                idle = next((s for s, busy in self.held.items() if not busy), None)
                if idle is None:
                    return False
                del self.held[idle]
                # Its thread reads end-of-file, ends and closes it (an error: it was gone).
                with contextlib.suppress(OSError):
                    idle.shutdown(socket.SHUT_RDWR)
            self.held[sock] = False
            return True

    def mark(self, sock: socket.socket, busy: bool) -> None:
        with self.lock:
            if sock in self.held:
                self.held[sock] = busy

    def release(self, sock: socket.socket) -> None:
        with self.lock:
            self.held.pop(sock, None)

    def __len__(self) -> int:
        return len(self.held)


_REFUSAL = b'{"error": "too many connections in progress: try again soon"}\n'
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s"
           % (len(_REFUSAL), _REFUSAL))


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    limits: Limits = Limits()

    def __init__(self, address: tuple[str, int], handler: Any, limits: Limits) -> None:
        self.limits = limits
        self.request_queue_size = limits.backlog
        self.slots = Slots(limits.max_connections)
        self._starved_at = 0.0
        super().__init__(address, handler)

    def get_request(self) -> tuple[Any, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in OUT_OF_DESCRIPTORS:
                if time.monotonic() - self._starved_at > 60:
                    logger.warning("⚠️ out of file descriptors ({}): new connections wait "
                                   "(see LimitNOFILE)", exc.strerror)
                    self._starved_at = time.monotonic()
                time.sleep(ACCEPT_PAUSE)
            raise  # socketserver drops this attempt; the connection waits in the backlog

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.admit(request):
            logger.debug("🌐 {} refused: all {} connections busy", client_address[0],
                         self.limits.max_connections)
            with contextlib.suppress(OSError):  # best effort: the close is what matters
                request.setblocking(False)
                request.send(REFUSED)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.slots.release(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The stdlib prints a traceback to stderr here; a handler never lets one through
        # (BoundedHandler.handle), so what arrives is a bug: logged once, without values.
        logger.opt(exception=sys.exc_info()[1]).error("❌ HTTP connection from {} failed",
                                                      client_address[0])


class BoundedHandler(BaseHTTPRequestHandler):
    """One connection, request after request, each bounded as the module docstring says."""

    server: BoundedHTTPServer
    rfile: DeadlineReader  # type: ignore[assignment]
    body = b""
    wfile: ReplyBuffer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.connection = self.request
        with contextlib.suppress(OSError):  # reset already: the first read will say so
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = DeadlineReader(self.connection)
        self.wfile = ReplyBuffer(self.connection, self.server.limits.write_timeout)

    def finish(self) -> None:
        pass  # each reply was flushed by handle_one_request

    def handle(self) -> None:
        self.close_connection = True
        try:
            self.handle_one_request()
            while not self.close_connection:
                self.handle_one_request()
        except OSError as exc:  # reset, broken pipe, a reply the client never took
            logger.debug("🌐 {} went away: {}", self.client_address[0], type(exc).__name__)

    def handle_one_request(self) -> None:
        limits = self.server.limits
        self.command = self.path = self.requestline = self.request_version = ""
        self.server.slots.mark(self.request, False)
        self.rfile.arm(limits.header_timeout)
        try:
            line = self.rfile.readline(limits.max_line + 1)
            if len(line) > limits.max_line:
                return self._error(414, "the request line is too long")
            if not line.endswith(b"\n"):  # end of input: closed, or closed on us
                self.close_connection = True
                return None
            self.raw_requestline = line
            self.rfile.limit(limits.max_headers)
            if not self.parse_request():  # it sent 400, 431 or 505 and closes
                return self.wfile.flush()
            self.wfile.flush()  # a "100 Continue" (Expect: 100-continue) leaves before the body
        except TimeoutError:
            if self.rfile.started:
                return self._error(408, "the request did not arrive in time")
            self.close_connection = True  # a kept-alive connection nobody used
            return None
        method = getattr(self, f"do_{self.command}", None)
        if method is None:
            return self._error(501, f"method {self.command} is not supported")
        if not self._read_body():
            return None
        self.server.slots.mark(self.request, True)  # only now: a client cannot hold it busy
        self._dispatch(method)
        self.wfile.flush()
        return None

    def _read_body(self) -> bool:
        """Read a body of at most max_body bytes within body_timeout into `self.body`; False
        when a 400, 411, 413 or 408 was sent instead (the connection then closes)."""
        limits = self.server.limits
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "send the body with a Content-Length (or none)")
            return False
        text = self.headers.get("Content-Length") or "0"
        length = parse_count(text, 0, 1 << 62)
        if length is None:
            self._error(400, "Content-Length must be a whole number of bytes")
            return False
        if length > limits.max_body:
            self._error(413, f"a body is at most {limits.max_body} bytes")
            return False
        self.rfile.arm(limits.body_timeout)
        try:
            self.body = self.rfile.read(length)
        except TimeoutError:
            self._error(408, "the request body did not arrive in time")
            return False
        if len(self.body) < length:  # closed on us mid-body
            self.close_connection = True
            return False
        return True

    def _dispatch(self, method: Any) -> None:
        try:
            method()
        except Exception as exc:  # noqa: BLE001 - a failed request never stops the service
            incident = secrets.token_hex(4)
            logger.opt(exception=exc).error("❌ {} {} failed (id {}): {}", self.command,
                                            self.route, incident, type(exc).__name__)
            self.wfile.discard()
            self.send_json(500, {"error": f"internal error, see the log (id {incident})"})

    def _error(self, code: int, reason: str) -> None:
        self.send_error(code, reason)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """A JSON error, then the connection closes. The stdlib's HTML page would quote the
        request line back (`Bad request syntax ('...')`): only the words before it are kept."""
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = self.protocol_version  # a status line, even for nonsense
        reason = (message or HTTPStatus(code).phrase).split(" (", 1)[0]
        self.wfile.discard()
        self.send_json(code, {"error": reason}, {"Connection": "close"})

    # -- replies -----------------------------------------------------------------------------
    def send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        import json

        self.send_body(code, (json.dumps(body, indent=2, default=str) + "\n").encode(),
                       "application/json", headers)

    def send_body(self, code: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    # -- logging: method, path and status only; never a query string or a header -----------
    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0] or "-"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("🌐 {} {} {} {}", self.client_address[0], self.command or "-", self.route,
                     int(code) if isinstance(code, int) else code)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stdlib's messages quote the request line (and so the query): log_request only
