"""Phase 1, the DataCollector, on real Excel files (docs/behaviour.md, sections 2-4), rule by rule."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import (
    SMALL_COLUMNS,
    SMALL_DTYPES,
    SOURCE_HEADER,
    age,
    collect,
    dynamic_entry,
    good_row,
    make_paths,
    output_path,
    source_dir,
    table_result,
    write_schema,
    write_source,
)

from dpo.errors import ErrorType
from dpo.excel.discover import discover
from dpo.fsio import TMP_MARK
from dpo.results import Status
from dpo.schema import load_schema

TS = pd.Timestamp


def _read(root: Path, table: str = "records") -> pd.DataFrame:
    return pd.read_parquet(output_path(root, table))


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in frame.dtypes.items()}


def _schema_dtypes(root: Path, table: str) -> dict[str, str]:
    schema = load_schema(root / "database" / "databaseSchemas.json", root)
    return dict(schema.table(table).dtypes)


def _no_temp_files(root: Path) -> None:
    leftovers = [p for p in (root / "agents").rglob("*") if TMP_MARK in p.name]
    assert leftovers == []


# --- the real samples and a generated plant ------------------------------------------------


def test_real_samples(samples_root: Path) -> None:
    result = collect(samples_root)
    assert result.status is Status.SUCCESS, result.to_dict()
    assert table_result(result, "productRecords").rows == 697
    assert table_result(result, "purchaseOrders").rows == 65
    assert result.records_count == 697 + 65
    assert result.files_processed == 3
    for table in ("productRecords", "purchaseOrders"):
        frame = _read(samples_root, table)
        assert _dtypes(frame) == _schema_dtypes(samples_root, table)
        assert list(frame.columns) == list(_schema_dtypes(samples_root, table))
    records = _read(samples_root, "productRecords")
    assert records["recordDate"].notna().all()
    assert records["recordDate"].min() >= TS("2018-11-01")
    assert records["recordDate"].max() < TS("2018-12-01")
    # Shifts are upper-cased text; codes that were numbers are integer text, never "x.0".
    assert set(records["workingShift"].dropna()) <= {"1", "2", "3", "HC"}
    for column in ("plasticResinCode", "colorMasterbatchCode", "additiveMasterbatchCode"):
        assert not records[column].dropna().str.endswith(".0").any(), column
    orders = _read(samples_root, "purchaseOrders")
    assert orders["poReceivedDate"].notna().all()
    assert not orders["poNo"].dropna().str.endswith(".0").any()
    _no_temp_files(samples_root)


def test_generated_plant_xlsb_and_xlsx(plant) -> None:
    root = plant.root
    result = collect(root)
    assert result.status is Status.SUCCESS, result.to_dict()
    records = table_result(result, "productRecords")
    orders = table_result(result, "purchaseOrders")
    assert records.files == tuple(p.name for p in plant.monthly_files)
    assert all(name.endswith(".xlsb") for name in records.files)
    assert orders.files == tuple(sorted(p.name for p in plant.po_files))
    assert all(name.endswith(".xlsx") for name in orders.files)
    assert records.rows + records.duplicates_removed == 2 * 60
    assert records.rows > 0 and orders.rows > 0
    for table in ("productRecords", "purchaseOrders"):
        frame = _read(root, table)
        assert _dtypes(frame) == _schema_dtypes(root, table)
    frame = _read(root, "productRecords")
    assert "plasticResine" not in frame.columns
    # Resin codes stored as numbers (10-digit ones too) are integer text beside text codes.
    codes = set(frame["plasticResinCode"].dropna())
    assert codes and all(c.isdigit() or c == "101104FJ" for c in codes)
    assert frame["workingShift"].dropna().str.fullmatch(r"[123]|HC").all()
    # Month order: the first file's month comes first in the output.
    assert frame["recordDate"].iloc[0] < frame["recordDate"].iloc[-1]
    _no_temp_files(root)


# --- 1. discover -------------------------------------------------------------------------------


def test_discovery_order_by_date_after_first_underscore(tmp_path: Path) -> None:
    write_schema(tmp_path, {"records": dynamic_entry(name_start="records")})
    # By name, "records-a_…" sorts first; by the date after the first "_", "records-b_…" does.
    write_source(tmp_path, "records-a_201812.xlsx", [good_row(1)])
    write_source(tmp_path, "records-b_201811.xlsx", [good_row(2)])
    write_source(tmp_path, "records_201901.xlsx", [good_row(3)])
    write_source(tmp_path, "records_201811.xlsx", [good_row(4)])
    write_source(tmp_path, "records_nodate.xlsx", [good_row(5)])
    result = collect(tmp_path)
    expected = ["records-b_201811.xlsx", "records_201811.xlsx", "records-a_201812.xlsx",
                "records_201901.xlsx", "records_nodate.xlsx"]
    assert list(table_result(result, "records").files) == expected
    # Rows come out in file order.
    assert _read(tmp_path)["itemCode"].tolist() == [
        "CODE-00002", "CODE-00004", "CODE-00001", "CODE-00003", "CODE-00005"]


def test_discovery_yymmdd_names(tmp_path: Path) -> None:
    write_schema(tmp_path)
    for name in ("records_181101.xlsx", "records_181020.xlsx", "records_190105.xlsx"):
        write_source(tmp_path, name, [good_row(int(name[8:14]) % 97)])
    spec = load_schema(make_paths(tmp_path).schema_path, tmp_path).table("records")
    found = discover(spec, source_dir(tmp_path))
    assert [p.name for p in found] == ["records_181020.xlsx", "records_181101.xlsx",
                                       "records_190105.xlsx"]


def test_lock_hidden_and_other_files_skipped(records_root: Path) -> None:
    folder = source_dir(records_root)
    write_source(records_root, "records_201811.xlsx", [good_row(1)])
    # Garbage that would fail the table if it were read.
    for name in ("~$records_201811.xlsx", ".records_201812.xlsx", "records_201812.xlsx.bak",
                 "records_201812.csv", "other_201812.xlsx"):
        (folder / name).write_bytes(b"not an excel file")
        age(folder / name)
    (folder / "records_201813.xlsx").mkdir()  # a folder with a matching name
    result = collect(records_root)
    assert result.status is Status.SUCCESS, result.to_dict()
    assert table_result(result, "records").files == ("records_201811.xlsx",)


def test_missing_folder_is_file_not_found(records_root: Path) -> None:
    result = collect(records_root)
    assert result.status is Status.ERROR
    error = table_result(result, "records").error
    assert error is not None
    assert error.error_type is ErrorType.FILE_NOT_FOUND
    assert "records_history" in error.message
    assert not output_path(records_root, "records").exists()


def test_no_matching_files_is_file_not_found(records_root: Path) -> None:
    folder = source_dir(records_root)
    (folder / "~$records_201811.xlsx").write_bytes(b"lock")
    (folder / "notes.txt").write_text("hello")
    result = collect(records_root)
    error = table_result(result, "records").error
    assert error is not None
    assert error.error_type is ErrorType.FILE_NOT_FOUND
    assert "records_" in error.message and ".xlsx" in error.message
    assert result.to_dict()["errors"][0]["error_type"] == "FILE_NOT_FOUND"


# --- 2. read -----------------------------------------------------------------------------------


def test_wrong_sheet_name_lists_the_sheets(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(1)], sheet="Data")
    result = collect(records_root)
    error = table_result(result, "records").error
    assert error is not None
    assert error.error_type is ErrorType.FILE_READ_ERROR
    assert error.file == "records_201811.xlsx"
    assert "records_201811.xlsx" in error.message
    assert "'Sheet1'" in error.message and "'Data'" in error.message


def test_missing_column_names_file_and_column(records_root: Path) -> None:
    header = [h for h in SOURCE_HEADER if h != "weight"]
    rows = [[v for h, v in zip(SOURCE_HEADER, good_row(1), strict=True) if h != "weight"]]
    write_source(records_root, "records_201811.xlsx", rows, header=header)
    result = collect(records_root)
    error = table_result(result, "records").error
    assert error is not None
    assert error.error_type is ErrorType.MISSING_FIELDS
    assert error.file == "records_201811.xlsx"
    assert "records_201811.xlsx" in error.message and "weight" in error.message
    assert error.column == "weight"


@pytest.mark.parametrize("content", [b"recordDate;workingShift\n1;2\n", b"PK\x03\x04broken zip"])
def test_fake_xlsx_is_file_read_error(records_root: Path, content: bytes) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(1)])
    fake = source_dir(records_root) / "records_201812.xlsx"
    fake.write_bytes(content)
    age(fake)
    result = collect(records_root)
    error = table_result(result, "records").error
    assert error is not None
    assert error.error_type is ErrorType.FILE_READ_ERROR
    assert error.file == "records_201812.xlsx"
    assert "records_201812.xlsx" in error.message
    assert not output_path(records_root, "records").exists()


def test_fresh_unreadable_file_is_still_file_read_error(records_root: Path) -> None:
    fake = source_dir(records_root) / "records_201811.xlsx"
    fake.write_text("still copying", encoding="utf-8")  # just written: looks like a copy
    result = collect(records_root)
    error = table_result(result, "records").error
    assert error is not None
    assert error.error_type is ErrorType.FILE_READ_ERROR
    assert error.file == "records_201811.xlsx"


def test_extra_columns_dropped_required_in_listed_order(tmp_path: Path) -> None:
    write_schema(tmp_path)
    header = ["extraA", "weight", "plasticResine", "itemCode", "notes", "quantity",
              "workingShift", "recordDate"]
    row = ["x", 2.5, "PP", "C1", "free text", 7, "hc", dt.datetime(2018, 11, 5)]
    write_source(tmp_path, "records_201811.xlsx", [row], header=header)
    result = collect(tmp_path)
    assert result.status is Status.SUCCESS, result.to_dict()
    frame = _read(tmp_path)
    assert list(frame.columns) == list(SMALL_COLUMNS)
    assert frame.iloc[0].tolist() == [TS("2018-11-05"), "HC", "C1", 7, 2.5, "PP"]


def test_both_resin_spellings_accepted(tmp_path: Path) -> None:
    write_schema(tmp_path)
    modern = [*SOURCE_HEADER[:-1], "plasticResin"]
    first, second = good_row(1), good_row(2)
    first[-1], second[-1] = "RESINE-SPELLING", "RESIN-SPELLING"
    write_source(tmp_path, "records_201811.xlsx", [first])
    write_source(tmp_path, "records_201812.xlsx", [second], header=modern)
    result = collect(tmp_path)
    assert result.status is Status.SUCCESS, result.to_dict()
    assert _read(tmp_path)["plasticResin"].tolist() == ["RESINE-SPELLING", "RESIN-SPELLING"]


def test_schema_using_modern_spelling_reads_old_source(tmp_path: Path) -> None:
    required = [*SOURCE_HEADER[:-1], "plasticResin"]
    write_schema(tmp_path, {"records": dynamic_entry(required=required)})
    write_source(tmp_path, "records_201811.xlsx", [good_row(1)])  # header says plasticResine
    result = collect(tmp_path)
    assert result.status is Status.SUCCESS, result.to_dict()
    assert _read(tmp_path)["plasticResin"].tolist() == ["ABS-PA-758-T.NL"]


# --- 3. normalise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
def test_late_text_in_numeric_code_column_survives(tmp_path: Path, ext: str) -> None:
    write_schema(tmp_path, {"records": dynamic_entry(extension=ext)})
    rows = [good_row(i) for i in range(1101)]
    for i, row in enumerate(rows[:1100]):
        row[2] = 10_000_000 + i  # itemCode stored as a number for 1,100 rows
    rows[-1][2] = "9917349N15"  # ... then text
    rows.append([*good_row(5000)[:2], 10190.0, *good_row(5000)[3:]])
    rows.append([*good_row(5001)[:2], "10190.0", *good_row(5001)[3:]])
    write_source(tmp_path, f"records_201811{ext}", rows)
    result = collect(tmp_path)
    assert result.status is Status.SUCCESS, result.to_dict()
    codes = _read(tmp_path)["itemCode"]
    assert codes.notna().all()
    assert len(codes) == 1103
    assert codes.iloc[0] == "10000000"
    assert codes.iloc[1099] == "10001099"
    assert codes.iloc[1100] == "9917349N15"
    assert codes.iloc[1101] == "10190"  # a number: integer text
    assert codes.iloc[1102] == "10190.0"  # text: kept exactly


@pytest.mark.parametrize("token", ["N/A", "n/a", "NULL", "none", "nan", "NA", "", "   "])
def test_null_like_in_int_column_becomes_na(records_root: Path, token: str) -> None:
    row = good_row(1)
    row[3] = token
    row[2] = token  # string column: NA as well
    write_source(records_root, "records_201811.xlsx", [good_row(0), row])
    result = collect(records_root)
    assert result.status is Status.SUCCESS, result.to_dict()
    frame = _read(records_root)
    assert frame["quantity"].isna().tolist() == [False, True]
    assert frame["itemCode"].isna().tolist() == [False, True]
    assert str(frame["quantity"].dtype) == "Int64"


def test_string_columns_keep_exact_text(records_root: Path) -> None:
    row = good_row(1)
    row[2], row[5] = "  padded  ", "CT-PXN-HEAD-COVER-5.0"
    write_source(records_root, "records_201811.xlsx", [row])
    collect(records_root)
    frame = _read(records_root)
    assert frame["itemCode"].tolist() == ["  padded  "]
    assert frame["plasticResin"].tolist() == ["CT-PXN-HEAD-COVER-5.0"]


def test_working_shift_upper_cased(records_root: Path) -> None:
    rows = [good_row(i) for i in range(4)]
    rows[0][1], rows[1][1], rows[2][1], rows[3][1] = "hc", "Hc", 2, "HC"
    write_source(records_root, "records_201811.xlsx", rows)
    collect(records_root)
    assert _read(records_root)["workingShift"].tolist() == ["HC", "HC", "2", "HC"]


@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
def test_dates_from_excel_dates_serials_and_iso_text(tmp_path: Path, ext: str) -> None:
    write_schema(tmp_path, {"records": dynamic_entry(extension=ext)})
    values = [dt.datetime(2018, 11, 1, 10, 31), dt.date(2018, 11, 2), 43407, 43407.75,
              "2018-11-05", "2018-11-06 07:30:00", "2018-11-07T08:00"]
    rows = []
    for i, value in enumerate(values):
        row = good_row(i)
        row[0] = value
        rows.append(row)
    write_source(tmp_path, f"records_201811{ext}", rows)
    result = collect(tmp_path)
    assert result.status is Status.SUCCESS, result.to_dict()
    frame = _read(tmp_path)
    assert str(frame["recordDate"].dtype) == "datetime64[ns]"
    assert frame["recordDate"].tolist() == [
        TS("2018-11-01 10:31"), TS("2018-11-02"), TS("2018-11-03"), TS("2018-11-03 18:00"),
        TS("2018-11-05"), TS("2018-11-06 07:30"), TS("2018-11-07 08:00")]


def test_float_values_keep_full_precision(records_root: Path) -> None:
    values = [0.000123456789, 12.3456789012, 1.5e-10]
    rows = [good_row(i) for i in range(3)]
    for row, value in zip(rows, values, strict=True):
        row[4] = value
    write_source(records_root, "records_201811.xlsx", rows)
    collect(records_root)
    assert _read(records_root)["weight"].tolist() == values


def test_formula_error_cell_is_reported(records_root: Path) -> None:
    import xlsxwriter

    path = source_dir(records_root) / "records_201811.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Sheet1")
    sheet.write_row(0, 0, SOURCE_HEADER)
    sheet.write_datetime(1, 0, dt.datetime(2018, 11, 1))
    sheet.write_row(1, 1, [1, "C1"])
    sheet.write_formula(1, 3, "=1/0", None, "#DIV/0!")
    sheet.write_row(1, 4, [1.5, "PP"])
    book.close()
    error = table_result(collect(records_root, on_error_cells="fail"), "records").error
    assert error is not None
    assert error.error_type is ErrorType.DATA_PROCESSING_ERROR
    assert error.column == "quantity"
    assert (error.row, error.cells[0].value) == (2, "#DIV/0!")
    assert "Excel error" in error.cells[0].reason


@pytest.mark.parametrize("formula", [True, False])
def test_xlsb_error_cells_are_reported_with_row_and_column(
    records_root: Path, formula: bool
) -> None:
    from dpo.demo.writers import ExcelError, write_xlsb

    write_schema(records_root, {"records": dynamic_entry(extension=".xlsb")})
    rows = [good_row(i) for i in range(4)]
    rows[2][3] = ExcelError("#N/A", formula=formula)
    write_xlsb(source_dir(records_root) / "records_201811.xlsb", "Sheet1", SOURCE_HEADER, rows)
    error = table_result(collect(records_root, on_error_cells="fail"), "records").error
    assert error is not None
    assert (error.file, error.row, error.column) == ("records_201811.xlsb", 4, "quantity")
    assert error.cells[0].value == "#N/A"


@pytest.mark.parametrize(
    ("column", "bad", "kind"),
    [("quantity", "abc", "int"), ("quantity", 12.5, "int"), ("weight", "heavy", "float"),
     ("recordDate", "2018-02-30", "date"), ("quantity", "#N/A", "int")],
)
def test_bad_value_fails_table_and_keeps_good_output(
    records_root: Path, column: str, bad: object, kind: str
) -> None:
    good = [good_row(i) for i in range(5)]
    write_source(records_root, "records_201811.xlsx", good)
    first = collect(records_root)
    assert first.status is Status.SUCCESS
    out = output_path(records_root, "records")
    before = out.read_bytes()
    before_ns = out.stat().st_mtime_ns

    broken = [good_row(i) for i in range(8)]
    broken[5][SOURCE_HEADER.index(column)] = bad  # Excel row 7 (header is row 1)
    write_source(records_root, "records_201812.xlsx", broken)
    result = collect(records_root, on_error_cells="fail")  # "#N/A" text is an error cell

    assert result.status is Status.ERROR
    table = table_result(result, "records")
    assert table.status is Status.ERROR
    error = table.error
    assert error is not None
    assert error.error_type is ErrorType.DATA_PROCESSING_ERROR
    assert (error.file, error.row, error.column) == ("records_201812.xlsx", 7, column)
    (cell,) = error.cells
    assert (cell.file, cell.sheet, cell.row, cell.column) == ("records_201812.xlsx", "Sheet1", 7,
                                                              column)
    assert cell.value == str(bad)
    for text in ("records_201812.xlsx", "row 7", column, repr(str(bad))):
        assert text in error.message
    # Rolled back: the previous good output is untouched, nothing else written.
    assert out.read_bytes() == before
    assert out.stat().st_mtime_ns == before_ns
    assert not (out.parent / "quarantine").exists()
    json.dumps(result.to_dict())  # the result stays plain data
    _no_temp_files(records_root)


def test_bad_value_row_number_in_xlsb(tmp_path: Path) -> None:
    write_schema(tmp_path, {"records": dynamic_entry(extension=".xlsb")})
    rows = [good_row(i) for i in range(40)]
    rows[30][3] = "lots"
    write_source(tmp_path, "records_201811.xlsb", rows)
    error = table_result(collect(tmp_path), "records").error
    assert error is not None
    assert error.error_type is ErrorType.DATA_PROCESSING_ERROR
    assert [(c.file, c.row, c.column, c.value) for c in error.cells] == [
        ("records_201811.xlsb", 32, "quantity", "lots")]


def test_excel_row_numbers_when_table_does_not_start_at_a1(records_root: Path) -> None:
    import xlsxwriter

    path = source_dir(records_root) / "records_201811.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Sheet1")
    sheet.write_row(2, 1, SOURCE_HEADER)  # header in B3, data from row 4
    rows = [good_row(i) for i in range(3)]
    rows[1][3] = "abc"
    for r, row in enumerate(rows, start=3):
        for c, value in enumerate(row, start=1):
            if isinstance(value, dt.datetime):
                sheet.write_datetime(r, c, value)
            else:
                sheet.write(r, c, value)
    book.close()
    error = table_result(collect(records_root), "records").error
    assert error is not None
    assert [(c.row, c.column, c.value) for c in error.cells] == [(5, "quantity", "abc")]


def test_bad_values_reported_across_files_and_rows(records_root: Path) -> None:
    a = [good_row(i) for i in range(3)]
    a[0][3] = "x1"
    b = [good_row(i + 10) for i in range(3)]
    b[2][3], b[2][4] = "x2", "y2"
    write_source(records_root, "records_201811.xlsx", a)
    write_source(records_root, "records_201812.xlsx", b)
    error = table_result(collect(records_root), "records").error
    assert error is not None
    got = {(c.file, c.row, c.column, c.value) for c in error.cells}
    assert got == {("records_201811.xlsx", 2, "quantity", "x1"),
                   ("records_201812.xlsx", 4, "quantity", "x2"),
                   ("records_201812.xlsx", 4, "weight", "y2")}
    assert error.to_dict()["cells_total"] == 3


def test_quarantine_policy(records_root: Path) -> None:
    rows = [good_row(i) for i in range(6)]
    rows[1][3] = "abc"
    rows[4][3] = 12.5
    rows[4][4] = "heavy"
    write_source(records_root, "records_201811.xlsx", rows)
    result = collect(records_root, on_bad_rows="quarantine")

    assert result.status is Status.WARNING
    table = table_result(result, "records")
    assert table.status is Status.WARNING
    assert table.rows == 4
    assert table.rows_rejected == 2
    assert any("quarantine" in w.message for w in table.warnings)
    frame = _read(records_root)
    assert frame["itemCode"].tolist() == ["CODE-00000", "CODE-00002", "CODE-00003", "CODE-00005"]
    assert _dtypes(frame) == SMALL_DTYPES

    quarantine = pq.read_table(output_path(records_root, "records").parent / "quarantine"
                               / "records.parquet").to_pylist()
    assert [r["_excel_row"] for r in quarantine] == [3, 6]
    assert [r["quantity"] for r in quarantine] == ["abc", "12.5"]
    assert {r["_source_file"] for r in quarantine} == {"records_201811.xlsx"}
    assert "quantity" in quarantine[0]["_reason"] and "'abc'" in quarantine[0]["_reason"]
    assert "weight" in quarantine[1]["_reason"] and "'heavy'" in quarantine[1]["_reason"]
    _no_temp_files(records_root)


def test_quarantine_of_every_row_keeps_existing_output(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    collect(records_root, on_bad_rows="quarantine")
    out = output_path(records_root, "records")
    before = out.read_bytes()
    bad = [good_row(i) for i in range(3)]
    for row in bad:
        row[3] = "bad"
    write_source(records_root, "records_201811.xlsx", bad)
    result = collect(records_root, on_bad_rows="quarantine")
    table = table_result(result, "records")
    assert table.status is Status.WARNING
    assert table.rows_rejected == 3
    assert out.read_bytes() == before
    quarantine = pq.read_table(out.parent / "quarantine" / "records.parquet")
    assert quarantine.num_rows == 3


def test_stale_quarantine_removed_once_source_is_clean(records_root: Path) -> None:
    rows = [good_row(i) for i in range(3)]
    rows[1][3] = "abc"
    write_source(records_root, "records_201811.xlsx", rows)
    collect(records_root, on_bad_rows="quarantine")
    quarantine = output_path(records_root, "records").parent / "quarantine" / "records.parquet"
    assert quarantine.exists()
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    result = collect(records_root, on_bad_rows="quarantine")
    assert result.status is Status.SUCCESS
    assert not quarantine.exists()


def test_quarantine_with_clean_data_is_success(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    result = collect(records_root, on_bad_rows="quarantine")
    assert result.status is Status.SUCCESS
    assert not (output_path(records_root, "records").parent / "quarantine").exists()


# --- headers only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
def test_headers_only_never_replaces_good_data(tmp_path: Path, ext: str) -> None:
    write_schema(tmp_path, {"records": dynamic_entry(extension=ext)})
    write_source(tmp_path, f"records_201811{ext}", [good_row(i) for i in range(3)])
    assert collect(tmp_path).status is Status.SUCCESS
    out = output_path(tmp_path, "records")
    before, before_ns = out.read_bytes(), out.stat().st_mtime_ns

    write_source(tmp_path, f"records_201811{ext}", [])  # same file, now headers only
    result = collect(tmp_path)
    table = table_result(result, "records")
    assert result.status is Status.WARNING
    assert table.status is Status.WARNING
    assert table.rows == 0 and not table.changed
    assert any("headers only" in w.message for w in table.warnings)
    assert out.read_bytes() == before
    assert out.stat().st_mtime_ns == before_ns


def test_headers_only_first_run_writes_nothing(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [])
    result = collect(records_root)
    assert result.status is Status.WARNING
    assert not output_path(records_root, "records").exists()


def test_one_headers_only_file_among_good_ones_is_a_warning(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(1)])
    write_source(records_root, "records_201812.xlsx", [])
    table = table_result(collect(records_root), "records")
    assert table.status is Status.WARNING
    assert table.rows == 1
    assert any("records_201812.xlsx" in w.message for w in table.warnings)


# --- 4. merge and duplicates ----------------------------------------------------------------------


def test_duplicates_removed_and_counted_per_file(records_root: Path) -> None:
    a = [good_row(1), good_row(2), good_row(1)]  # one duplicate inside the file
    b = [good_row(2), good_row(3), good_row(1), good_row(4)]  # two repeat file a
    c = [good_row(3)]  # repeats file b
    write_source(records_root, "records_201811.xlsx", a)
    write_source(records_root, "records_201812.xlsx", b)
    write_source(records_root, "records_201901.xlsx", c)
    result = collect(records_root)
    table = table_result(result, "records")
    assert table.duplicates_removed == 4
    assert dict(table.duplicates_by_file) == {"records_201811.xlsx": 1,
                                              "records_201812.xlsx": 2,
                                              "records_201901.xlsx": 1}
    assert result.duplicates_removed == 4
    assert table.rows == 4
    assert _read(records_root)["itemCode"].tolist() == [
        "CODE-00001", "CODE-00002", "CODE-00003", "CODE-00004"]


def test_duplicates_judged_after_normalisation(records_root: Path) -> None:
    a, b = good_row(1), good_row(1)
    a[1], b[1] = "hc", "HC"  # equal once upper-cased
    a[3], b[3] = 101, "101.0"  # equal once converted
    write_source(records_root, "records_201811.xlsx", [a])
    write_source(records_root, "records_201812.xlsx", [b])
    table = table_result(collect(records_root), "records")
    assert table.duplicates_removed == 1
    assert dict(table.duplicates_by_file) == {"records_201812.xlsx": 1}


def test_rows_differing_only_by_null_are_kept(records_root: Path) -> None:
    a, b = good_row(1), good_row(1)
    b[4] = None
    write_source(records_root, "records_201811.xlsx", [a, b])
    assert table_result(collect(records_root), "records").rows == 2


# --- 5./6. change detection and atomic write ---------------------------------------------------------


def test_unchanged_second_run_writes_nothing(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    first = table_result(collect(records_root), "records")
    assert first.changed
    out = output_path(records_root, "records")
    before, before_ns = out.read_bytes(), out.stat().st_mtime_ns

    again = collect(records_root)
    second = table_result(again, "records")
    assert second.status is Status.SUCCESS
    assert not second.changed
    assert not again.data_updated
    assert second.content_hash == first.content_hash
    assert out.stat().st_mtime_ns == before_ns
    assert out.read_bytes() == before


def test_rewritten_identical_source_writes_nothing(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    collect(records_root)
    out = output_path(records_root, "records")
    before_ns = out.stat().st_mtime_ns
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    assert not table_result(collect(records_root), "records").changed
    assert out.stat().st_mtime_ns == before_ns


def test_changed_content_is_written(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    first = table_result(collect(records_root), "records")
    write_source(records_root, "records_201812.xlsx", [good_row(9)])
    second = table_result(collect(records_root), "records")
    assert second.changed
    assert second.content_hash != first.content_hash
    assert second.rows == 4
    assert len(_read(records_root)) == 4
    _no_temp_files(records_root)


def test_corrupt_output_is_rewritten(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    collect(records_root)
    out = output_path(records_root, "records")
    good = out.read_bytes()
    out.write_bytes(good[: len(good) // 2])  # truncated, e.g. by a crash of another tool
    table = table_result(collect(records_root), "records")
    assert table.changed
    assert out.read_bytes() == good
    assert len(_read(records_root)) == 3


def test_atomic_write_leaves_only_the_output(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    collect(records_root)
    write_source(records_root, "records_201812.xlsx", [good_row(7)])
    collect(records_root)
    folder = output_path(records_root, "records").parent
    assert sorted(p.name for p in folder.iterdir()) == ["records.parquet"]
    assert not [p for p in folder.parent.rglob("*") if p.name.startswith(".dpo-tmp-")]
    # The file carries its table name and the content hash change detection relies on.
    meta = pq.read_schema(folder / "records.parquet").metadata
    assert meta[b"dpo.table"] == b"records"
    assert meta[b"dpo.content_hash"].decode() == table_result(
        collect(records_root), "records").content_hash


def test_output_contract_dtypes_with_all_nulls(records_root: Path) -> None:
    row = [dt.datetime(2018, 11, 1), None, None, None, None, None]
    write_source(records_root, "records_201811.xlsx", [row])
    collect(records_root)
    frame = _read(records_root)
    assert _dtypes(frame) == SMALL_DTYPES
    assert frame.iloc[0, 1:].isna().all()


def test_one_table_failing_does_not_stop_another(tmp_path: Path) -> None:
    write_schema(tmp_path, {
        "records": dynamic_entry(),
        "orders": dynamic_entry("orders_history", name_start="orders_", extension=".xlsb",
                                sheet_name="poList"),
    })
    bad = good_row(1)
    bad[3] = "abc"
    write_source(tmp_path, "records_201811.xlsx", [bad])
    write_source(tmp_path, "orders_181101.xlsb", [good_row(2)], sheet="poList",
                 folder="orders_history")
    result = collect(tmp_path)
    assert result.status is Status.ERROR
    assert table_result(result, "records").status is Status.ERROR
    assert table_result(result, "orders").status is Status.SUCCESS
    assert result.failed_tables() == ["records"]
    assert _read(tmp_path, "orders")["itemCode"].tolist() == ["CODE-00002"]
    assert not output_path(tmp_path, "records").exists()


def test_output_keeps_statistics_for_dates_and_numbers(records_root: Path) -> None:
    """Readers filter a month by recordDate: its min/max are in the file. Text columns go
    without (their statistics cost a fifth of the write)."""
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(5)])
    collect(records_root)
    group = pq.ParquetFile(output_path(records_root, "records")).metadata.row_group(0)
    by_name = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    dates = by_name["recordDate"].statistics
    assert dates is not None and dates.has_min_max
    assert by_name["quantity"].statistics.max == 104
    assert by_name["itemCode"].statistics is None
