"""The orchestrator end to end on real plants: the seed's five Error Handling Scenarios,
notifications (mock and real local channels), secrets, and the health check.

Faults are planted in real Excel files; no phase is mocked. The only stand-in is the seed's
MockNotificationHandler.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pipelinetools import (
    ALL_TABLES,
    ANNOTATIONS,
    HISTORY,
    LEDGER,
    MONTHLY,
    NEWEST,
    ORCH,
    ORDERS,
    PHASE1,
    SHARED,
    STATIC,
    Clock,
    actions,
    change_log_blocks,
    corrupt,
    detail,
    every_file,
    free_port,
    http_receiver,
    make_plant,
    orchestrator,
    published,
    read_book,
    report_kinds,
    reports,
    run,
    set_cell,
    smtp_receiver,
)

from dpo.notify.channels import MockNotificationHandler
from dpo.observe.ledger import Ledger
from dpo.pipeline.health import pipeline_health_check

BAD_MONTH = MONTHLY / "monthlyReports_201812.xlsb"
MACHINES = STATIC / "machineInfo.xlsx"
SUCCESS_REPORTS = {"DataCollector": "success_report", "DataLoader": "success_report",
                   "DataPipelineOrchestrator": "final_report"}
COLLECTOR_REVIEW = "Manual Review Required: DataCollector"
LOADER_REVIEW = "Manual Review Required: DataLoaderAgent"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_plant(tmp_path)
    return tmp_path


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 5, 2, 6, 0))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


def plant_bad_cell(root: Path, value: Any = "abc") -> int:
    """'abc' into an Int64 column of the second monthly report; returns its Excel row."""
    return set_cell(root / BAD_MONTH, 9, "itemTotalQuantity", value)


def subjects(mock: MockNotificationHandler) -> list[str]:
    """The component part of each subject (the plant and the tables follow, after ' · ')."""
    return [note["subject"].split(" · ")[0] for note in mock.sent]


def newest_versions(root: Path) -> set[str]:
    return {p.name for p in (root / SHARED / "DataLoaderAgent" / "newest").glob("*.parquet")}


def good_run(root: Path, clock: Clock) -> dict[str, bytes]:
    result = run(root, clock=clock.at(6, 0))
    assert result["overall_status"] == "success"
    return published(root)


def assert_one_report_set(root: Path, stamp: str, expected: dict[str, str]) -> None:
    assert report_kinds(root) == expected
    assert all(name.startswith(f"{stamp}_") for name in reports(root)), reports(root)


# ------------------------------------------------------------- scenario (a): happy path

def test_happy_path_is_success_with_phase2_published_and_reports(root: Path,
                                                                 clock: Clock) -> None:
    mock = MockNotificationHandler()
    result = run(root, clock=clock.at(6, 0), handler=mock)

    collector, loader = result["collector_result"], result["loader_result"]
    assert result["overall_status"] == "success"
    assert collector["status"] == "success" and loader["status"] == "success"
    source_rows = sum(len(read_book(p)[2]) for p in sorted((root / MONTHLY).iterdir()))
    product = detail(collector, "productRecords")
    assert product["rows"] + product["duplicates_removed"] == source_rows == 120
    assert collector["files_processed"] == 4
    assert collector["records_count"] == sum(d["rows"] for d in collector["details"])
    assert collector["healing_actions"] == []
    assert loader["tables_created"] == 8 and loader["data_validation"] == "passed"
    assert {d["table"] for d in loader["details"]} == set(ALL_TABLES)
    assert datetime.fromisoformat(result["timestamp"]) == clock.when
    assert mock.sent == [] and result["notifications"] == []

    annotations = json.loads((root / ANNOTATIONS).read_text(encoding="utf-8"))
    assert set(annotations) == set(ALL_TABLES)
    assert all(path.startswith(f"agents/shared_db/DataLoaderAgent/newest/{clock.stamp}_")
               for path in annotations.values())
    assert_one_report_set(root, clock.stamp, SUCCESS_REPORTS)
    assert sorted(result["reports"]) == [f"{NEWEST.as_posix()}/{n}" for n in reports(root)]
    (block,) = change_log_blocks(root)
    assert "success" in block and "8 new versions" in block

    # A second, unchanged run: success, nothing published, run 1's reports archived.
    before = published(root)
    first_reports = reports(root)
    again = run(root, clock=clock.at(6, 5), handler=mock)
    assert again["overall_status"] == "success"
    assert again["loader_result"]["tables_created"] == 0
    assert published(root) == before
    assert reports(root, HISTORY) == first_reports
    assert_one_report_set(root, clock.stamp, SUCCESS_REPORTS)
    assert len(change_log_blocks(root)) == 2


# ------------------------------------------ scenario (b): collector fails, rollback ok

def test_collector_failure_with_good_previous_state_rolls_back_to_partial_success(
        root: Path, clock: Clock) -> None:
    before = good_run(root, clock)
    phase1 = (root / PHASE1 / "productRecords.parquet").read_bytes()
    first_reports = reports(root)
    excel_row = plant_bad_cell(root)

    mock = MockNotificationHandler()
    result = run(root, clock=clock.at(6, 5), handler=mock)

    collector, loader = result["collector_result"], result["loader_result"]
    assert result["overall_status"] == "partial_success"
    assert collector["status"] == "error"
    error = detail(collector, "productRecords")["error"]
    assert (error["error_type"], error["row"], error["column"]) == (
        "DATA_PROCESSING_ERROR", excel_row, "itemTotalQuantity")
    assert detail(collector, "purchaseOrders")["status"] == "success"
    assert actions(result) == [("rollback", "productRecords", True)]
    assert "kept previous verified output" in collector["healing_actions"][0]["detail"]
    # Phase 2 ran on the rolled-back table, found nothing new and published nothing.
    assert loader["status"] == "success" and loader["tables_processed"] == 8
    assert loader["tables_created"] == 0 and loader["data_validation"] == "passed"
    assert published(root) == before
    assert (root / PHASE1 / "productRecords.parquet").read_bytes() == phase1

    assert_one_report_set(root, clock.stamp, {
        "DataCollector": "manual_review_notification", "DataLoader": "success_report",
        "DataPipelineOrchestrator": "final_report"})
    assert reports(root, HISTORY) == first_reports
    blocks = change_log_blocks(root)
    assert len(blocks) == 2
    assert "partial_success" in blocks[1] and "rollback productRecords: ok" in blocks[1]
    assert subjects(mock) == [COLLECTOR_REVIEW]


def test_rollback_restores_a_damaged_phase1_output_from_the_published_version(
        root: Path, clock: Clock) -> None:
    before = good_run(root, clock)
    plant_bad_cell(root)
    (root / PHASE1 / "productRecords.parquet").write_bytes(b"half a parquet file")

    result = run(root, clock=clock.at(6, 5))

    assert result["overall_status"] == "partial_success"
    assert actions(result) == [("rollback", "productRecords", True)]
    assert "from published version" in result["collector_result"]["healing_actions"][0]["detail"]
    assert result["loader_result"]["status"] == "success"
    assert published(root) == before
    # The Phase 1 output is again a verified copy of the published version.
    assert (root / PHASE1 / "productRecords.parquet").read_bytes() == before["productRecords"]


# ------------------------------------- scenario (c): first run, collector fails, no copy

def _bad_cell(root: Path) -> tuple[str, str]:
    plant_bad_cell(root)
    return "productRecords", "DATA_PROCESSING_ERROR"


def _corrupt_order(root: Path) -> tuple[str, str]:
    corrupt(sorted((root / ORDERS).iterdir())[0])
    return "purchaseOrders", "FILE_READ_ERROR"


def _no_orders(root: Path) -> tuple[str, str]:
    shutil.rmtree(root / ORDERS)
    return "purchaseOrders", "FILE_NOT_FOUND"


@pytest.mark.parametrize("fault", [_bad_cell, _corrupt_order, _no_orders],
                         ids=["bad-cell", "corrupt-xlsx", "missing-folder"])
def test_first_run_collector_failure_cannot_roll_back_so_phase2_is_skipped(
        root: Path, clock: Clock, fault: Any) -> None:
    table, error_type = fault(root)
    mock = MockNotificationHandler()
    result = run(root, clock=clock.at(6, 0), handler=mock)

    assert result["overall_status"] == "failed"
    assert result["collector_result"]["status"] == "error"
    assert detail(result["collector_result"], table)["error"]["error_type"] == error_type
    assert actions(result) == [("rollback", table, False)]
    assert "nothing to roll back to" in result["collector_result"]["healing_actions"][0]["detail"]
    loader = result["loader_result"]
    assert loader["status"] == "skipped" and "nothing to roll back to" in loader["reason"]
    assert not (root / ANNOTATIONS).exists() and newest_versions(root) == set()

    assert_one_report_set(root, clock.stamp, {
        "DataCollector": "manual_review_notification",
        "DataLoader": "manual_review_notification",
        "DataPipelineOrchestrator": "final_report"})
    (block,) = change_log_blocks(root)
    assert "failed" in block and "Phase 2: skipped" in block
    assert f"rollback {table}: FAILED" in block
    assert subjects(mock) == [COLLECTOR_REVIEW, LOADER_REVIEW]
    skipped = mock.sent[1]["message"]
    assert "SKIPPED" in skipped and loader["reason"] in skipped


# -------------------------------------------- scenario (d): collector ok, loader fails

def _abc_in_static_int(root: Path) -> tuple[int | None, str]:
    return set_cell(root / MACHINES, 2, "machineTonnage", "abc"), "SCHEMA_MISMATCH"


def _corrupt_static(root: Path) -> tuple[int | None, str]:
    corrupt(root / MACHINES)
    return None, "FILE_READ_ERROR"


@pytest.mark.parametrize("fault", [_abc_in_static_int, _corrupt_static],
                         ids=["abc-in-Int64", "corrupt-xlsx"])
def test_loader_failure_publishes_nothing_and_keeps_pending_changes(
        root: Path, clock: Clock, fault: Any) -> None:
    before = good_run(root, clock)
    first_reports = reports(root)
    versions = newest_versions(root)
    loader_log = (root / SHARED / "DataLoaderAgent" / "change_log.txt").read_bytes()
    machines = (root / MACHINES).read_bytes()
    # A valid change Phase 2 would publish, next to the broken static table.
    total = set_cell(root / BAD_MONTH, 3, "itemTotalQuantity", 123_456)
    assert total == 5
    excel_row, error_type = fault(root)

    mock = MockNotificationHandler()
    result = run(root, clock=clock.at(6, 5), handler=mock)

    collector, loader = result["collector_result"], result["loader_result"]
    assert result["overall_status"] == "failed"
    assert collector["status"] == "success" and collector["data_updated"] is True
    assert collector["healing_actions"] == []
    assert loader["status"] == "error" and loader["data_validation"] == "failed"
    assert loader["tables_created"] == 0
    error = detail(loader, "machineInfo")["error"]
    assert error["error_type"] == error_type and error["file"] == "machineInfo.xlsx"
    if excel_row is not None:
        assert (error["row"], error["column"]) == (excel_row, "machineTonnage")
    assert published(root) == before
    assert newest_versions(root) == versions
    assert (root / SHARED / "DataLoaderAgent" / "change_log.txt").read_bytes() == loader_log

    assert_one_report_set(root, clock.stamp, {
        "DataCollector": "success_report", "DataLoader": "manual_review_notification",
        "DataPipelineOrchestrator": "final_report"})
    assert subjects(mock) == [LOADER_REVIEW]
    assert "machineInfo" in mock.sent[0]["message"]
    assert reports(root, HISTORY) == first_reports
    assert len(change_log_blocks(root)) == 2

    # Static table repaired: the pending productRecords change is published, nothing else.
    (root / MACHINES).write_bytes(machines)
    fixed = run(root, clock=clock.at(6, 10))
    assert fixed["overall_status"] == "success"
    assert fixed["loader_result"]["tables_created"] == 1
    after = published(root)
    assert after["productRecords"] != before["productRecords"]
    assert {k: v for k, v in after.items() if k not in ("productRecords", str(ANNOTATIONS))} == \
        {k: v for k, v in before.items() if k not in ("productRecords", str(ANNOTATIONS))}


# -------------------------------------------------------- scenario (e): both phases fail

def test_both_phases_fail_after_a_rollback_is_failed_and_publishes_nothing(
        root: Path, clock: Clock) -> None:
    before = good_run(root, clock)
    first_reports = reports(root)
    plant_bad_cell(root)
    set_cell(root / MACHINES, 2, "machineTonnage", "abc")
    mock = MockNotificationHandler()

    result = run(root, clock=clock.at(6, 5), handler=mock)

    assert result["overall_status"] == "failed"
    assert result["collector_result"]["status"] == "error"
    assert actions(result) == [("rollback", "productRecords", True)]
    assert result["loader_result"]["status"] == "error"  # Phase 2 ran, and failed
    assert detail(result["loader_result"], "machineInfo")["status"] == "error"
    assert published(root) == before
    assert_one_report_set(root, clock.stamp, {
        "DataCollector": "manual_review_notification",
        "DataLoader": "manual_review_notification",
        "DataPipelineOrchestrator": "final_report"})
    assert subjects(mock) == [COLLECTOR_REVIEW, LOADER_REVIEW]
    assert reports(root, HISTORY) == first_reports
    (_, block) = change_log_blocks(root)
    assert "failed" in block and "rollback productRecords: ok" in block
    final = (root / NEWEST / f"{clock.stamp}_DataPipelineOrchestrator_final_report.txt")
    text = final.read_text(encoding="utf-8")
    assert "FAILED" in text and "itemTotalQuantity" in text and "machineTonnage" in text


def test_both_fail_on_first_run_rollback_fails_and_phase2_is_skipped(
        root: Path, clock: Clock) -> None:
    plant_bad_cell(root)
    corrupt(root / MACHINES)

    result = run(root, clock=clock.at(6, 0))

    assert result["overall_status"] == "failed"
    assert actions(result) == [("rollback", "productRecords", False)]
    assert result["loader_result"]["status"] == "skipped"
    assert not (root / ANNOTATIONS).exists()
    assert report_kinds(root) == {"DataCollector": "manual_review_notification",
                                  "DataLoader": "manual_review_notification",
                                  "DataPipelineOrchestrator": "final_report"}
    (block,) = change_log_blocks(root)
    assert "failed" in block and "Phase 2: skipped" in block


# ------------------------------------------------------------------- notifications

def test_notification_is_filled_from_the_real_failing_run(root: Path, clock: Clock) -> None:
    good_run(root, clock)
    excel_row = plant_bad_cell(root)
    mock = MockNotificationHandler()

    result = run(root, clock=clock.at(6, 5), handler=mock, recipient="ops@plant.example")

    assert result["overall_status"] == "partial_success"
    (note,) = mock.sent
    assert note["subject"] == f"{COLLECTOR_REVIEW} · {root} · failed: productRecords"
    assert note["recipient"] == "ops@plant.example"
    assert note["priority"] == "high"
    collector = result["collector_result"]
    (error,) = collector["errors"]
    (cell,) = error["cells"]
    assert cell == {"file": "monthlyReports_201812.xlsb", "sheet": "Sheet1", "row": excel_row,
                    "column": "itemTotalQuantity", "value": "abc", "reason": cell["reason"],
                    "excel_error": ""}
    text = note["message"]

    def field(label: str, value: object) -> bool:
        return re.search(rf"^\s*{label}\s*:\s*{re.escape(str(value))}\s*$", text, re.M) is not None

    assert field("File", cell["file"]) and field("Sheet", "Sheet1")
    assert field("Row", excel_row) and field("Column", "itemTotalQuantity")
    assert field("Records", collector["records_count"])
    assert field("Files processed", collector["files_processed"])
    assert field("Execution time", collector["execution_time"])
    assert "'abc'" in text
    rollback = collector["healing_actions"][0]
    assert re.search(r"rollback\W+(of\W+)?productRecords\W+SUCCEEDED", text, re.I)
    assert rollback["detail"] in text
    run_id = Ledger(root / LEDGER).last_run()["run_id"]
    assert field("Run ID", run_id)
    assert "N/A" not in text and "None" not in text
    # The manual-review report file is the message that was sent.
    report = root / NEWEST / f"{clock.stamp}_DataCollector_manual_review_notification.txt"
    assert report.read_text(encoding="utf-8") == text
    assert result["notifications"] == [
        {"component": "DataCollector", "sent": True, "channel": "mock", "error": None}]


def test_disabled_notifications_send_nothing_but_reports_are_written(
        root: Path, clock: Clock) -> None:
    plant_bad_cell(root)
    mock = MockNotificationHandler()
    result = run(root, clock=clock.at(6, 0), handler=mock, enable_notifications=False)

    assert result["overall_status"] == "failed"
    assert mock.sent == []
    assert [(n["component"], n["sent"], n["channel"]) for n in result["notifications"]] == [
        ("DataCollector", False, "disabled"), ("DataLoaderAgent", False, "disabled")]
    assert report_kinds(root)["DataCollector"] == "manual_review_notification"
    collector_report = root / NEWEST / f"{clock.stamp}_DataCollector_manual_review_notification.txt"
    assert "itemTotalQuantity" in collector_report.read_text(encoding="utf-8")

    # The default channel (notification files) stays silent too; enabled, it writes them.
    notes = root / ORCH / "notifications"
    orchestrator(root, clock=clock.at(6, 1), handler=None).run_pipeline(
        enable_notifications=False)
    assert not notes.exists()
    from dpo.pipeline.orchestrator import DataPipelineOrchestrator

    DataPipelineOrchestrator(root_dir=root, clock=clock.at(6, 2)).run_pipeline()
    assert len(list(notes.iterdir())) == 2


SMTP_PASSWORD = "Sm7p-PASSW0RD-planted"
WEBHOOK_TOKEN = "w3bh00k-T0KEN-planted"
DEAD_TOKEN = "d3ad-T0KEN-planted"
SECRETS = (SMTP_PASSWORD, WEBHOOK_TOKEN, DEAD_TOKEN)


def test_real_email_and_webhook_are_delivered_and_secrets_stay_out_of_every_file(
        root: Path, clock: Clock, log_lines: list[str]) -> None:
    good_run(root, clock)
    excel_row = plant_bad_cell(root)
    dead = free_port()  # bound and released: nothing listens there
    with smtp_receiver("dpo", SMTP_PASSWORD) as smtp, http_receiver() as http:
        urls = [f"mailto://dpo:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}"
                "?from=dpo@plant.example&to=plant-data-team@plant.example&mode=insecure",
                f"json://127.0.0.1:{http.port}/hooks/{WEBHOOK_TOKEN}",
                f"json://127.0.0.1:{dead}/hooks/{DEAD_TOKEN}"]
        result = orchestrator(root, clock=clock.at(6, 5), handler=None,
                              notify_urls=urls).run_pipeline()

    assert result["overall_status"] == "partial_success"  # a dead channel changes nothing
    assert smtp.logins == [("dpo", SMTP_PASSWORD)]
    (mail,) = smtp.messages
    assert mail["Subject"].startswith(f"{COLLECTOR_REVIEW} · ")
    assert mail["To"] == "plant-data-team@plant.example"
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert "itemTotalQuantity" in body and re.search(rf"Row\s*:\s*{excel_row}\b", body)
    (hook,) = http.requests
    assert hook.path == f"/hooks/{WEBHOOK_TOKEN}"
    assert hook.body["title"] == mail["Subject"] and "'abc'" in hook.body["message"]

    (outcome,) = result["notifications"]
    assert outcome["component"] == "DataCollector" and outcome["sent"] is False
    assert f"json://127.0.0.1:{dead}/***" in outcome["error"]
    final = (root / NEWEST / f"{clock.stamp}_DataPipelineOrchestrator_final_report.txt")
    assert "NOT sent" in final.read_text(encoding="utf-8")

    checked = 0
    for path in every_file(root):
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} found in {path}"
        checked += 1
    assert checked > 20 and (root / LEDGER).exists()
    everything = "\n".join([json.dumps(result), *log_lines])
    assert "📧" in everything
    for secret in SECRETS:
        assert secret not in everything


# ---------------------------------------------------------------------- health check

def test_health_check_before_and_after_runs(root: Path, clock: Clock) -> None:
    orch = orchestrator(root, clock=clock.at(6, 0))
    fresh = pipeline_health_check(orch)
    assert fresh["last_run"] is None
    # Before the first run there are no annotations yet: the seed's check calls that degraded.
    assert fresh["paths_accessible"] is False and fresh["service_status"] == "degraded"
    assert [r for r in fresh["reasons"] if "annotation_path" in r]
    disk = fresh["disk_space"]
    inputs = sum(p.stat().st_size for p in (root / "database").rglob("*.xls*"))
    assert disk["input_bytes"] == inputs > 0
    assert disk["enough_for_run"] is (disk["free_bytes"] >= 2 * inputs) is True
    assert fresh["write_permission"] is True

    orch.run_pipeline()
    healthy = pipeline_health_check(orch)
    assert healthy["paths_accessible"] is True
    assert healthy["service_status"] == "healthy" and healthy["reasons"] == []
    assert healthy["last_run"]["status"] == "success"
    assert datetime.fromisoformat(healthy["last_run"]["started_at"]) == clock.when

    plant_bad_cell(root)
    run(root, clock=clock.at(6, 5))  # partial_success
    after = pipeline_health_check(orch)
    assert after["last_run"]["status"] == "partial_success"
    assert after["last_run"]["started_at"].startswith("2024-05-02T06:05")
    assert after["service_status"] == "degraded"
    assert any("partial_success" in r for r in after["reasons"])

    (root / "database" / "databaseSchemas.json").rename(root / "database" / "old.json")
    broken = pipeline_health_check(orch)
    assert broken["paths_accessible"] is False and broken["service_status"] == "degraded"
    assert any("databaseSchemas_path" in r for r in broken["reasons"])


def test_health_check_reports_an_output_folder_that_cannot_be_written(root: Path) -> None:
    (root / "blocker").write_text("a file where the output folder should be")
    report = pipeline_health_check(root_dir=str(root), default_dir="blocker/shared_db",
                                   annotation_path="blocker/shared_db/a.json")
    assert report["write_permission"] is False
    assert report["service_status"] == "degraded"
    assert any("write permission" in r for r in report["reasons"])


def test_a_rejected_schema_writes_nothing_and_leaves_no_run_behind(root: Path) -> None:
    orch = orchestrator(root, databaseSchemas_path="database/missing.json")
    result = orch.run_pipeline()  # bad configuration is a result, never an exception
    assert result["overall_status"] == "failed"
    (error,) = result["collector_result"]["errors"]
    assert error["error_type"] == "CONFIG_ERROR" and "missing.json" in error["message"]
    assert result["loader_result"]["status"] == "skipped"
    assert not (root / "agents").exists()  # a plant that never ran: nothing created
    assert pipeline_health_check(root_dir=str(root))["last_run"] is None
