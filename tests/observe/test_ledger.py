"""The run ledger with real runs: every run recorded, killed runs marked, v1 migrated, WAL.

Runs are real orchestrator runs on a small generated plant; a failure is planted by writing
'abc' into an Int64 cell of a real monthly report (`break_report`). `make_history` is shared
with test_metrics.py and test_dashboard.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from python_calamine import CalamineWorkbook

from dpo.demo.plant import generate_plant, write_monthly_report, write_xlsb
from dpo.notify.channels import MockNotificationHandler
from dpo.observe.ledger import Ledger
from dpo.observe.ledgerschema import SCHEMA_VERSION
from dpo.pipeline.health import pipeline_health_check
from dpo.pipeline.orchestrator import DataPipelineOrchestrator

OUTPUT = Path("agents") / "shared_db" / "DataPipelineOrchestrator"
BAD_COLUMN = "itemTotalQuantity"  # an Int64 column of productRecords

# State of the first monthly report before each run -> the overall status docs/behaviour.md, section 6 gives.
EXPECTED = {"broken-first": "failed", "good": "success", "broken": "partial_success"}


def ledger_path(root: Path) -> Path:
    return root / OUTPUT / "runs.sqlite"


def run(root: Path, **options: Any) -> dict[str, Any]:
    orch = DataPipelineOrchestrator(root_dir=root, notification_handler=MockNotificationHandler(),
                                    **options)
    result: dict[str, Any] = orch.run_pipeline()
    return result


def break_report(path: Path) -> bytes:
    """Write 'abc' into one Int64 cell of a real monthly report; return the good bytes."""
    good = path.read_bytes()
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("Sheet1").to_python()
    rows[3][rows[0].index(BAD_COLUMN)] = "abc"  # Excel row 4
    write_xlsb(path, "Sheet1", rows[0], rows[1:])
    return good


def make_history(root: Path, states: tuple[str, ...]) -> list[dict[str, Any]]:
    """Run the pipeline once per state ('good' or 'broken' first monthly report); results."""
    plant = generate_plant(root, months=2, rows_per_month=40)
    report = plant.monthly_files[0]
    good = report.read_bytes()
    results = []
    for state in states:
        if state == "good":
            report.write_bytes(good)
        else:
            break_report(report)
        results.append(run(root))
    return results


def cli(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "dpo.cli", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == expect, proc.stderr[-2000:]
    return proc


STATES = ("broken", "good", "broken", "good")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A failed, a successful, a rolled-back (partial_success) and a successful run."""
    root = tmp_path_factory.mktemp("history")
    return root, make_history(root, STATES)


def test_scenario_statuses_are_the_decision_matrix(history: tuple[Path, list[Any]]) -> None:
    _, results = history
    assert [r["overall_status"] for r in results] == [
        "failed", "success", "partial_success", "success"]


def test_history_json_reports_exactly_the_runs(history: tuple[Path, list[Any]]) -> None:
    root, results = history
    runs = json.loads(cli("history", "--root", str(root), "--json").stdout)
    assert len(runs) == len(results)
    for record, result in zip(runs, reversed(results), strict=True):  # newest first
        assert record["started_at"] == result["started_at"]
        assert record["finished_at"] == result["timestamp"]
        assert record["state"] == "finished"
        assert record["overall_status"] == result["overall_status"]
        assert record["duration_s"] == result["duration_seconds"]
        assert record["phases"]["collector"] == {
            "status": result["collector_result"]["status"],
            "seconds": result["collector_result"]["execution_seconds"]}
        assert record["phases"]["loader"]["status"] == result["loader_result"]["status"]
        assert record["loader_status"] == result["loader_result"]["status"]
        rollbacks = [h for h in result["collector_result"]["healing_actions"]
                     if h["action"] == "rollback"]
        assert record["rollbacks"] == len(rollbacks)
        assert record["rollbacks_failed"] == sum(not h["success"] for h in rollbacks)
        assert [(h["action"], h["table"], h["success"]) for h in record["healing_actions"]] == [
            (h["action"], h["table"], h["success"]) for h in rollbacks]
        assert record["notifications_sent"] == sum(n["sent"] for n in result["notifications"])
        assert [n["component"] for n in record["notifications"]] == [
            n["component"] for n in result["notifications"]]
        tables = {(t["phase"], t["table"]): t for t in record["tables"]}
        for phase, key in (("collector", "collector_result"), ("loader", "loader_result")):
            for detail in result[key]["details"]:
                t = tables[(phase, detail["table"])]
                assert (t["status"], t["rows"], t["duplicates_removed"], t["rows_rejected"],
                        t["changed"]) == (detail["status"], detail["rows"],
                                          detail["duplicates_removed"], detail["rows_rejected"],
                                          detail["changed"])
    failed, partial = runs[3], runs[1]
    assert failed["loader_status"] == "skipped" and failed["phases"]["loader"]["seconds"] is None
    assert failed["rollbacks_failed"] == 1 and partial["rollbacks_failed"] == 0
    for record in (failed, partial):
        (error,) = record["errors"]
        assert error["error_type"] == "DATA_PROCESSING_ERROR"
        assert error["file"].endswith("monthlyReports_201811.xlsb")
        assert error["column"] == BAD_COLUMN and error["table"] == "productRecords"
    assert runs[0]["errors"] == [] and runs[0]["errors_count"] == 0


def test_history_limit_and_table(history: tuple[Path, list[Any]]) -> None:
    root, _ = history
    newest = json.loads(cli("history", "--root", str(root), "--json", "--limit", "2").stdout)
    assert [r["overall_status"] for r in newest] == ["success", "partial_success"]
    text = cli("history", "--root", str(root)).stdout
    assert "partial_success" in text and "failed" in text
    nowhere = cli("history", "--root", str(root / "nowhere"), "--json", expect=2)
    assert "no plant at" in nowhere.stderr  # #12 item 6
    (root / "fresh" / "database").mkdir(parents=True)  # a plant that never ran
    (root / "fresh" / "database" / "databaseSchemas.json").write_text("{}", encoding="utf-8")
    empty = cli("history", "--root", str(root / "fresh"), "--json").stdout
    assert json.loads(empty) == []


def test_health_check_reads_the_last_run(history: tuple[Path, list[Any]]) -> None:
    root, results = history
    last = pipeline_health_check(root_dir=str(root))["last_run"]
    assert last["status"] == "success" and last["started_at"] == results[-1]["started_at"]


def test_killed_run_is_interrupted_when_the_next_run_starts(tmp_path: Path) -> None:
    generate_plant(tmp_path, months=2, rows_per_month=40)
    first = run(tmp_path)
    # New data, so the killed run reaches the publish step.
    write_monthly_report(tmp_path / "database" / "dynamicDatabase" / "monthlyReports_history"
                         / "monthlyReports_201901.xlsb", month="2019-01", n_rows=40)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPO_")}
    env["DPO_CRASH_AT"] = "publish:annotations:written"
    script = ("import sys\nfrom dpo.notify.channels import MockNotificationHandler\n"
              "from dpo.pipeline.orchestrator import DataPipelineOrchestrator\n"
              "DataPipelineOrchestrator(root_dir=sys.argv[1], notification_handler="
              "MockNotificationHandler()).run_pipeline()\n")
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env,
                            capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr[-2000:]
    before = json.loads(cli("history", "--root", str(tmp_path), "--json").stdout)
    assert [r["state"] for r in before] == ["running", "finished"]
    killed_id = before[0]["run_id"]

    after = run(tmp_path)
    runs = json.loads(cli("history", "--root", str(tmp_path), "--json").stdout)
    assert [(r["state"], r["overall_status"]) for r in runs] == [
        ("finished", after["overall_status"]), ("interrupted", "interrupted"),
        ("finished", first["overall_status"])]
    assert runs[1]["run_id"] == killed_id and runs[1]["finished_at"] is None
    assert after["overall_status"] == "success"


def _v1_ledger(path: Path, result: dict[str, Any]) -> None:
    """A ledger exactly as schema v1 wrote it: one finished run and one left running."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("""CREATE TABLE runs (
               run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
               state TEXT NOT NULL, overall_status TEXT, collector_status TEXT,
               loader_status TEXT, duration_s REAL, collector_s REAL, loader_s REAL,
               pid INTEGER, result_json TEXT)""")
        conn.execute("CREATE INDEX runs_started ON runs(started_at)")
        conn.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
            "v1-finished", result["started_at"], result["timestamp"], "finished",
            result["overall_status"], result["collector_result"]["status"],
            result["loader_result"]["status"], result["duration_seconds"],
            result["collector_result"]["execution_seconds"],
            result["loader_result"].get("execution_seconds"), 1, json.dumps(result)))
        conn.execute("INSERT INTO runs(run_id, started_at, state, pid) VALUES (?,?,?,?)",
                     ("v1-running", "2030-01-01T00:00:00", "running", 2))
        conn.execute("PRAGMA user_version=1")
    conn.close()


def test_v1_ledger_migrates_forward(tmp_path: Path, history: tuple[Path, list[Any]]) -> None:
    _, results = history
    partial = results[2]  # a rolled-back run: healing actions, an error, a notification
    path = tmp_path / "runs.sqlite"
    _v1_ledger(path, partial)
    ledger = Ledger(path)
    runs = ledger.runs()
    assert ledger.version() == SCHEMA_VERSION == 6
    assert [r["run_id"] for r in runs] == ["v1-running", "v1-finished"]
    migrated = runs[1]
    assert migrated["warnings_count"] == partial["warnings"]["total"]  # v4, from the result
    assert migrated["overall_status"] == "partial_success"
    assert (migrated["rollbacks"], migrated["rollbacks_failed"], migrated["errors_count"],
            migrated["notifications_sent"]) == (1, 0, 1, 1)
    assert migrated["started_epoch"] == datetime.fromisoformat(partial["started_at"]).timestamp()
    snap = ledger.snapshot(detail=True)
    assert snap.table_stats["v1-finished"]["productRecords"][4] == 1  # failed in Phase 1
    assert [(h["action"], h["success"]) for h in snap.healing] == [("rollback", True)]
    assert [e["column_name"] for e in snap.errors] == [BAD_COLUMN]
    assert {t["table_name"] for t in snap.tables} >= {"productRecords", "itemInfo"}
    assert ledger.result("v1-finished") == partial
    # The next run marks what v1 left running as interrupted.
    assert ledger.start("next", datetime.now()) == ["v1-running"]
    ledger.close()
    states = {r["run_id"]: r["state"] for r in ledger.runs()}
    assert states == {"next": "running", "v1-running": "interrupted", "v1-finished": "finished"}
    Ledger(path).runs()  # opening again: no second migration
    assert ledger.version() == 6


def test_early_v2_ledger_without_table_stats_is_repaired(
        tmp_path: Path, history: tuple[Path, list[Any]]) -> None:
    _, results = history
    path = tmp_path / "runs.sqlite"
    ledger = Ledger(path)
    ledger.start("old", datetime.now())
    ledger.finish("old", results[2])
    ledger.close()
    with sqlite3.connect(path) as conn:  # what an early build of schema v2 left behind
        conn.execute("ALTER TABLE runs DROP COLUMN table_stats")
        conn.execute("PRAGMA user_version=2")
    conn.close()
    snap = Ledger(path).snapshot()
    assert Ledger(path).version() == SCHEMA_VERSION
    assert snap.table_stats["old"]["productRecords"][4] == 1  # backfilled: failed in Phase 1
    assert snap.runs[0]["rollbacks"] == 1


def test_readers_are_not_blocked_by_a_writer(tmp_path: Path) -> None:
    """WAL: an open read transaction neither blocks the run's writes nor sees them half-done."""
    ledger = Ledger(tmp_path / "runs.sqlite")
    ledger.start("one", datetime.now())
    ledger.close()
    with sqlite3.connect(ledger.path, timeout=0.1, isolation_level=None) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        ledger.start("two", datetime.now())  # would raise "database is locked" without WAL
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 1  # its snapshot
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    reader.close()
    ledger.close()


@pytest.mark.parametrize("damage", ["folder", "garbage"])
def test_a_broken_ledger_never_fails_the_run(tmp_path: Path, damage: str) -> None:
    generate_plant(tmp_path, months=1, rows_per_month=20)
    path = ledger_path(tmp_path)
    if damage == "folder":
        path.mkdir(parents=True)  # a folder where the database should be
    else:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not a database" * 100)
    result = run(tmp_path)  # the ledger and the metrics log their errors
    assert result["overall_status"] == "success"
    assert result["loader_result"]["tables_created"] > 0
    if damage == "garbage":
        assert "unreadable" in cli("history", "--root", str(tmp_path), expect=1).stderr


def test_read_commands_never_migrate_an_older_ledger(
        tmp_path: Path, history: tuple[Path, list[Any]]) -> None:
    """A ledger of an older schema (dpo upgraded, no run since): reads say what to do, in one
    line, and leave it as it is; the next run upgrades it."""
    _, results = history
    generate_plant(tmp_path, months=1, rows_per_month=20)
    path = ledger_path(tmp_path)
    _v1_ledger(path, results[2])
    before = path.read_bytes()

    refused = cli("history", "--root", str(tmp_path), expect=1)
    assert refused.stderr == (f"error: run ledger {path} has schema v1, older than this dpo's "
                              f"v{SCHEMA_VERSION}: the next `dpo run` upgrades it (read "
                              "commands never write)\n")
    cli("metrics", "--root", str(tmp_path), expect=1)
    health = pipeline_health_check(root_dir=tmp_path)
    assert health["last_run"] is None
    assert any("schema v1" in reason for reason in health["reasons"])
    assert path.read_bytes() == before and Ledger(path).version() == 1

    assert run(tmp_path)["overall_status"] == "success"
    runs = json.loads(cli("history", "--root", str(tmp_path), "--json").stdout)
    assert {r["run_id"] for r in runs} >= {"v1-finished", "v1-running"}
