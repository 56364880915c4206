"""`dpo serve` under careless and hostile clients (#23): the figures in BENCHMARKS.md.

    .venv/bin/python bench/serve_clients.py

One service on the test suite's small plant (tests/pipelinetools.make_plant), --no-watch,
its descriptor limit lowered to 256, on 127.0.0.1:

  health_idle_s    seconds for a fresh GET /health while 300 idle connections are held
  keepalive_ms     median and worst of 200 kept-alive GET /nope (404: no work behind it)
  reset_log_bytes  log bytes (INFO) written for 100 clients that reset before their reply
  wrong_tokens     the statuses of 1,000 POST /run with wrong tokens, and the WARNING lines
Nothing here is asserted; it prints.
"""

from __future__ import annotations

import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from pipelinetools import make_plant
from servetools import Served, connect, read_reply, serve, status_of

TOKEN = "bench-token-0123456789abcdef"


def lower_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


def health_with_idle_connections(served: Served) -> tuple[int, float]:
    held = [connect(served.port) for _ in range(300)]
    try:
        start = time.perf_counter()
        with connect(served.port, timeout=30) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = status_of(read_reply(sock))
        return status, time.perf_counter() - start
    finally:
        for sock in held:
            sock.close()


def keepalive_ms(served: Served, n: int = 200) -> list[float]:
    times = []
    with connect(served.port) as sock:
        for _ in range(n):
            start = time.perf_counter()
            sock.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while not reply.endswith(b"}\n"):
                reply += sock.recv(65536)
            times.append((time.perf_counter() - start) * 1000)
    return times


def reset_log_bytes(served: Served, n: int = 100) -> int:
    before = served.log_path.stat().st_size
    for _ in range(n):
        sock = connect(served.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.close()
    served.request("/health")  # after the resets: their handlers have run
    return served.log_path.stat().st_size - before


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="dpo-bench-clients-")) / "plant"
    make_plant(root)
    with serve(root, "--no-watch", env={"DPO_SERVE_TOKEN": TOKEN},
               preexec_fn=lower_fd_limit) as served:
        served.idle_after(1)
        status, seconds = health_with_idle_connections(served)
        print(f"health_idle_s    {status} in {seconds:.3f} s (300 idle connections, 256 fds)")
        times = keepalive_ms(served)
        print(f"keepalive_ms     median {statistics.median(times):.2f}, max {max(times):.2f}")
        print(f"reset_log_bytes  {reset_log_bytes(served)}")
        codes: dict[int, int] = {}
        for i in range(1000):
            reply = served.request("/run", method="POST",
                                   headers={"Authorization": f"Bearer wrong-{i}"})
            codes[reply.status] = codes.get(reply.status, 0) + 1
        warnings = [line for line in served.log().splitlines() if "WARNING" in line]
        print(f"wrong_tokens     {codes}; {len(warnings)} WARNING: {warnings}")
        served.stop()


if __name__ == "__main__":
    main()
