"""`dpo serve` under hostile and careless clients: a real `dpo serve` subprocess on 127.0.0.1
spoken to over raw sockets (what urllib would not send). Every loop is bounded in count and
in time; no wall time is asserted (a socket timeout only turns a hang into a failure).
"""

from __future__ import annotations

import re
import resource
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pipelinetools import make_plant
from servetools import (
    Served,
    closed_by_peer,
    connect,
    exchange,
    read_reply,
    serve,
    status_of,
)

TOKEN = "serve-T0ken-s3cret-hostile"
SECRET_QUERY = "api_key=QUERY-s3cret-VALUE"
FD_LIMIT = 256  # the child's descriptor limit: 64 connections at most (a quarter)
HEADER_TIMEOUT = 5.0  # dpo.serve.httpserver.Limits.header_timeout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One service (-v: even DEBUG lines must not leak), idle after its start run, with
    its descriptor limit lowered to FD_LIMIT."""
    root = tmp_path_factory.mktemp("hostile") / "plant"
    make_plant(root)
    with serve(root, "--no-watch", "-v", env={"DPO_SERVE_TOKEN": TOKEN},
               preexec_fn=lower_fd_limit(FD_LIMIT)) as served:
        served.idle_after(1)
        yield served
        assert served.stop() == 0
    log = served.log()
    assert TOKEN not in log and "QUERY-s3cret" not in log and "%C2%B2" not in log, log
    assert "Traceback" not in log, log


def lower_fd_limit(soft: int) -> Callable[[], None]:
    def lower() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return lower


def get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode()


def answered(sock: socket.socket) -> bool:
    """The server sent something (or closed): there is input waiting."""
    return bool(select.select([sock], [], [], 0)[0])


def answers_health(served: Served) -> int:
    """A fresh /health on a raw connection, answered by the service (not refused); a 10 s
    socket timeout: a hang fails rather than waits."""
    with connect(served.port, timeout=20.0) as sock:
        sock.sendall(get("/health"))
        reply = read_reply(sock)
    assert b'"service_status"' in reply, reply[:300]
    return status_of(reply)


def descriptors(served: Served) -> int:
    return len(list(Path(f"/proc/{served.proc.pid}/fd").iterdir()))


@pytest.mark.parametrize(("request_bytes", "status"), [
    (get(f"/runs?limit=%C2%B2&{SECRET_QUERY}"), 400),
    (get("/runs?limit=" + "9" * 5000), 400),
    (get("/runs?limit=-1"), 400),
    (get("/" + "a" * 70_000), 414),
    (get("/health", "X-Filler: " + "b" * 20_000 + "\r\n"), 431),
    (get("/health", "".join(f"X-{i}: y\r\n" for i in range(200))), 431),
    (b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n", 400),
    (b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413),
    (b"POST /run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
    (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS to a plain port
], ids=["superscript-limit", "5000-digit-limit", "negative-limit", "70000-byte-line",
        "20-KB-header", "200-headers", "non-ascii-content-length", "big-body", "chunked",
        "unknown-method", "tls-hello"])
def test_a_crash_input_gets_its_4xx_and_the_service_answers_on(served: Served,
                                                                request_bytes: bytes,
                                                                status: int) -> None:
    reply = exchange(served.port, request_bytes)

    assert status_of(reply) == status, reply[:300]
    assert b"QUERY-s3cret" not in reply and b"Traceback" not in reply
    assert answers_health(served) == 200


def test_an_idle_connection_is_closed_and_a_slow_drip_gets_408(served: Served) -> None:
    """The drip goes on (a byte every 0.25 s, for up to six header timeouts) until the
    server answers: a per-read timeout would never answer it."""
    idle = connect(served.port)
    drip = connect(served.port)
    request = get("/health", "X-Slow: " + "z" * 2000 + "\r\n")
    sent = 0
    end = time.monotonic() + 6 * HEADER_TIMEOUT
    try:
        while time.monotonic() < end and not answered(drip):
            drip.send(request[sent:sent + 1])
            sent += 1
            time.sleep(0.25)
        assert answered(drip), f"still reading the request after {sent} bytes"
        reply = read_reply(drip)
        assert idle.recv(1) == b""  # closed without a word: it never started a request
    finally:
        idle.close()
        drip.close()

    assert status_of(reply) == 408, reply


def test_idle_connections_beyond_the_limit_leave_health_answering(served: Served) -> None:
    baseline = descriptors(served)
    held = []
    try:
        for i in range(FD_LIMIT + 44):  # more connections than the child has descriptors
            held.append(connect(served.port))
            if i % 2:  # half of them hold a request whose body never comes
                held[-1].sendall(b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n")
        last_connected = time.monotonic()
        assert answers_health(served) == 200
        during = descriptors(served)
        evicted = [closed_by_peer(sock) for sock in held]
        looked = time.monotonic()
    finally:
        for sock in held:
            sock.close()

    assert during <= baseline + FD_LIMIT // 4 + 2, (baseline, during)  # the limit held
    assert sum(evicted) >= len(held) - FD_LIMIT // 4  # the oldest idle ones made room
    if looked - last_connected < HEADER_TIMEOUT:  # (later, the deadline has closed them all)
        assert not any(evicted[-8:]), evicted  # the newest were kept
    assert answers_health(served) == 200
    assert descriptors(served) < FD_LIMIT


def test_clients_that_leave_early_cost_a_line_each_and_no_traceback(served: Served) -> None:
    before = len(served.log())
    for i in range(50):
        sock = connect(served.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(get("/metrics" if i % 2 else "/"))
        sock.close()  # a reset, before (or while) the reply is sent
    assert answers_health(served) == 200
    grown = served.log()[before:]

    assert "ERROR" not in grown and "Traceback" not in grown, grown
    assert len(grown) < 50 * 250, grown  # the request line and, at most, "went away"


def test_replies_on_a_kept_alive_connection_leave_in_one_send(served: Served) -> None:
    with connect(served.port) as sock:
        for _ in range(5):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            first = sock.recv(1 << 20)  # one recv: what the first segment brought
            head, _, body = first.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            assert len(body) == length, first[:200]  # headers and body arrived together


def test_failed_authentications_are_throttled_and_warned_about(served: Served) -> None:
    def post(authorization: str) -> tuple[int, dict[str, str]]:
        reply = served.request("/run", method="POST", headers={"Authorization": authorization})
        return reply.status, reply.headers

    statuses = [post(f"Bearer wrong-{i}")[0] for i in range(5)]
    refused, headers = post(f"Bearer {TOKEN}")  # the right token, now: not even checked

    assert statuses == [401] * 5
    assert refused == 429 and int(headers["Retry-After"]) >= 1
    warnings = [line for line in served.log().splitlines() if "WARNING" in line.split()[:3]]
    assert any("5 failed authentications" in w and "127.0.0.1" in w for w in warnings), warnings


def test_an_internal_error_is_a_500_with_an_id_and_the_details_only_in_the_log(
        tmp_path: Path) -> None:
    root = tmp_path / "plant"
    make_plant(root)
    with serve(root, "--no-watch", env={"DPO_SERVE_TOKEN": TOKEN}) as served:
        served.idle_after(1)
        ledger = next(root.rglob("runs.sqlite"))
        for path in ledger.parent.glob("runs.sqlite*"):
            path.write_bytes(b"not a database, " * 512)  # the ledger, broken under it
        reply = exchange(served.port, get(f"/runs?limit=5&{SECRET_QUERY}"))
        assert served.stop() == 0

    assert status_of(reply) == 500, reply
    body = reply.partition(b"\r\n\r\n")[2].decode()
    match = re.fullmatch(r'\{\s*"error": "internal error, see the log \(id ([0-9a-f]{8})\)"\s*\}\s*',
                         body)
    assert match, body  # nothing of the exception reaches the client
    log = served.log()
    (line,) = [line for line in log.splitlines() if match.group(1) in line]
    assert "ERROR" in line and "GET /runs failed" in line and "DatabaseError" in line
    assert "QUERY-s3cret" not in log and "limit=5" not in log and TOKEN not in log


def test_the_listen_backlog_is_not_the_stdlibs_five(served: Served) -> None:
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed: the listening socket cannot be read")
    listing = subprocess.run(["ss", "-Hltn", f"sport = :{served.port}"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
    backlog = int(listing[2])  # State Recv-Q Send-Q ...: Send-Q is the backlog of a listener

    assert backlog == 128, listing


def test_a_client_that_expects_100_continue_gets_it_before_sending_its_body(
        served: Served) -> None:
    with connect(served.port) as sock:
        sock.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        interim = sock.recv(65536)
        sock.sendall(b"hello")
        reply = read_reply(sock)

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim  # and nothing more
    assert status_of(reply) == 404, reply
