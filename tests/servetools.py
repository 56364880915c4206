"""`dpo serve` as a real subprocess on a free port of 127.0.0.1, spoken to over real HTTP.

Waits are polls with a deadline (the service's state from /health), never sleeps sized to
this machine's speed: the tests hold on a loaded 2-core machine, only slower.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipelinetools import free_port
from prometheus_client.parser import text_string_to_metric_families
from promrules import naming_problems

T = TypeVar("T")
DEADLINE = 90.0  # seconds any one condition may take on a loaded machine before a test fails


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    log_path: Path

    # -- HTTP ---------------------------------------------------------------------------------
    def request(self, path: str, *, method: str = "GET",
                headers: dict[str, str] | None = None) -> Reply:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     headers=headers or {}, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Reply(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers.items()), err.read())

    def health(self) -> dict[str, Any]:
        reply = self.request("/health")
        assert reply.status in (200, 503), reply
        body: dict[str, Any] = reply.json()
        return body

    def service(self) -> dict[str, Any]:
        state: dict[str, Any] = self.health()["service"]
        return state

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """{(sample name, sorted labels): value} of /metrics."""
        reply = self.request("/metrics")
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
        assert naming_problems(reply.body.decode()) == []  # every family, Prometheus' names
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(reply.body.decode())
                for s in family.samples}

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        reply = self.request(f"/runs?limit={limit}")
        assert reply.status == 200, reply
        runs: list[dict[str, Any]] = reply.json()
        return runs

    # -- waiting ------------------------------------------------------------------------------
    def wait_for(self, condition: Callable[[], T | None], what: str,
                 deadline: float = DEADLINE) -> T:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"dpo serve exited ({self.proc.returncode}) waiting for "
                                     f"{what}:\n{self.log()}")
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def idle_after(self, runs: int) -> dict[str, Any]:
        """The service state once `runs` runs are done and nothing is going on or waiting."""
        def idle() -> dict[str, Any] | None:
            state = self.service()
            busy = (state["run_in_progress"] or state["next_run"]["follow_up_pending"]
                    or (state["watch"] and state["watch"]["waiting_for"]))
            return state if state["runs_completed"] >= runs and not busy else None

        return self.wait_for(idle, f"{runs} completed run(s) and an idle service")

    # -- stopping -----------------------------------------------------------------------------
    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serve(root: Path, *args: str | Path, env: dict[str, str] | None = None,
          settle: float = 1.0, preexec_fn: Callable[[], None] | None = None) -> Iterator[Served]:
    """Start `dpo serve --root ROOT` on a free port; yields once /health answers.
    `preexec_fn` runs in the child before dpo starts (e.g. to lower a resource limit)."""
    port = free_port()
    log_path = root.parent / f"serve-{port}.log"
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dpo.cli", "serve", "--root", str(root), "--listen",
             f"127.0.0.1:{port}", "--settle", str(settle), *map(str, args)],
            stdout=log, stderr=subprocess.STDOUT, env=full_env, preexec_fn=preexec_fn)
    served = Served(proc, port, root, log_path)
    try:
        served.wait_for(lambda: _answers(served), "/health to answer")
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _answers(served: Served) -> bool:
    try:
        served.request("/health")
    except (urllib.error.URLError, ConnectionError):
        return False
    return True


def copy_slowly(source: Path, target: Path, chunks: int = 8, pause: float = 0.2) -> float:
    """Copy `source` to `target` in `chunks` writes `pause` seconds apart, as a slow share
    does; returns the time (time.time()) of the last write."""
    data = source.read_bytes()
    size = -(-len(data) // chunks)
    with target.open("wb") as out:
        for i in range(0, len(data), size):
            out.write(data[i:i + size])
            out.flush()
            time.sleep(pause)
    return target.stat().st_mtime


def sample(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


# -- raw sockets: what urllib will not send, and clients that misbehave -----------------------
def connect(port: int, timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket's timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection; the reply, read until the server closes."""
    with connect(port) as sock:
        sock.sendall(request)
        return read_reply(sock)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def closed_by_peer(sock: socket.socket) -> bool:
    """The server closed (or shut down) this connection: end of input is waiting."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True
