"""What each severity does to the published store, on real runs: warn publishes, fail keeps
the current version byte for byte, quarantine publishes exactly the other rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from checktools import (
    checks_of,
    failing,
    records_plant,
    rows,
    run_plant,
    write_checks,
    write_codes,
)
from conftest import write_source
from pipelinetools import ANNOTATIONS, NEWEST, PHASE1, Clock, detail, published

A, B = "records_201811.xlsx", "records_201812.xlsx"
RULE = 'rule = "quantity < 1000"\n'


def checks(root: Path, severity: str, body: str = RULE) -> None:
    write_checks(root, f'[[check]]\ntable = "records"\nname = "small"\nseverity = "{severity}"\n'
                 + body)


def published_table(root: Path, table: str) -> list[dict[str, object]]:
    stored = json.loads((root / ANNOTATIONS).read_text(encoding="utf-8"))[table]
    return pq.read_table(root / stored).to_pylist()  # type: ignore[no-any-return]


def test_warn_publishes_every_row_with_a_check_warning(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 5, quantity={1: 5000})})
    checks(root, "warn")
    result = run_plant(root)
    assert result["overall_status"] == "success"
    assert result["loader_result"]["data_validation"] == "passed"
    records = detail(result["loader_result"], "records")
    assert records["warnings_by_kind"] == {"check": 1} and records["changed"]
    (warning,) = records["warnings"]
    assert (warning["file"], warning["sheet"], warning["row"]) == (A, "Sheet1", 3)
    assert "'small'" in warning["message"] and "1 row(s) fail" in warning["message"]
    assert len(published_table(root, "records")) == 5


def test_fail_keeps_the_current_version_byte_for_byte_and_others_publish(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 5)})
    checks(root, "fail")
    clock = Clock()
    assert run_plant(root, clock)["overall_status"] == "success"
    before = published(root)
    write_source(root, B, rows(5, 5, quantity={2: 7000, 4: 8000}))
    write_codes(root, [f"CODE-{i:05d}" for i in range(10)])  # codes changes too
    clock.advance()
    result = run_plant(root, clock)
    assert result["overall_status"] == "failed"
    loader = result["loader_result"]
    assert loader["data_validation"] == "failed"
    records = detail(loader, "records")
    assert records["status"] == "error" and records["error"]["error_type"] == "CHECK_FAILED"
    assert "'small'" in records["error"]["message"] and f"{B} [Sheet1] row 4" in \
        records["error"]["message"]
    (check,) = loader["checks"]
    assert failing(check) == [(B, "Sheet1", 4), (B, "Sheet1", 6)]
    after = published(root)
    assert after["records"] == before["records"]  # byte for byte
    assert after["codes"] != before["codes"]  # the other table published as always
    assert any(a["action"] == "rollback" and a["table"] == "records"
               for a in loader["healing_actions"])
    final = next((root / NEWEST).glob("*_final_report.txt")).read_text(encoding="utf-8")
    assert "DATA CHECKS" in final and f"- {B} [Sheet1] row 4: {{'quantity': 7000}}" in final
    review = next((root / NEWEST).glob("*_DataLoader_manual_review_notification.txt"))
    first = review.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("records: check 'small' failed (2 row(s)")  # named first
    clock.advance()
    again = run_plant(root, clock)  # nothing changed: still refused, never a quiet success
    assert again["overall_status"] == "failed" and published(root)["records"] == before["records"]
    write_source(root, B, rows(5, 5))
    clock.advance()
    fixed = run_plant(root, clock)
    assert fixed["overall_status"] == "success" and len(published_table(root, "records")) == 10


def test_quarantine_publishes_exactly_the_other_rows(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 6, quantity={1: 5000, 4: 6000}),
                                    B: rows(6, 3, code={0: None})})
    write_checks(root, '[[check]]\ntable = "records"\nname = "small"\nseverity = "quarantine"\n'
                 + RULE + '\n[[check]]\ntable = "records"\nseverity = "quarantine"\n'
                 'not_null = ["itemCode"]\n')
    clock = Clock()
    result = run_plant(root, clock)
    records = detail(result["loader_result"], "records")
    assert records["status"] == "warning" and records["rows"] == 6
    kept = published_table(root, "records")
    assert [r["quantity"] for r in kept] == [100, 102, 103, 105, 107, 108]
    quarantine = pq.read_table(root / PHASE1 / "quarantine" / "records.checks.parquet").to_pylist()
    assert [(q["_check"], q["_source_file"], q["_sheet"], q["_excel_row"], q["quantity"])
            for q in quarantine] == [("small", A, "Sheet1", 3, 5000),
                                     ("small", A, "Sheet1", 6, 6000),
                                     ("not_null(itemCode)", B, "Sheet1", 2, 106)]
    clock.advance()
    assert detail(run_plant(root, clock)["loader_result"], "records")["changed"] is False
    write_source(root, A, rows(0, 6))
    write_source(root, B, rows(6, 3))
    clock.advance()
    clean = run_plant(root, clock)
    assert detail(clean["loader_result"], "records")["status"] == "success"
    assert len(published_table(root, "records")) == 9
    assert not (root / PHASE1 / "quarantine" / "records.checks.parquet").exists()


def test_a_references_check_runs_when_only_the_referenced_table_changed(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 4)})
    checks(root, "warn", 'column = "itemCode"\nreferences = "codes.itemCode"\n')
    clock = Clock()
    assert checks_of(run_plant(root, clock))["small"]["status"] == "passed"
    write_codes(root, ["CODE-00000", "CODE-00001", "CODE-00003"])
    clock.advance()
    result = run_plant(root, clock)
    check = checks_of(result)["small"]
    assert check["status"] == "failed" and failing(check) == [(A, "Sheet1", 4)]
    assert detail(result["loader_result"], "records")["changed"] is False


def test_no_table_changed_no_check_runs_and_an_edited_checks_file_runs_them(
        tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 4, quantity={2: 5000})})
    checks(root, "warn", 'rule = "quantity < 100000"\n')
    clock = Clock()
    assert checks_of(run_plant(root, clock))["small"]["status"] == "passed"
    clock.advance()
    assert run_plant(root, clock)["loader_result"]["checks"] == []  # the no-change run
    checks(root, "warn")
    clock.advance()
    edited = checks_of(run_plant(root, clock))["small"]
    assert edited["status"] == "failed" and failing(edited) == [(A, "Sheet1", 4)]


def test_quarantine_of_a_truncated_export_leaves_out_that_files_rows(tmp_path: Path) -> None:
    short = "records_201901.xlsx"
    root = records_plant(tmp_path, {A: rows(0, 10), B: rows(10, 10), short: rows(20, 2)})
    checks(root, "quarantine", "min_file_rows_ratio = 0.5\n")
    result = run_plant(root)
    assert detail(result["loader_result"], "records")["rows"] == 20
    assert [r["quantity"] for r in published_table(root, "records")] == list(range(100, 120))
    quarantine = pq.read_table(root / PHASE1 / "quarantine" / "records.checks.parquet").to_pylist()
    assert [(q["_check"], q["_source_file"], q["_excel_row"]) for q in quarantine] == [
        ("small", short, 2), ("small", short, 3)]
