"""The checks file is refused before any data is read: every problem listed with its check and
key, CONFIG_ERROR, exit 2, nothing written; on a plant that ran before, a failed run recorded
and notified."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from checktools import records_plant, rows, write_checks
from pipelinetools import LEDGER, Clock, dpo, every_file, orchestrator

from dpo.checks.spec import ChecksError, load_checks
from dpo.config import load_settings, resolve_paths
from dpo.schema import load_schema

A = "records_201811.xlsx"
MISTAKES = {
    "unknown table": ('table = "recrods"\nnot_null = ["itemCode"]\n',
                      "check #1: table: 'recrods' is not a table of the schema"),
    "unknown column": ('table = "records"\nnot_null = ["itemCod"]\n',
                       "check #1: not_null: 'itemCod' is not a column of records"),
    "references a missing column": (
        'table = "records"\ncolumn = "itemCode"\nreferences = "codes.code"\n',
        "check #1: references: 'code' is not a column of codes"),
    "two rules": ('table = "records"\nnot_null = ["itemCode"]\nunique = ["itemCode"]\n',
                  "check #1: needs exactly one rule"),
    "bad expression": ('table = "records"\nname = "r"\nrule = "quantity >> 3"\n',
                       "check #1 ('r'): rule: expected a column, number or 'text' at position 11"),
    "unknown column in an expression": ('table = "records"\nrule = "qty > 3"\n',
                                        "check #1: rule: unknown column 'qty'"),
    "bad severity": ('table = "records"\nnot_null = ["itemCode"]\nseverity = "error"\n',
                     "check #1: severity: 'error' must be one of warn, fail, quarantine"),
    "quarantine a row count": ('table = "records"\nrow_count_change = 0.5\n'
                               'severity = "quarantine"\n',
                               "check #1: severity: quarantine is not allowed for "
                               "row_count_change"),
    "text against a number": ('table = "records"\nrule = "quantity = \'3\'"\n',
                              "check #1: rule: = compares a number with a text"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_mistake_is_named(tmp_path: Path, mistake: str) -> None:
    body, message = MISTAKES[mistake]
    root = records_plant(tmp_path, {A: rows(0, 3)})
    path = write_checks(root, "[[check]]\n" + body)
    schema = load_schema(root / "database" / "databaseSchemas.json", root)
    with pytest.raises(ChecksError) as raised:
        load_checks(path, schema)
    assert message in raised.value.message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 3)})
    path = write_checks(root, "".join("[[check]]\n" + MISTAKES[m][0] + "\n" for m in (
        "unknown table", "bad severity", "bad expression")))
    schema = load_schema(root / "database" / "databaseSchemas.json", root)
    with pytest.raises(ChecksError) as raised:
        load_checks(path, schema)
    assert [p.split(":")[0] for p in raised.value.problems] == [
        "check #1", "check #2", "check #3 ('r')"]


def test_a_bad_checks_file_on_a_new_plant_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 3)})
    write_checks(root, "[[check]]\n" + MISTAKES["bad severity"][0])
    before = list(every_file(root))
    done = dpo("run", "--root", root, "--no-notify")
    assert done.returncode == 2
    assert "checks file database/dataChecks.toml rejected: check #1: severity" in done.stderr
    assert list(every_file(root)) == before
    validated = dpo("validate", "--root", root)
    assert validated.returncode == 2 and "severity" in validated.stderr
    checked = dpo("check", "--root", root)
    assert checked.returncode == 2 and "severity" in checked.stderr


def test_a_checks_file_broken_between_runs_fails_the_run_recorded_and_notified(
        tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 3)})
    clock = Clock()
    first = orchestrator(root, clock=clock)
    assert first.run_pipeline()["overall_status"] == "success"
    write_checks(root, "[[check]]\n" + MISTAKES["two rules"][0])
    clock.advance()
    orch = orchestrator(root, clock=clock)
    result = orch.run_pipeline()
    assert result["overall_status"] == "failed"
    (error,) = result["collector_result"]["errors"]
    assert error["error_type"] == "CONFIG_ERROR" and "needs exactly one rule" in error["message"]
    assert orch.notification_handler.sent  # type: ignore[attr-defined]
    with sqlite3.connect(root / LEDGER) as db:
        statuses = [s for (s,) in db.execute("SELECT overall_status FROM runs ORDER BY rowid")]
    assert statuses == ["success", "failed"]


def test_no_checks_file_is_no_checks_and_checks_path_moves_it(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 3)})
    paths = resolve_paths(load_settings(root_dir=str(root)))
    assert paths.checks_file == root / "database" / "dataChecks.toml"
    schema = load_schema(paths.schema_path, root)
    assert load_checks(paths.checks_file, schema).checks == ()
    (root / "rules.toml").write_text('[[check]]\ntable = "records"\nnot_null = ["itemCode"]\n',
                                     encoding="utf-8")
    moved = resolve_paths(load_settings(root_dir=str(root), checks_path="rules.toml"))
    (check,) = load_checks(moved.checks_file, schema).checks
    assert (check.name, check.rule, check.severity) == ("not_null(itemCode)", "not_null", "warn")
