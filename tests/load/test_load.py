"""Phase 2, the DataLoaderAgent: its result, its failures, and that a failed run publishes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from storetools import (
    DYNAMIC,
    TABLES,
    Clock,
    age,
    annotations,
    annotations_file,
    assert_consistent,
    collect,
    current_file,
    edit_static,
    load,
    loader_dir,
    phase1_file,
    plant_root,
    published_hashes,
    read_static,
    rename_value,
    run_both,
    static_path,
    tamper_keep_hash,
    tree_state,
)

from dpo.demo.plant import SCHEMA, write_xlsx
from dpo.results import LoaderResult, Status, TableResult


def by_table(result: LoaderResult) -> dict[str, TableResult]:
    return {t.table: t for t in result.tables}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def published(tmp_path: Path, clock: Clock) -> Path:
    root = plant_root(tmp_path / "plant")
    run_both(root, clock=clock)
    clock.advance()
    return root


# -- the result ----------------------------------------------------------------------------------
def test_first_run_result_counts_every_table(tmp_path: Path, clock: Clock) -> None:
    root = plant_root(tmp_path / "plant")
    collect(root)
    result = load(root, clock=clock)
    assert result.status is Status.SUCCESS
    assert result.tables_processed == len(TABLES)
    assert result.tables_changed == len(TABLES)
    assert result.tables_created == len(TABLES)
    assert result.data_validation == "passed"
    assert result.errors == () and result.files_moved == ()
    notes = annotations(root)
    _, _, item_rows = read_static(root, "itemInfo")
    for name, table in by_table(result).items():
        assert table.status is Status.SUCCESS and table.error is None
        assert table.changed and table.output == notes[name]
        assert table.content_hash == published_hashes(root)[name]
    assert by_table(result)["itemInfo"].rows == len(item_rows)
    assert by_table(result)["productRecords"].rows == 100  # 2 months x 50 rows
    assert by_table(result)["itemInfo"].files == (str(SCHEMA["staticDB"]["itemInfo"]["path"]),)
    assert by_table(result)["productRecords"].files == (
        "agents/shared_db/dynamicDatabase/productRecords.parquet",)
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert data["component"] == "DataLoaderAgent" and data["status"] == "success"
    assert data["tables_created"] == len(TABLES) and data["data_validation"] == "passed"
    assert [d["table"] for d in data["details"]] == list(TABLES)  # schema order
    assert data["execution_time"].count(":") == 2


def test_change_run_result_names_the_changed_table_only(published: Path, clock: Clock) -> None:
    old = current_file(published, "machineInfo")
    rename_value(published, "machineInfo", "manufacturerName", row=2)
    _, result = run_both(published, clock=clock)
    assert result.status is Status.SUCCESS and result.data_validation == "passed"
    assert (result.tables_processed, result.tables_changed, result.tables_created) == (
        len(TABLES), 1, 1)
    tables = by_table(result)
    assert [t for t, r in tables.items() if r.changed] == ["machineInfo"]
    assert tables["machineInfo"].output == (
        f"agents/shared_db/DataLoaderAgent/newest/{clock.stamp}_machineInfo.parquet")
    for name, table in tables.items():
        assert table.output == annotations(published)[name]
    assert result.files_moved == (f"agents/shared_db/DataLoaderAgent/historical_db/{old.name}",)


def test_published_versions_have_the_schema_dtypes(published: Path) -> None:
    for table in TABLES:
        section = "dynamicDB" if table in DYNAMIC else "staticDB"
        want = {c.replace("Resine", "Resin"): d
                for c, d in SCHEMA[section][table]["dtypes"].items()}  # type: ignore[union-attr]
        frame = pd.read_parquet(current_file(published, table))
        assert {c: str(frame[c].dtype) for c in frame.columns} == want, table


# -- failures: nothing is published for any table ----------------------------------------------
def _corrupt(root: Path) -> tuple[str, str, str | None]:
    path = static_path(root, "machineInfo")
    path.write_bytes(b"this is not a workbook\n" * 20)
    age(path)
    return "machineInfo", "FILE_READ_ERROR", None


def _truncated(root: Path) -> tuple[str, str, str | None]:
    path = static_path(root, "moldInfo")
    path.write_bytes(path.read_bytes()[:300])
    age(path)
    return "moldInfo", "FILE_READ_ERROR", None


def _missing(root: Path) -> tuple[str, str, str | None]:
    static_path(root, "resinInfo").unlink()
    return "resinInfo", "FILE_NOT_FOUND", None


def _bad_int(root: Path) -> tuple[str, str, str | None]:
    edit_static(root, "machineInfo", "machineTonnage", 1, "abc")
    return "machineInfo", "SCHEMA_MISMATCH", "machineTonnage"


def _bad_float(root: Path) -> tuple[str, str, str | None]:
    edit_static(root, "moldInfo", "itemsWeight", 0, "heavy")
    return "moldInfo", "SCHEMA_MISMATCH", "itemsWeight"


def _missing_column(root: Path) -> tuple[str, str, str | None]:
    sheet, header, rows = read_static(root, "moldSpecificationSummary")
    drop = header.index("moldNum")
    write_xlsx(static_path(root, "moldSpecificationSummary"), sheet,
               header[:drop] + header[drop + 1:], [r[:drop] + r[drop + 1:] for r in rows])
    return "moldSpecificationSummary", "SCHEMA_MISMATCH", "moldNum"


@pytest.mark.parametrize("breakage", [_corrupt, _truncated, _missing, _bad_int, _bad_float,
                                      _missing_column])
def test_a_failed_table_publishes_nothing_for_any_table(
    published: Path, clock: Clock, breakage: Callable[[Path], tuple[str, str, str | None]]
) -> None:
    # A real change elsewhere in the same run must not be published either.
    rename_value(published, "itemInfo", "itemName", row=0)
    table, error_type, column = breakage(published)
    notes = annotations_file(published).read_bytes()
    hashes = published_hashes(published)
    before = tree_state(loader_dir(published))

    _, result = run_both(published, clock=clock)

    assert result.status is Status.ERROR
    assert result.data_validation == "failed"
    assert result.tables_created == 0
    assert tree_state(loader_dir(published)) == before  # no file, no move, no log line
    assert annotations_file(published).read_bytes() == notes
    assert published_hashes(published) == hashes
    failed = by_table(result)[table]
    assert failed.status is Status.ERROR and failed.error is not None
    assert [t for t, r in by_table(result).items() if r.status is Status.ERROR] == [table]
    info = failed.error.to_dict()
    assert info["error_type"] == error_type
    assert info["table"] == table
    file_name = static_path(published, table).name
    assert info["file"] == file_name and file_name in info["message"]
    if column is not None:
        assert info["column"] == column and column in info["message"]
    assert [e.table for e in result.errors] == [table]
    detail = {d["table"]: d for d in result.to_dict()["details"]}[table]
    assert detail["status"] == "error" and detail["error"]["error_type"] == error_type


def test_bad_value_error_locates_row_and_value(published: Path, clock: Clock) -> None:
    edit_static(published, "machineInfo", "machineTonnage", 3, "abc")
    _, result = run_both(published, clock=clock)
    error = by_table(result)["machineInfo"].error
    assert error is not None
    (cell,) = error.cells
    assert (cell.file, cell.column, cell.value, cell.row) == (
        "machineInfo.xlsx", "machineTonnage", "abc", 5)  # header row 1, data row 4 -> Excel 5


def test_repairing_the_source_publishes_the_held_back_changes(
    published: Path, clock: Clock
) -> None:
    rename_value(published, "itemInfo", "itemName", row=0)
    old_value = edit_static(published, "machineInfo", "machineTonnage", 1, "abc")
    _, failed = run_both(published, clock=clock)
    assert failed.tables_created == 0
    edit_static(published, "machineInfo", "machineTonnage", 1, old_value)
    rename_value(published, "machineInfo", "manufacturerName", row=0)
    _, fixed = run_both(published, clock=clock)
    assert fixed.status is Status.SUCCESS and fixed.tables_created == 2
    assert sorted(t for t, r in by_table(fixed).items() if r.changed) == ["itemInfo",
                                                                          "machineInfo"]
    assert_consistent(published)


def test_missing_phase1_output_is_file_not_found(tmp_path: Path, clock: Clock) -> None:
    root = plant_root(tmp_path / "plant")
    result = load(root, clock=clock)  # Phase 1 never ran
    assert result.status is Status.ERROR and result.tables_created == 0
    for name in DYNAMIC:
        error = by_table(result)[name].error
        assert error is not None and error.error_type == "FILE_NOT_FOUND"
        assert f"{name}.parquet" in (error.file or "")
    assert not annotations_file(root).exists()


def test_tampered_phase1_output_is_refused(published: Path, clock: Clock) -> None:
    rename_value(published, "itemInfo", "itemName", row=0)
    collect(published)
    tamper_keep_hash(phase1_file(published, "purchaseOrders"), "poNo")
    before = tree_state(loader_dir(published))
    result = load(published, clock=clock)
    error = by_table(result)["purchaseOrders"].error
    assert error is not None and error.error_type == "INTEGRITY_ERROR"
    assert "purchaseOrders.parquet" in error.message
    assert result.tables_created == 0 and result.data_validation == "failed"
    assert tree_state(loader_dir(published)) == before


def test_changed_phase1_output_is_published(published: Path, clock: Clock) -> None:
    """A new month of reports and orders changes the two dynamic tables only."""
    plant_root(published, months=3)  # rewrites every source; only the new month differs
    collected, result = run_both(published, clock=clock)
    assert collected.status is Status.SUCCESS
    assert by_table(result)["productRecords"].rows == 150
    assert sorted(t for t, r in by_table(result).items() if r.changed) == sorted(DYNAMIC)
    assert result.tables_created == 2
    assert_consistent(published)
