"""Notifications against real local servers: an aiosmtpd SMTP server and http.server webhooks."""

from __future__ import annotations

import base64
import json
import logging
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pipelinetools import SmtpSink, free_port, smtp_receiver

from dpo.errors import CellError, ErrorInfo, ErrorType
from dpo.notify.channels import (
    AppriseNotificationHandler,
    CompositeNotificationHandler,
    FileNotificationHandler,
    MockNotificationHandler,
    NotificationOutcome,
    redact_url,
)
from dpo.notify.review import ManualReviewNotifier
from dpo.quality import WarningKind
from dpo.quality import note as warning_note
from dpo.results import (
    CollectorResult,
    HealingAction,
    LoaderResult,
    Status,
    TableResult,
    skipped_phase,
)

SMTP_PASSWORD = "SECRETPASS-5mtp"
WEBHOOK_PASSWORD = "HOOKPASS-j50n"
WEBHOOK_TOKEN = "tok3nMattermost42"
DEAD_TOKEN = "DEADTOKEN-c0ffee"


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    with smtp_receiver("dpo", SMTP_PASSWORD) as sink:
        yield sink


@dataclass
class HttpRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[HttpRequest]]]:
    received: list[HttpRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append(HttpRequest(self.path, dict(self.headers.items()), json.loads(raw)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def loguru_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink_id = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink_id)


# --------------------------------------------------------------------------- sample data

RUN_CONTEXT: dict[str, Any] = {
    "run_id": "20240502_0600-a1",
    "started_at": datetime(2024, 5, 2, 6, 0, 1),
    "overall_status": "partial_success",
    "default_dir": "/plant/agents/shared_db",
    "source_dir": "/plant/database/dynamicDatabase",
    "schema_path": "/plant/database/databaseSchemas.json",
    "max_retries": 3,
    "dpo_version": "0.1.0",
    "host": "mes-server-01",
}


def collector_failure() -> dict[str, Any]:
    cells = tuple(CellError("monthlyReports_202405.xlsb", "Sheet1", 17 + i, "itemTotalQuantity",
                            f"12,5x{i}", "is not a whole number") for i in range(23))
    bad = ErrorInfo(ErrorType.DATA_PROCESSING_ERROR,
                    f"23 bad value(s); first: {cells[0].describe()}", table="productRecords",
                    file="monthlyReports_202405.xlsb", sheet="Sheet1", row=17,
                    column="itemTotalQuantity", cells=cells)
    missing = ErrorInfo(ErrorType.FILE_NOT_FOUND, "no purchaseOrder_*.xlsx files",
                        table="purchaseOrders",
                        file="/plant/database/dynamicDatabase/purchaseOrders_history")
    tables = (
        TableResult("productRecords", Status.ERROR, files=("monthlyReports_202405.xlsb",),
                    files_failed=("monthlyReports_202405.xlsb",), error=bad),
        TableResult("purchaseOrders", Status.ERROR, error=missing),
    )
    healing = (
        HealingAction("rollback", "productRecords", True,
                      "restored version 20240501_0600_productRecords.parquet (hash verified)"),
        HealingAction("rollback", "purchaseOrders", False, "no earlier verified copy (first run)"),
    )
    return CollectorResult(Status.ERROR, tables, files_processed=4, files_failed=1,
                           records_count=45_000, duplicates_removed=12, data_updated=False,
                           seconds=204.4, disk_usage_bytes=5_242_880, healing_actions=healing,
                           errors=(bad, missing)).to_dict()


# ------------------------------------------------------------------------------- message

def test_manual_review_message_has_every_section_filled_from_real_values() -> None:
    note = ManualReviewNotifier(MockNotificationHandler()).build_message(
        collector_failure(), run_context=RUN_CONTEXT)
    text = note.message

    assert note.subject == ("Manual Review Required: DataCollector · failed: productRecords, "
                            "purchaseOrders")
    assert note.priority == "high"
    assert note.recipient == "plant-data-team"
    sections = ["MANUAL REVIEW NOTIFICATION", " SUMMARY ", " ERROR DETAILS ", " HEALING ACTIONS ",
                " NEXT STEPS ", " METADATA "]
    positions = [text.index(s) for s in sections]
    assert positions == sorted(positions)
    for expected in [
        "Agent ID             : DataPipelineOrchestrator", "Component            : DataCollector",
        "Status               : ERROR", "Run ID               : 20240502_0600-a1",
        "Files processed      : 4", "Files failed         : 1", "Records              : 45,000",
        "Duplicates removed   : 12", "Data updated         : no",
        "Execution time       : 00:03:24", "Errors               : 2",
        "Healing actions      : 2 (1 succeeded, 1 failed)",
        "ERROR #1: DATA_PROCESSING_ERROR", "  Table                : productRecords",
        "  File                 : monthlyReports_202405.xlsb", "  Sheet                : Sheet1",
        "  Row                  : 17", "  Column               : itemTotalQuantity",
        "  Bad values           : 23 (first: '12,5x0')",
        "    - row 17, column itemTotalQuantity: '12,5x0' is not a whole number",
        "    - row 36, column itemTotalQuantity: '12,5x19' is not a whole number",
        "    ... and 3 more",
        "1. rollback of productRecords: SUCCEEDED — restored version "
        "20240501_0600_productRecords.parquet (hash verified)",
        "ERROR #2: FILE_NOT_FOUND",
        "rollback of purchaseOrders: FAILED — no earlier verified copy (first run)",
        "`dpo run --quarantine`",
        "Check the source folder /plant/database/dynamicDatabase/purchaseOrders_history",
        "Rollback of purchaseOrders failed",
        "Started at           : 2024-05-02 06:00:01",
        "Source folder        : /plant/database/dynamicDatabase",
        "Schema file          : /plant/database/databaseSchemas.json",
        "Output folder        : /plant/agents/shared_db", "Max retries          : 3",
        "dpo version          : 0.1.0", "Host                 : mes-server-01",
        "Duration (s)         : 204.400", "Disk usage           : 5.0 MiB",
    ]:
        assert expected in text, expected
    assert "row 37," not in text  # only 20 cells listed
    assert "N/A" not in text and "None" not in text


def test_warning_phase_is_medium_priority_and_absent_values_leave_no_placeholder() -> None:
    table = TableResult("machineInfo", Status.WARNING, rows=40,
                        warnings=(warning_note(WarningKind.HEADERS_ONLY,
                                       "sheet is empty (headers only); kept previous data"),))
    result = LoaderResult(Status.WARNING, (table,), tables_processed=1, tables_changed=0,
                          tables_created=0, seconds=1.0).to_dict()
    note = ManualReviewNotifier(MockNotificationHandler(), recipient="ops").build_message(
        result, run_context={"run_id": "r2"})
    assert note.subject == "Manual Review Required: DataLoaderAgent · to review: machineInfo"
    assert note.priority == "medium"
    warning = "WARNING (machineInfo): sheet is empty (headers only); kept previous data"
    assert warning in note.message
    assert "Data validation      : passed" in note.message
    assert "Schema file" not in note.message and "Host" not in note.message
    assert "N/A" not in note.message and "None" not in note.message


def test_skipped_phase_and_sparse_errors_never_print_none() -> None:
    notifier = ManualReviewNotifier(MockNotificationHandler())
    skipped = notifier.build_message(
        skipped_phase("DataLoaderAgent", "rollback of productRecords failed"),
        run_context={"run_id": "r3", "overall_status": "failed"})
    assert skipped.priority == "high"
    assert "Status               : SKIPPED" in skipped.message
    assert "Overall status       : FAILED" in skipped.message
    assert "This phase did not run: rollback of productRecords failed" in skipped.message

    locked = ErrorInfo(ErrorType.LOCKED, "file is locked by another process")
    odd = ErrorInfo(ErrorType.UNEXPECTED_ERROR, "KeyError: 'x'")
    result = LoaderResult(Status.ERROR, (), tables_processed=0, tables_changed=0,
                          tables_created=0, seconds=0.2, errors=(locked, odd)).to_dict()
    text = notifier.build_message(result, run_context={}).message
    assert "ERROR #1: LOCKED" in text and "ERROR #2: UNEXPECTED_ERROR" in text
    assert "the file named above stayed locked" in text
    assert "Recovery actions" not in text  # no table named, so nothing to attach actions to
    assert "None" not in text and "N/A" not in text


def test_notify_with_send_false_builds_but_does_not_send() -> None:
    mock = MockNotificationHandler()
    note, outcome = ManualReviewNotifier(mock).notify(collector_failure(), run_context=RUN_CONTEXT,
                                                      send=False)
    assert mock.sent == []
    assert outcome == NotificationOutcome("DataCollector", False, "disabled", None)
    assert "ERROR DETAILS" in note.message
    assert outcome.to_dict() == {"component": "DataCollector", "sent": False,
                                 "channel": "disabled", "error": None}


def test_secret_urls_quoted_in_context_are_redacted_in_the_message() -> None:
    ctx = {**RUN_CONTEXT, "notify_url": f"json://u:{WEBHOOK_PASSWORD}@hooks.example/{DEAD_TOKEN}"}
    note = ManualReviewNotifier(MockNotificationHandler()).build_message(
        collector_failure(), run_context=ctx)
    assert WEBHOOK_PASSWORD not in note.message and DEAD_TOKEN not in note.message
    assert "notify_url           : json://u:***@hooks.example/***" in note.message


# ------------------------------------------------------------------------ simple handlers

def test_mock_handler_records_and_returns_true() -> None:
    mock = MockNotificationHandler()
    note, outcome = ManualReviewNotifier(mock).notify(collector_failure(), run_context=RUN_CONTEXT)
    assert outcome.sent and outcome.channel == "mock" and outcome.error is None
    assert mock.sent == [{"recipient": "plant-data-team", "subject": note.subject,
                          "message": note.message, "priority": "high"}]
    assert mock.send_notification("a", "b", "c") is True
    assert mock.sent[-1]["priority"] == "high"


def test_file_handler_writes_private_file(tmp_path: Path) -> None:
    folder = tmp_path / "notifications"
    handler = FileNotificationHandler(folder)
    assert handler.send_notification("ops", "Manual Review Required: X", "body text", "high")
    assert handler.send_notification("ops", "Manual Review Required: X", "second", "high")
    files = sorted(folder.iterdir())
    assert len(files) == 2
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    content = files[0].read_text(encoding="utf-8")
    assert "Subject: Manual Review Required: X" in content and content.endswith("body text")


def test_file_handler_returns_false_when_folder_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    handler = FileNotificationHandler(blocker)
    _, outcome = ManualReviewNotifier(handler).notify(collector_failure(), run_context=RUN_CONTEXT)
    assert not outcome.sent
    assert outcome.error == f"file:{blocker}: send_notification returned False"


# ----------------------------------------------------------------------- real channels

def test_email_reaches_local_smtp_server(smtp_server: SmtpSink,
                                         loguru_lines: list[str]) -> None:
    url = (f"mailto://dpo:{SMTP_PASSWORD}@127.0.0.1:{smtp_server.port}"
           "?from=dpo@plant.example&to=plant-data-team@plant.example&mode=insecure")
    handler = AppriseNotificationHandler([url], timeout=5)
    note, outcome = ManualReviewNotifier(handler).notify(collector_failure(),
                                                         run_context=RUN_CONTEXT)

    assert outcome.sent, outcome.error
    assert handler.failures == []
    assert smtp_server.logins == [("dpo", SMTP_PASSWORD)]  # credentials were really used
    (mail,) = smtp_server.messages
    assert mail["Subject"] == note.subject
    assert mail["To"] == "plant-data-team@plant.example"
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "  Row                  : 17" in text and "SUCCEEDED — restored version" in text
    assert text.replace("\r\n", "\n").strip() == note.message.strip()
    assert outcome.channel == (f"apprise[mailto://dpo:***@127.0.0.1:{smtp_server.port}"
                               "?from=dpo@plant.example&to=plant-data-team@plant.example"
                               "&mode=insecure]")
    logged = "\n".join(loguru_lines)
    assert "📧" in logged and SMTP_PASSWORD not in logged


def test_json_webhook_reaches_local_http_server(
        http_server: tuple[int, list[HttpRequest]], loguru_lines: list[str]) -> None:
    port, received = http_server
    url = f"json://dpo:{WEBHOOK_PASSWORD}@127.0.0.1:{port}/hooks/dpo-alerts"
    handler = AppriseNotificationHandler([url], timeout=5)
    assert handler.channels() == [f"json://dpo:***@127.0.0.1:{port}/***"]

    assert handler.send_notification("ops", "Manual Review Required: DataLoaderAgent",
                                     "line 1\nrow 17, column itemTotalQuantity", "high")
    (request,) = received
    assert request.path == "/hooks/dpo-alerts"
    assert request.body["title"] == "Manual Review Required: DataLoaderAgent"
    assert request.body["message"] == "line 1\nrow 17, column itemTotalQuantity"
    assert request.body["type"] == "failure"  # priority high
    auth = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
    assert auth == f"dpo:{WEBHOOK_PASSWORD}"
    assert WEBHOOK_PASSWORD not in "\n".join(loguru_lines)


def test_mattermost_slack_style_webhook_reaches_local_http_server(
        http_server: tuple[int, list[HttpRequest]], loguru_lines: list[str]) -> None:
    # Slack's own plugin always posts to hooks.slack.com; Mattermost's Slack-compatible
    # incoming webhook takes a host, so it is the chat webhook we can aim at 127.0.0.1.
    port, received = http_server
    handler = AppriseNotificationHandler([f"mmost://127.0.0.1:{port}/{WEBHOOK_TOKEN}"])
    assert handler.channels() == [f"mmost://127.0.0.1:{port}/***"]
    assert handler.send_notification("ops", "Manual Review Required: DataCollector",
                                     "ERROR #1: FILE_NOT_FOUND", "medium")
    (request,) = received
    assert request.path == f"/hooks/{WEBHOOK_TOKEN}"
    assert "Manual Review Required: DataCollector" in request.body["text"]
    assert "ERROR #1: FILE_NOT_FOUND" in request.body["text"]
    assert WEBHOOK_TOKEN not in "\n".join(loguru_lines)


def test_failing_channels_are_recorded_never_raise_and_never_leak_secrets(
        http_server: tuple[int, list[HttpRequest]], loguru_lines: list[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dead = free_port()  # bound and released: nothing listens there
    port, received = http_server
    urls = [f"json://127.0.0.1:{dead}/hooks/{DEAD_TOKEN}",
            f"mailto://dpo:{SMTP_PASSWORD}@127.0.0.1:{dead}?from=dpo@plant.example",
            "notaservice://whatever", f"json://127.0.0.1:{port}/hooks/alive"]
    apprise_handler = AppriseNotificationHandler(urls, timeout=2)
    mock = MockNotificationHandler()
    handler = CompositeNotificationHandler([apprise_handler, mock])

    _, outcome = ManualReviewNotifier(handler).notify(collector_failure(),
                                                      run_context=RUN_CONTEXT)

    assert not outcome.sent
    assert len(mock.sent) == 1 and len(received) == 1  # the working channels still delivered
    channels = [f.channel for f in apprise_handler.failures]
    assert channels == [f"json://127.0.0.1:{dead}/***",
                        f"mailto://dpo:***@127.0.0.1:{dead}?from=dpo@plant.example",
                        "notaservice://***"]
    assert "Connection" in apprise_handler.failures[0].reason
    assert "refused" in apprise_handler.failures[1].reason.lower()
    assert handler.failures == apprise_handler.failures
    everything = "\n".join([*loguru_lines, caplog.text, str(outcome.error),
                            *map(str, handler.failures)])
    for secret in (DEAD_TOKEN, SMTP_PASSWORD):
        assert secret not in everything
    assert "❌" in everything


def test_no_urls_is_a_recorded_failure() -> None:
    handler = AppriseNotificationHandler([])
    assert handler.send_notification("ops", "s", "m", "high") is False
    assert [f.reason for f in handler.failures] == ["no notification URL configured"]


@pytest.mark.parametrize(("url", "expected"), [
    ("mailto://user:pw-secret@smtp.example.com:587?from=a@b.example&mode=starttls",
     "mailto://user:***@smtp.example.com:587?from=a@b.example&mode=starttls"),
    ("mailtos://me:pw@mail.example/ops@plant.example",
     "mailtos://me:***@mail.example/ops@plant.example"),
    ("json://127.0.0.1:8080/hooks/abc", "json://127.0.0.1:8080/***"),
    ("jsons://hooks.example/p?token=XYZ&format=text",
     "jsons://hooks.example/***?token=***&format=text"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#general", "slack://***/***#***"),
    ("msteams://team/tokenA/tokenB/tokenC", "msteams://***/***"),
    ("rocket://webhookTOK@chat.example", "rocket://***@chat.example"),
    ("not a url", "***"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
