"""Data checks where people watch runs: the ledger (schema v6, migrated from v5), the metrics,
the dashboard panel and `dpo serve`'s /metrics and /runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from checktools import records_plant, rows, run_plant, write_checks
from conftest import write_source
from pipelinetools import LEDGER, Clock
from servetools import sample, serve

from dpo.observe.dashboard import render
from dpo.observe.ledger import Ledger
from dpo.observe.ledgerschema import SCHEMA_VERSION
from dpo.observe.metrics import compute, prometheus_text

A, B = "records_201811.xlsx", "records_201812.xlsx"
CHECKS = """
[[check]]
table = "records"
name = "small"
rule = "quantity < 1000"

[[check]]
table = "records"
not_null = ["itemCode"]
"""


def two_runs(root: Path) -> None:
    """A first run where both checks pass, then one where `small` fails on 2 rows."""
    records_plant(root, {A: rows(0, 4)})
    write_checks(root, CHECKS)
    clock = Clock()
    run_plant(root, clock)
    write_source(root, B, rows(4, 4, quantity={0: 5000, 3: 6000}))
    clock.advance()
    run_plant(root, clock)
    clock.advance()
    run_plant(root, clock)  # nothing changed: runs no check


def test_the_ledger_metrics_and_dashboard_show_each_check(tmp_path: Path) -> None:
    two_runs(tmp_path)
    ledger = Ledger(tmp_path / LEDGER)
    assert ledger.version() == SCHEMA_VERSION == 6
    snap = ledger.snapshot()
    latest, failed, passed = snap.runs
    assert latest["checks_by_status"] == "{}"
    assert failed["checks_by_status"] == '{"failed":1,"passed":1}'
    assert passed["checks_by_status"] == '{"passed":2}'
    small = [(c["run_id"], c["status"], c["failing_rows"]) for c in snap.checks
             if c["check_name"] == "small"]
    assert sorted(small) == sorted([(passed["run_id"], "passed", 0),
                                    (failed["run_id"], "failed", 2)])
    text = prometheus_text(compute(snap))
    assert 'dpo_check_failed_rows{table="records",check="small"} 2' in text
    assert 'dpo_check_failed_rows{table="records",check="not_null(itemCode)"} 0' in text
    assert 'dpo_checks{status="failed"} 1' in text and 'dpo_checks{status="passed"} 1' in text
    page = render(snap)
    assert "Data checks (failing rows per run that ran them)" in page
    assert "<td>records</td><td>small</td><td>warn</td><td>2 failing</td><td>ok</td>" in page


def test_a_v5_ledger_gets_its_checks_from_the_recorded_results(tmp_path: Path) -> None:
    two_runs(tmp_path)
    path = tmp_path / LEDGER
    with sqlite3.connect(path) as conn:  # what dpo before the checks left behind
        conn.execute("DROP TABLE run_checks")
        conn.execute("ALTER TABLE runs DROP COLUMN checks_by_status")
        conn.execute("PRAGMA user_version=5")
    conn.close()
    snap = Ledger(path).snapshot()
    assert Ledger(path).version() == 6
    assert [r["checks_by_status"] for r in snap.runs] == [
        "{}", '{"failed":1,"passed":1}', '{"passed":2}']
    assert sorted((c["check_name"], c["failing_rows"]) for c in snap.checks) == [
        ("not_null(itemCode)", 0), ("not_null(itemCode)", 0), ("small", 0), ("small", 2)]


def test_dpo_serve_exports_the_checks(tmp_path: Path) -> None:
    root = tmp_path / "plant"
    root.mkdir()
    two_runs(root)
    with serve(root) as served:
        served.idle_after(1)
        metrics = served.metrics()
        assert sample(metrics, "dpo_check_failed_rows", table="records", check="small") == 2
        assert sample(metrics, "dpo_checks", status="failed") == 1
        runs = [r for r in served.runs() if r["kind"] == "run" and r["checks"]]
        assert {"name": "small", "table": "records", "rule": "rule", "severity": "warn",
                "status": "failed", "failing_rows": 2} in runs[0]["checks"]
        served.stop()
