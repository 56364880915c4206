"""The HTTP side of `dpo serve`: stdlib `http.server`, one thread per connection.

    GET  /health          the seed's health check + the service's state; 200 healthy, 503 degraded
    GET  /metrics         Prometheus exposition (prometheus_client): `dpo metrics --prometheus`'s
                          families over the newest runs, the service's own, the process's
    GET  /                the dashboard (as `dpo dashboard` writes it)
    GET  /runs?limit=N    the newest N runs as `dpo history --json` prints them
    POST /run             ask for a run; exists only when serve_token is set, and then only with
                          `Authorization: Bearer <token>`

The stdlib server, bounded against hostile and careless clients (dpo.serve.httpserver: what
a client may hold and send, and why not an ASGI server). Request logs go to loguru at DEBUG
and name the method, path and status only: never a query string, never a header (the token).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from dpo.errors import ConfigError, DpoError
from dpo.serve.guard import Throttle, bearer_matches
from dpo.serve.httpserver import (
    BoundedHandler,
    BoundedHTTPServer,
    Limits,
    connection_limit,
    parse_count,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from dpo.serve.service import Service


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:8765', 'localhost:8765' or '[::1]:8765' -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = parse_count(port_text, 1, 65535)
    if not sep or not host or port is None:
        raise ConfigError(f"--listen must be HOST:PORT (e.g. 127.0.0.1:8765), got {text!r}")
    return host, port


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
UNAUTHORIZED = "a valid 'Authorization: Bearer <token>' is required"


class ServiceHTTPServer(BoundedHTTPServer):
    service: Service
    registry: Any  # prometheus_client.CollectorRegistry
    throttle: Throttle


def make_server(service: Service, host: str, port: int) -> ServiceHTTPServer:
    cls: type[ServiceHTTPServer] = ServiceHTTPServer
    if ":" in host:
        cls = type("ServiceHTTPServer6", (ServiceHTTPServer,), {"address_family": socket.AF_INET6})
    try:
        server = cls((host, port), Handler, Limits(max_connections=connection_limit()))
    except OSError as exc:
        raise DpoError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    server.service = service
    server.registry = _registry(service)
    server.throttle = Throttle()
    return server


class Handler(BoundedHandler):
    server: ServiceHTTPServer
    server_version = "dpo"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        routes: dict[str, Callable[[dict[str, list[str]]], None]] = {
            "/health": self._health, "/metrics": self._metrics, "/": self._dashboard,
            "/runs": self._runs}
        route = routes.get(url.path)
        if route is None:
            self.send_json(404, {"error": f"no such endpoint: GET {url.path}"})
            return
        route(parse_qs(url.query))

    def do_POST(self) -> None:
        service, address = self.server.service, self.client_address[0]
        if self.route != "/run" or service.token is None:
            self.send_json(404, {"error": f"no such endpoint: POST {self.route}"})
            return
        wait = self.server.throttle.admit(address)
        if wait is not None:
            self.send_json(429, {"error": "too many requests from this address: try later"},
                           {"Retry-After": str(max(1, round(wait)))})
            return
        if not bearer_matches(self.headers.get("Authorization") or "", service.token):
            self.server.throttle.failed(address)
            self.send_json(401, {"error": UNAUTHORIZED}, {"WWW-Authenticate": 'Bearer realm="dpo"'})
            return
        in_progress = service.state.current is not None
        service.request_run("http", address)
        self.send_json(202, {"accepted": True, "run_in_progress": in_progress,
                             "note": "a run follows the one in progress" if in_progress
                             else "a run starts now"})

    # -- endpoints ---------------------------------------------------------------------------
    def _health(self, query: dict[str, list[str]]) -> None:
        code, report = self.server.service.health()
        self.send_json(code, report)

    def _metrics(self, query: dict[str, list[str]]) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.send_body(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)

    def _dashboard(self, query: dict[str, list[str]]) -> None:
        from dpo.observe.dashboard import render
        from dpo.observe.metrics import RECENT_RUNS, compute

        snap = self._ledger().snapshot(limit=RECENT_RUNS)
        page = render(snap, compute(snap, window=f"the newest {RECENT_RUNS} runs"))
        self.send_body(200, page.encode(), "text/html; charset=utf-8",
                       {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    def _runs(self, query: dict[str, list[str]]) -> None:
        from dpo.observe.history import history_records

        limit = parse_count((query.get("limit") or ["20"])[-1], 1, MAX_RUNS)
        if limit is None:  # the value is not echoed: it came from a query string
            self.send_json(400, {"error": f"limit must be a whole number 1..{MAX_RUNS}"})
            return
        self.send_json(200, history_records(self._ledger().snapshot(limit=limit, detail=True)))

    def _ledger(self) -> Any:
        from dpo.observe.ledger import Ledger

        return Ledger(self.server.service.paths.output_dir / "runs.sqlite", read_only=True)


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
