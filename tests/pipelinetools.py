"""Helpers for the end-to-end tests of the orchestrator, the seed's snippets and the CLI.

Every plant is written by `dpo.demo.plant` into a temp folder; faults are planted by rewriting real
Excel files (one cell changed, or the bytes replaced), never by mocking a phase. The only
stand-in is the seed's own MockNotificationHandler.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from python_calamine import CalamineWorkbook

from dpo.demo.plant import DemoPlant, generate_plant, write_xlsb, write_xlsx
from dpo.notify.channels import MockNotificationHandler
from dpo.pipeline.orchestrator import DataPipelineOrchestrator

SHARED = Path("agents") / "shared_db"
ORCH = SHARED / "DataPipelineOrchestrator"
NEWEST = ORCH / "newest"
HISTORY = ORCH / "historical_db"
CHANGE_LOG = ORCH / "change_log.txt"
LEDGER = ORCH / "runs.sqlite"
ANNOTATIONS = SHARED / "DataLoaderAgent" / "newest" / "path_annotations.json"
PHASE1 = SHARED / "dynamicDatabase"
MONTHLY = Path("database") / "dynamicDatabase" / "monthlyReports_history"
ORDERS = Path("database") / "dynamicDatabase" / "purchaseOrders_history"
STATIC = Path("database") / "staticDatabase"
DYNAMIC_TABLES = ("productRecords", "purchaseOrders")
STATIC_TABLES = ("itemCompositionSummary", "itemInfo", "machineInfo", "moldInfo",
                 "moldSpecificationSummary", "resinInfo")
ALL_TABLES = DYNAMIC_TABLES + STATIC_TABLES
HMS = re.compile(r"^\d{2}:\d{2}:\d{2}$")
STAMP = r"\d{8}_\d{4}(?:-\d+)?"
REPORT_NAME = re.compile(rf"^({STAMP})_(DataCollector|DataLoader|DataPipelineOrchestrator)_"
                         r"(success_report|manual_review_notification|final_report)\.txt$")


def make_plant(root: Path, *, seed: int = 7, months: int = 2, rows_per_month: int = 60,
               **kw: Any) -> DemoPlant:
    """A small plant in the seed's default layout: 2 monthly .xlsb x 60 rows, 2 PO .xlsx."""
    return generate_plant(root, months=months, rows_per_month=rows_per_month, seed=seed, **kw)


# ------------------------------------------------------------------------- planting faults

def age(path: Path, seconds: float = 120.0) -> None:
    """Make a file look settled: a fresh unreadable file is retried as 'still being copied'."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def read_book(path: Path) -> tuple[str, list[Any], list[list[Any]]]:
    """(sheet, header, rows) of the first sheet of a real workbook; empty cells are None."""
    book = CalamineWorkbook.from_path(str(path))
    sheet = book.sheet_names[0]
    header, *rows = book.get_sheet_by_name(sheet).to_python()
    return sheet, header, [[None if v == "" else v for v in row] for row in rows]


def set_cell(path: Path, data_row: int, column: str, value: Any) -> int:
    """Rewrite one cell of a real .xlsx/.xlsb file; returns the Excel row number it is on."""
    sheet, header, rows = read_book(path)
    rows[data_row][header.index(column)] = value
    writer = write_xlsb if path.suffix == ".xlsb" else write_xlsx
    writer(path, sheet, header, rows)
    age(path)
    return data_row + 2  # row 1 holds the header


def cell(path: Path, data_row: int, column: str) -> Any:
    _, header, rows = read_book(path)
    return rows[data_row][header.index(column)]


def corrupt(path: Path) -> None:
    """Replace a workbook by bytes no Excel reader accepts (and make it look settled)."""
    path.write_bytes(b"this is not a workbook\x00" * 20)
    age(path)


# ----------------------------------------------------------------------------- running

class Clock:
    """A settable clock (for the orchestrator and the VersionStore): it stays on one instant
    until moved, so every run of a test gets a known minute and report and version names are
    known."""

    def __init__(self, when: datetime = datetime(2024, 5, 2, 6, 0)) -> None:
        self.when = when

    def __call__(self) -> datetime:
        return self.when

    def at(self, hour: int, minute: int) -> Clock:
        self.when = self.when.replace(hour=hour, minute=minute)
        return self

    def advance(self, minutes: int = 1) -> None:
        self.when += timedelta(minutes=minutes)

    @property
    def stamp(self) -> str:
        return f"{self.when:%Y%m%d_%H%M}"


MOCK: Any = object()  # "a fresh MockNotificationHandler"; None means dpo's default channel


def orchestrator(root: Path, *, clock: Clock | None = None,
                 handler: Any = MOCK, **settings: Any) -> DataPipelineOrchestrator:
    return DataPipelineOrchestrator(
        root_dir=root, notification_handler=MockNotificationHandler() if handler is MOCK
        else handler, clock=clock or datetime.now, **settings)


def run(root: Path, *, clock: Clock | None = None, handler: Any = MOCK,
        enable_notifications: bool = True, **settings: Any) -> dict[str, Any]:
    result = orchestrator(root, clock=clock, handler=handler, **settings).run_pipeline(
        enable_notifications=enable_notifications)
    assert_result_shape(result)
    return result


def assert_result_shape(result: dict[str, Any]) -> None:
    """The seed's result structure: JSON-serialisable, lower-case statuses, HH:MM:SS times."""
    assert json.loads(json.dumps(result)) == result
    assert result["overall_status"] in ("success", "partial_success", "failed")
    collector, loader = result["collector_result"], result["loader_result"]
    assert collector["component"] == "DataCollector"
    assert loader["component"] == "DataLoaderAgent"
    assert collector["status"] in ("success", "warning", "error")
    assert loader["status"] in ("success", "warning", "error", "skipped")
    assert HMS.match(collector["execution_time"]), collector["execution_time"]
    assert HMS.match(loader["execution_time"]), loader["execution_time"]
    datetime.fromisoformat(result["timestamp"])
    if loader["status"] != "skipped":
        assert loader["data_validation"] in ("passed", "failed")
    for action in collector["healing_actions"]:
        assert set(action) >= {"action", "table", "success", "detail"}


def actions(result: dict[str, Any], kind: str = "rollback") -> list[tuple[str, str, bool]]:
    return [(a["action"], a["table"], a["success"])
            for a in result["collector_result"]["healing_actions"] if a["action"] == kind]


def detail(phase: dict[str, Any], table: str) -> dict[str, Any]:
    (found,) = [d for d in phase["details"] if d["table"] == table]
    return found


# -------------------------------------------------------------------------- inspecting

def published(root: Path) -> dict[str, bytes]:
    """Bytes of the annotations file and of every file it points to (the published state)."""
    path = root / ANNOTATIONS
    snapshot = {str(ANNOTATIONS): path.read_bytes()}
    for table, stored in json.loads(path.read_text(encoding="utf-8")).items():
        target = Path(stored) if Path(stored).is_absolute() else root / stored
        snapshot[table] = target.read_bytes()
    return snapshot


def reports(root: Path, folder: Path = NEWEST) -> list[str]:
    where = root / folder
    return sorted(p.name for p in where.iterdir()) if where.is_dir() else []


def report_kinds(root: Path) -> dict[str, str]:
    """{component: report_type} of the reports in newest/ (one stamp expected)."""
    kinds = {}
    for name in reports(root):
        match = REPORT_NAME.match(name)
        assert match, f"unexpected report name {name}"
        kinds[match.group(2)] = match.group(3)
    return kinds


def change_log_blocks(root: Path) -> list[str]:
    text = (root / CHANGE_LOG).read_text(encoding="utf-8")
    return [b for b in text.split("\n\n") if b.strip()]


def every_file(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


# ------------------------------------------------------------------------------- CLI

def dpo(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m dpo.cli ARGS` as a real subprocess."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("COLUMNS", None)
    return subprocess.run([sys.executable, "-m", "dpo.cli", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------- local servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HttpRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class HttpSink:
    port: int
    requests: list[HttpRequest] = field(default_factory=list)


@contextmanager
def http_receiver() -> Iterator[HttpSink]:
    """A real HTTP server on 127.0.0.1 that records JSON POSTs."""
    sink = HttpSink(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            sink.requests.append(HttpRequest(self.path, dict(self.headers.items()),
                                             json.loads(raw)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpSink:
    port: int
    user: str
    password: str
    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        from email.message import EmailMessage
        from email.policy import default as default_policy

        self.messages.append(email.message_from_bytes(
            envelope.original_content or b"", _class=EmailMessage, policy=default_policy))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        login = (auth_data.login.decode(), auth_data.password.decode())
        self.logins.append(login)
        return AuthResult(success=login == (self.user, self.password))


@contextmanager
def smtp_receiver(user: str, password: str) -> Iterator[SmtpSink]:
    """A real aiosmtpd server on 127.0.0.1 that accepts only `user`/`password`."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink(free_port(), user, password)
    # Plain SMTP with AUTH allowed without TLS: what apprise's mailto:// speaks on a custom port.
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port,
                            authenticator=sink.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# Keys of a result dict that are measured, not decided: timings, sizes, the run's id.
VOLATILE = {"execution_time", "execution_seconds", "timestamp", "peak_memory_bytes",
            "disk_usage_bytes", "run_id"}


def plain(value: Any) -> Any:
    """A result dict without its VOLATILE keys: what two runs that decided alike share."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def phase1_outputs(root: Path) -> dict[str, bytes]:
    """Every Phase 1 Parquet file (tables and quarantine), by path under the root."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted((root / PHASE1).rglob("*.parquet"))}
