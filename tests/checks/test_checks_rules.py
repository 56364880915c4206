"""Each rule kind on a real plant run: a table that passes, and one that fails with exactly
the Excel rows that break it (file, sheet, row) in loader_result.checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from checktools import checks_of, failing, records_plant, rows, run_plant, write_checks
from conftest import write_source
from pipelinetools import Clock

A, B = "records_201811.xlsx", "records_201812.xlsx"


def one_check(root: Path, body: str, severity: str = "warn") -> None:
    write_checks(root, f'[[check]]\ntable = "records"\nname = "c"\nseverity = "{severity}"\n'
                 + body)


def check_result(root: Path) -> dict[str, object]:
    result = run_plant(root)
    return checks_of(result)["c"]


CASES = {
    # rule: (check body, cells that break it {column: {row index in file A: value}}, rows hit)
    "not_null": ('not_null = ["itemCode", "quantity"]\n',
                 {"code": {2: None}, "quantity": {5: None}}, [4, 7]),
    "accepted_values": ('column = "workingShift"\naccepted_values = ["1", "2", "3"]\n',
                        {"shift": {1: "HC", 6: "4"}}, [3, 8]),
    "min_max": ('column = "quantity"\nmin = 100\nmax = 200\n',
                {"quantity": {0: 99, 4: 201, 7: None}}, [2, 6]),
    "rule": ('rule = "quantity >= weight AND NOT (workingShift = \'3\' AND quantity > 1000)"\n',
             {"weight": {3: 1000.5, 8: None}, "quantity": {5: 5000}, "shift": {5: 3}}, [5, 7]),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_row_level_rule_passes_then_fails_on_exactly_the_rows_that_break_it(
        tmp_path: Path, kind: str) -> None:
    body, breaks, excel_rows = CASES[kind]
    good = records_plant(tmp_path / "good", {A: rows(0, 10), B: rows(10, 10)})
    one_check(good, body)
    passed = check_result(good)
    assert (passed["status"], passed["failing_rows"], passed["examples"]) == ("passed", 0, [])
    bad = records_plant(tmp_path / "bad", {A: rows(0, 10, **breaks), B: rows(10, 10)})
    one_check(bad, body)
    found = check_result(bad)
    assert found["status"] == "failed" and found["rule"] == kind
    assert found["failing_rows"] == len(excel_rows)
    assert failing(found) == [(A, "Sheet1", r) for r in excel_rows]


def test_unique_names_every_row_of_each_duplicated_key_across_files(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 10, code={3: "DUP", 7: "TWICE"}),
                                    B: rows(10, 10, code={0: "DUP", 4: None, 5: None})})
    one_check(root, 'unique = ["itemCode"]\n')
    found = check_result(root)
    assert found["status"] == "failed" and found["failing_rows"] == 2  # NA keys never equal
    assert failing(found) == [(A, "Sheet1", 5), (B, "Sheet1", 2)]
    assert [e["values"] for e in found["examples"]] == [{"itemCode": "DUP"}] * 2
    clean = records_plant(tmp_path / "clean", {A: rows(0, 10), B: rows(10, 10)})
    one_check(clean, 'unique = ["itemCode", "workingShift"]\n')
    assert check_result(clean)["status"] == "passed"


def test_unique_over_two_columns_needs_both_equal(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 6, code={0: "K", 1: "K", 3: "K"},
                                            shift={0: 1, 1: 2, 3: 1})})
    one_check(root, 'unique = ["itemCode", "workingShift"]\n')
    found = check_result(root)
    assert failing(found) == [(A, "Sheet1", 2), (A, "Sheet1", 5)]


def test_references_to_a_master_table(tmp_path: Path) -> None:
    body = 'column = "itemCode"\nreferences = "codes.itemCode"\n'
    good = records_plant(tmp_path / "good", {A: rows(0, 10)})
    one_check(good, body)
    assert check_result(good)["status"] == "passed"
    every = [f"CODE-{i:05d}" for i in range(10)]
    bad = records_plant(tmp_path / "bad", {A: rows(0, 10, code={9: None})},
                        codes=[c for c in every if c not in ("CODE-00002", "CODE-00006")])
    one_check(bad, body)
    found = check_result(bad)
    assert failing(found) == [(A, "Sheet1", 4), (A, "Sheet1", 8)]  # NA (row 11) passes
    assert found["examples"][0]["values"] == {"itemCode": "CODE-00002"}


def test_row_count_change_compares_with_the_published_version(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 10)})
    one_check(root, "row_count_change = 0.5\n")
    clock = Clock()
    first = checks_of(run_plant(root, clock))["c"]
    assert first["status"] == "skipped" and first["reason"]
    write_source(root, B, rows(10, 4))  # 14 rows against 10: within +-50%
    clock.advance()
    within = checks_of(run_plant(root, clock))["c"]
    assert (within["status"], within["rows_before"], within["rows_after"]) == ("passed", 10, 14)
    write_source(root, "records_201901.xlsx", rows(14, 16))  # 30 against 14
    clock.advance()
    grown = checks_of(run_plant(root, clock))["c"]
    assert (grown["status"], grown["rows_before"], grown["rows_after"]) == ("failed", 14, 30)
    assert grown["examples"] == [] and grown["failing_rows"] == 0


def test_min_file_rows_ratio_names_the_truncated_export(tmp_path: Path) -> None:
    files = {A: rows(0, 10), B: rows(10, 10), "records_201901.xlsx": rows(20, 3)}
    root = records_plant(tmp_path, files)
    one_check(root, "min_file_rows_ratio = 0.5\n")
    found = check_result(root)
    assert found["status"] == "failed" and found["failing_rows"] == 3
    assert failing(found) == [("records_201901.xlsx", "Sheet1", r) for r in (2, 3, 4)]
    fine = records_plant(tmp_path / "fine", {A: rows(0, 10), B: rows(10, 6)})
    one_check(fine, "min_file_rows_ratio = 0.5\n")
    assert check_result(fine)["status"] == "passed"
