"""The HTTP side of `dpo serve`: stdlib `http.server`, one thread per request.

    GET  /health          the seed's health check + the service's state; 200 healthy, 503 degraded
    GET  /metrics         Prometheus exposition (prometheus_client): `dpo metrics --prometheus`'s
                          families over the newest runs, the service's own, the process's
    GET  /                the dashboard (as `dpo dashboard` writes it)
    GET  /runs?limit=N    the newest N runs as `dpo history --json` prints them
    POST /run             ask for a run; exists only when serve_token is set, and then only with
                          `Authorization: Bearer <token>`

The stdlib server, not an ASGI stack: a handful of requests a minute from a scraper and a
person, and it costs nothing to import or to keep (BENCHMARKS.md, `dpo serve`). Request logs
go to loguru at DEBUG and name the method, path and status only (never a header: the token).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from loguru import logger

from dpo.errors import ConfigError, DpoError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from dpo.serve.service import Service

def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:8765', 'localhost:8765' or '[::1]:8765' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen must be HOST:PORT (e.g. 127.0.0.1:8765), got {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0])).is_loopback for i in infos)


MAX_RUNS = 1000  # /runs?limit= at most
JSON = "application/json"


class ServiceHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    service: Service
    registry: Any  # prometheus_client.CollectorRegistry


def make_server(service: Service, host: str, port: int) -> ServiceHTTPServer:
    cls: type[ServiceHTTPServer] = ServiceHTTPServer
    if ":" in host:
        cls = type("ServiceHTTPServer6", (ServiceHTTPServer,), {"address_family": socket.AF_INET6})
    try:
        server = cls((host, port), Handler)
    except OSError as exc:
        raise DpoError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    server.service = service
    server.registry = _registry(service)
    return server


class Handler(BaseHTTPRequestHandler):
    server: ServiceHTTPServer
    server_version = "dpo"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        routes: dict[str, Callable[[dict[str, list[str]]], None]] = {
            "/health": self._health, "/metrics": self._metrics, "/": self._dashboard,
            "/runs": self._runs}
        route = routes.get(url.path)
        if route is None:
            self._json(404, {"error": f"no such endpoint: GET {url.path}"})
            return
        try:
            route(parse_qs(url.query))
        except Exception as exc:  # noqa: BLE001 - a failed request never stops the service
            logger.opt(exception=exc).error("❌ GET {} failed: {}", url.path, exc)
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        raw = self.headers.get("Content-Length") or "0"
        length = int(raw) if raw.isdigit() else -1
        if 0 < length <= 65536:
            self.rfile.read(length)  # the body means nothing; read it so the connection stays sane
        elif length != 0:
            self.close_connection = True  # a body left unread: this connection is done after this
        service = self.server.service
        if url.path != "/run" or service.token is None:
            self._json(404, {"error": f"no such endpoint: POST {url.path}"})
            return
        given = self.headers.get("Authorization") or ""
        expected = f"Bearer {service.token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            self._json(401, {"error": "a valid 'Authorization: Bearer <token>' is required"},
                       {"WWW-Authenticate": 'Bearer realm="dpo"'})
            return
        in_progress = service.state.current is not None
        service.request_run("http", self.client_address[0])
        self._json(202, {"accepted": True, "run_in_progress": in_progress,
                         "note": "a run follows the one in progress" if in_progress
                         else "a run starts now"})

    # -- endpoints ---------------------------------------------------------------------------
    def _health(self, query: dict[str, list[str]]) -> None:
        code, report = self.server.service.health()
        self._json(code, report)

    def _metrics(self, query: dict[str, list[str]]) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)

    def _dashboard(self, query: dict[str, list[str]]) -> None:
        from dpo.observe.dashboard import render
        from dpo.observe.metrics import RECENT_RUNS, compute

        snap = self._ledger().snapshot(limit=RECENT_RUNS)
        page = render(snap, compute(snap, window=f"the newest {RECENT_RUNS} runs"))
        self._send(200, page.encode(), "text/html; charset=utf-8",
                   {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    def _runs(self, query: dict[str, list[str]]) -> None:
        from dpo.observe.history import history_records

        text = (query.get("limit") or ["20"])[-1]
        if not text.isdigit() or not 1 <= int(text) <= MAX_RUNS:
            self._json(400, {"error": f"limit must be a whole number 1..{MAX_RUNS}, got {text!r}"})
            return
        self._json(200, history_records(self._ledger().snapshot(limit=int(text), detail=True)))

    # -- plumbing ----------------------------------------------------------------------------
    def _ledger(self) -> Any:
        from dpo.observe.ledger import Ledger

        return Ledger(self.server.service.paths.output_dir / "runs.sqlite", read_only=True)

    def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, (json.dumps(body, indent=2, default=str) + "\n").encode(), JSON, headers)

    def _send(self, code: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("🌐 {} {}", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(self.path).path  # no query, no header: nothing secret reaches a log
        logger.debug("🌐 {} {} {} {}", self.address_string(), self.command, path, code)


# -- /metrics ---------------------------------------------------------------------------------
def _registry(service: Service) -> Any:
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(service))
    registry.register(ServiceCollector(service))
    ProcessCollector(registry=registry)  # RSS, CPU seconds, open fds: "warm and lean" watched
    return registry


class LedgerCollector:
    """`dpo metrics --prometheus` (dpo.metrics) over the newest runs, at every scrape: the
    families of the after-run `.prom` file, parsed back rather than defined twice."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.parser import text_string_to_metric_families

        from dpo.observe.ledger import Ledger
        from dpo.observe.metrics import RECENT_RUNS, compute, prometheus_text

        snap = Ledger(self.service.paths.output_dir / "runs.sqlite",
                      read_only=True).snapshot(limit=RECENT_RUNS)
        text = prometheus_text(compute(snap, window=f"the newest {RECENT_RUNS} runs"))
        yield from text_string_to_metric_families(text)


class ServiceCollector:
    """The service's own state: runs by outcome, triggers, in progress, pending, uptime."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        service = self.service
        state = service.state.snapshot()
        runs = CounterMetricFamily("dpo_service_runs", "Runs this service did, by outcome "
                                   "(error: the run could not start).", labels=["outcome"])
        for outcome in ("success", "partial_success", "failed", "error", "abandoned"):
            runs.add_metric([outcome], state["runs_by_outcome"].get(outcome, 0))
        yield runs
        triggers = CounterMetricFamily("dpo_service_run_requests", "Run requests by source.",
                                       labels=["source"])
        for source in ("start", "watch", "schedule", "http"):
            triggers.add_metric([source], state["triggers"].get(source, 0))
        yield triggers
        published = CounterMetricFamily(
            "dpo_service_published_data_quality_warnings", "Data-quality warnings on the new "
            "versions this service published, by kind (a table republished unchanged adds "
            "none).", labels=["kind"])
        for kind, count in sorted(state["published_warnings"].items()):
            published.add_metric([kind], count)
        yield published
        watch = service.watcher.status() if service.watcher else None
        gauges: list[tuple[str, str, float | None]] = [
            ("run_in_progress", "1 while a run is going on.", float(state["run_in_progress"])),
            ("run_pending", "1 when a follow-up run is asked for.",
             float(service.triggers.pending)),
            ("waiting_for_lock", "1 while a run waits for another's run lock.",
             float(state["waiting_for_lock"] is not None)),
            ("files_settling", "Changed files not yet complete.",
             None if watch is None else float(len(watch["waiting_for"]))),
            ("watching", "1 while the source folders are watched.",
             None if watch is None else float(watch["alive"] and not watch["error"])),
            ("uptime_seconds", "Seconds since the service started.", state["uptime_s"]),
            ("start_time_seconds", "Start of the service (Unix time).",
             service.state.started_at.timestamp()),
            ("next_scheduled_run_timestamp_seconds", "Next run of the schedule (Unix time).",
             service.state.next_scheduled.timestamp() if service.state.next_scheduled else None),
        ]
        for name, help_text, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(f"dpo_service_{name}", help_text, value=value)
