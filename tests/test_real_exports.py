"""The plant's files as they really come (docs/behaviour.md, "Real exports"): error cells,
loose headers, title rows, upper-case extensions, the 1904 date system, blank, merged and
totals rows. Each rule: the published values, and the exact warning naming file, row, column.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import (
    SAMPLES,
    SOURCE_HEADER,
    collect,
    dynamic_entry,
    good_row,
    output_path,
    skip_or_fail,
    source_dir,
    table_result,
    write_schema,
    write_source,
)
from promrules import naming_problems
from reliabilitytools import Raw, raw_xlsx

from dpo import DataPipelineOrchestrator, MockNotificationHandler
from dpo.demo.writers import ExcelError, write_xlsb
from dpo.demo.xlsx import write_xlsx
from dpo.results import Status


def run(root: Path, **options: Any) -> dict[str, Any]:
    result: dict[str, Any] = DataPipelineOrchestrator(
        root_dir=root, notification_handler=MockNotificationHandler(), **options,
    ).run_pipeline(max_retries=0)
    return result


def published(root: Path, table: str) -> list[dict[str, Any]]:
    notes = json.loads((root / "agents/shared_db/DataLoaderAgent/newest/path_annotations.json")
                       .read_text(encoding="utf-8"))
    rows: list[dict[str, Any]] = pq.read_table(root / notes[table]).to_pylist()
    return rows


def details(result: dict[str, Any], table: str, phase: str = "loader_result") -> dict[str, Any]:
    (found,) = [d for d in result[phase]["details"] if d["table"] == table]
    return found


def sheet_rows(path: Path) -> int:
    """Data rows of a workbook's first sheet as a person counts them (an independent reader)."""
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(path))
    rows = book.get_sheet_by_index(0).to_python()
    return sum(1 for r in rows[1:] if any(c not in ("", None) for c in r))


# -- the real sample plant, unmodified ------------------------------------------------------------
@pytest.fixture
def sample_plant(tmp_path: Path) -> Path:
    if not SAMPLES.is_dir():
        skip_or_fail(f"the sample plant is not at {SAMPLES}")
    shutil.copytree(SAMPLES, tmp_path / "plant" / "database")
    return tmp_path / "plant"


def test_the_real_sample_plant_loads_end_to_end(sample_plant: Path) -> None:
    result = run(sample_plant)
    assert result["overall_status"] == "success", result["loader_result"]["errors"]
    loader = result["loader_result"]
    assert loader["tables_created"] == 8 and loader["status"] == "success"
    database = sample_plant / "database"
    for spec_table, path in {
        "itemCompositionSummary": "staticDatabase/itemCompositionSummary.xlsx",
        "itemInfo": "staticDatabase/itemInfo.xlsx", "machineInfo": "staticDatabase/machineInfo.xlsx",
        "moldInfo": "staticDatabase/moldInfo.xlsx",
        "moldSpecificationSummary": "staticDatabase/moldSpecificationSummary.xlsx",
        "resinInfo": "staticDatabase/resineInfo.xlsx",
    }.items():
        assert details(result, spec_table)["rows"] == sheet_rows(database / path), spec_table
    for table, folder in (("productRecords", "monthlyReports_history"),
                          ("purchaseOrders", "purchaseOrders_history")):
        found = details(result, table, "collector_result")
        in_sheets = sum(sheet_rows(p) for p in (database / "dynamicDatabase" / folder).iterdir())
        assert found["rows"] + found["duplicates_removed"] == in_sheets, table
        assert len(published(sample_plant, table)) == found["rows"]

    # moldInfo.itemsWeight holds #REF! at Excel rows 8, 10 and 39: NA there, and said so.
    mold = details(result, "moldInfo")
    assert mold["blank_rows_skipped"] == 0
    assert [(w["kind"], w["file"], w["sheet"], w["row"], w["column"]) for w in mold["warnings"]] \
        == [("error_cell", "moldInfo.xlsx", "moldInfo", row, "itemsWeight") for row in (8, 10, 39)]
    assert all("#REF!" in w["message"] for w in mold["warnings"])
    weights = [r["itemsWeight"] for r in published(sample_plant, "moldInfo")]
    assert [i + 2 for i, w in enumerate(weights) if w is None] == [8, 10, 39]
    assert result["warnings"] == {"total": 3, "by_kind": {"error_cell": 3}}
    final = next((sample_plant / "agents/shared_db/DataPipelineOrchestrator/newest").glob(
        "*final_report.txt")).read_text(encoding="utf-8")
    assert "published with 3 warnings" in final
    assert "moldInfo.xlsx [moldInfo] column itemsWeight, rows 8, 10, 39: #REF!" in final

    again = run(sample_plant)  # nothing changed: nothing published, the warnings still said
    assert again["overall_status"] == "success"
    assert again["loader_result"]["tables_created"] == 0
    assert again["warnings"]["total"] == 3


def test_validate_on_the_sample_plant_says_what_a_run_would_warn_about(sample_plant: Path
                                                                       ) -> None:
    from pipelinetools import dpo

    done = dpo("validate", "--root", sample_plant)
    assert done.returncode == 0, done.stdout + done.stderr
    flat = " ".join(done.stdout.split())
    assert "moldInfo" in flat and "warning" in flat
    assert not (sample_plant / "agents").exists()  # validate writes nothing


# -- rule 1: Excel error values and formulas without a cached value --------------------------------
@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
@pytest.mark.parametrize("policy", ["null", "fail", "quarantine"])
def test_error_cell_policy_in_phase_1(records_root: Path, ext: str, policy: str) -> None:
    write_schema(records_root, {"records": dynamic_entry(extension=ext)})
    rows = [good_row(i) for i in range(4)]
    rows[1][SOURCE_HEADER.index("weight")] = ExcelError("#REF!")
    write_source(records_root, f"records_201811{ext}", rows)
    result = collect(records_root, on_error_cells=policy)
    table = table_result(result, "records")
    if policy == "fail":
        assert table.error is not None and (table.error.row, table.error.column) == (3, "weight")
        return
    out = pq.read_table(output_path(records_root, "records")).to_pylist()
    if policy == "null":
        assert table.status is Status.SUCCESS and len(out) == 4
        assert out[1]["weight"] is None and out[2]["weight"] == 2.5
        (warning,) = table.warnings
        assert (warning.file, warning.row, warning.column) == (f"records_201811{ext}", 3, "weight")
        assert warning.message.endswith("#REF!; loaded as NA")
    else:
        assert table.status is Status.WARNING and len(out) == 3 and table.rows_rejected == 1
        held = pq.read_table(records_root / "agents/shared_db/dynamicDatabase/quarantine/"
                             "records.parquet").to_pylist()
        assert [(r["_excel_row"], r["_reason"]) for r in held] == [
            (3, "weight: '#REF!' is an Excel error value")]


STATIC = {"itemCode": "string", "itemName": "string", "weight": "Float64"}


def _static_root(root: Path, rows: list[list[Any]], header: list[str] | None = None,
                 writer: Any = write_xlsx) -> Path:
    write_schema(root, {"records": dynamic_entry()},
                 static={"items": {"path": "database/staticDatabase/items.xlsx",
                                   "dtypes": STATIC}})
    write_source(root, "records_201811.xlsx", [good_row(i) for i in range(3)])
    path = root / "database/staticDatabase/items.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(path, "Sheet1", header or list(STATIC), rows)
    return path


@pytest.mark.parametrize("policy", ["null", "fail", "quarantine"])
def test_error_cell_policy_in_phase_2(tmp_path: Path, policy: str) -> None:
    _static_root(tmp_path, [["A", "a", 1.5], ["B", ExcelError("#N/A"), 2.5], ["C", "c", 3.5]])
    result = run(tmp_path, on_error_cells=policy)
    if policy == "fail":
        assert result["overall_status"] == "failed"
        (error,) = result["loader_result"]["errors"]
        assert (error["error_type"], error["row"], error["column"]) == (
            "SCHEMA_MISMATCH", 3, "itemName")
        return
    assert result["overall_status"] == "success"
    rows = published(tmp_path, "items")
    if policy == "null":
        assert [r["itemName"] for r in rows] == ["a", None, "c"]
        (warning,) = details(result, "items")["warnings"]
        assert (warning["row"], warning["column"], warning["kind"]) == (3, "itemName",
                                                                       "error_cell")
    else:
        assert [r["itemCode"] for r in rows] == ["A", "C"]
        assert details(result, "items")["status"] == "warning"
        held = pq.read_table(tmp_path / "agents/shared_db/dynamicDatabase/quarantine/"
                             "items.parquet").to_pylist()
        assert [r["_excel_row"] for r in held] == [3]


def test_error_cell_policy_from_the_environment_and_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelinetools import dpo

    _static_root(tmp_path, [["A", "a", ExcelError("#DIV/0!")]])
    monkeypatch.setenv("DPO_ON_ERROR_CELLS", "fail")
    assert run(tmp_path)["overall_status"] == "failed"
    monkeypatch.delenv("DPO_ON_ERROR_CELLS")
    done = dpo("run", "--root", tmp_path, "--json", "--on-error-cells", "null")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["warnings"]["by_kind"] == {"error_cell": 1}
    refused = dpo("run", "--root", tmp_path, "--on-error-cells", "maybe")
    assert refused.returncode == 2 and "on_error_cells" in refused.stderr


def test_formula_never_calculated_in_a_master_table_is_na_and_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "database/staticDatabase/items.xlsx"
    _static_root(tmp_path, [])
    raw_xlsx(path, "Sheet1", list(STATIC), [["A", "a", 1.5],
                                           ["B", "b", Raw("", "<f>C2*2</f>")]])
    result = run(tmp_path)
    assert result["overall_status"] == "success"
    assert [r["weight"] for r in published(tmp_path, "items")] == [1.5, None]
    (warning,) = details(result, "items")["warnings"]
    assert warning["kind"] == "formula_not_calculated" and warning["row"] == 3
    assert "formula never calculated" in warning["message"]


# -- rule 2: headers ------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
@pytest.mark.parametrize("spelling", [" itemCode ", "itemCode\u00a0", "\ufeffitemCode", "ITEMCODE"])
def test_a_header_a_person_reads_as_the_column_matches_with_a_warning(
        records_root: Path, ext: str, spelling: str) -> None:
    write_schema(records_root, {"records": dynamic_entry(extension=ext)})
    header = [spelling if h == "itemCode" else h for h in SOURCE_HEADER]
    rows = [good_row(i) for i in range(3)]
    write_source(records_root, f"records_201811{ext}", rows, header=header)
    table = table_result(collect(records_root), "records")
    assert table.status is Status.SUCCESS and table.rows == 3
    out = pq.read_table(output_path(records_root, "records")).to_pylist()
    assert [r["itemCode"] for r in out] == ["CODE-00000", "CODE-00001", "CODE-00002"]
    if spelling.startswith("\ufeff") and ext == ".xlsb":
        assert table.warnings == ()  # calamine drops a BOM from .xlsb text itself
        return
    (warning,) = table.warnings
    assert warning.kind == "header" and warning.column == "itemCode"
    assert f"header {spelling!r} read as column itemCode" in warning.message


def test_two_headers_matching_one_column_stay_an_error(records_root: Path) -> None:
    header = [*SOURCE_HEADER, " itemCode"]
    write_source(records_root, "records_201811.xlsx", [[*good_row(0), "X"]], header=header)
    error = table_result(collect(records_root), "records").error
    assert error is not None and error.column == "itemCode"
    assert "appears 2 times" in error.message and "' itemCode'" in error.message


@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
def test_title_rows_above_the_header_are_skipped_and_rows_named_right(records_root: Path,
                                                                      ext: str) -> None:
    write_schema(records_root, {"records": dynamic_entry(extension=ext)})
    rows = [good_row(i) for i in range(3)]
    rows[2][SOURCE_HEADER.index("quantity")] = "lots"
    body = [["Monthly report — plant 2"], ["printed 2018-12-01"], [], SOURCE_HEADER, *rows]
    writer = write_xlsb if ext == ".xlsb" else write_xlsx
    writer(source_dir(records_root) / f"records_201811{ext}", "Sheet1", ["Production"], body)
    table = table_result(collect(records_root, on_bad_rows="quarantine"), "records")
    assert table.rows == 2
    header_notes = [w for w in table.warnings if w.kind == "header_row"]
    assert len(header_notes) == 1 and "the header is row 5" in header_notes[0].message
    held = pq.read_table(records_root / "agents/shared_db/dynamicDatabase/quarantine/"
                         "records.parquet").to_pylist()
    assert [r["_excel_row"] for r in held] == [8]  # title 1-2, blank 3... header 5, data 6-8


# -- rule 3: discovery ----------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".XLSX", ".Xlsx"])
def test_upper_case_extensions_are_found(records_root: Path, ext: str) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(0)])
    write_source(records_root, "records_201812.xlsx", [good_row(1)])
    folder = source_dir(records_root)
    (folder / "records_201812.xlsx").rename(folder / f"records_201812{ext}")
    table = table_result(collect(records_root), "records")
    assert table.rows == 2 and table.files == ("records_201811.xlsx", f"records_201812{ext}")
    assert table.warnings == ()


def test_files_named_like_sources_but_not_read_as_one_are_reported(records_root: Path) -> None:
    write_source(records_root, "records_201811.xlsx", [good_row(0)])
    write_source(records_root, "records_latest.xlsx", [good_row(1)])
    (source_dir(records_root) / "records_201812.xls").write_bytes(b"old format")
    table = table_result(collect(records_root), "records")
    assert table.rows == 2  # the undated file is read, after the dated ones
    messages = sorted(w.message for w in table.warnings)
    assert messages == [
        "records_201812.xls: named like a records source but not .xlsx; not read",
        "records_latest.xlsx: no YYYYMM or YYMMDD date after 'records_'; read after the dated "
        "files"]


# -- rule 4: the 1904 date system -----------------------------------------------------------------
@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
@pytest.mark.parametrize("as_text", [False, True])
def test_1904_workbooks_load_the_same_dates(tmp_path: Path, ext: str, as_text: bool) -> None:
    """Date cells, and plain serial numbers in a date column, mean the same day in a
    1904-system workbook as in a 1900 one; typed and text reads alike."""
    from dpo.demo.writers import excel_serial

    tables = {}
    for system in (False, True):
        root = tmp_path / str(system)
        write_schema(root, {"records": dynamic_entry(extension=ext)})
        rows = [good_row(i) for i in range(3)]
        rows[1][0] = excel_serial(dt.datetime(2018, 11, 20, 6, 30), date1904=system)
        if as_text:
            rows[2][SOURCE_HEADER.index("quantity")] = " 102 "  # a text cell: read as text
        writer = write_xlsb if ext == ".xlsb" else write_xlsx
        writer(source_dir(root) / f"records_201811{ext}", "Sheet1", SOURCE_HEADER, rows,
               date1904=system)
        assert table_result(collect(root), "records").status is Status.SUCCESS
        tables[system] = pq.read_table(output_path(root, "records")).to_pylist()
    assert tables[True] == tables[False]
    assert [r["recordDate"] for r in tables[True]] == [
        dt.datetime(2018, 11, 1), dt.datetime(2018, 11, 20, 6, 30), dt.datetime(2018, 11, 3)]


# Excel 2013+ saves a 1904-system workbook's workbook.xml like this: the real flag on
# <workbookPr>, then an mc:AlternateContent block, and in <extLst> the x15 extension
# <x15:workbookPr chartTrackingRefBase="1"/>, which some readers take for the first one.
EXCEL_2013_WORKBOOK_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'mc:Ignorable="x15 xr xr6 xr10 xr2" '
    'xmlns:x15="http://schemas.microsoft.com/office/spreadsheetml/2010/11/main" '
    'xmlns:xr="http://schemas.microsoft.com/office/spreadsheetml/2014/revision" '
    'xmlns:xr6="http://schemas.microsoft.com/office/spreadsheetml/2016/revision6" '
    'xmlns:xr10="http://schemas.microsoft.com/office/spreadsheetml/2016/revision10" '
    'xmlns:xr2="http://schemas.microsoft.com/office/spreadsheetml/2015/revision2">'
    '<fileVersion appName="xl" lastEdited="7" lowestEdited="7" rupBuild="27328"/>'
    '<workbookPr date1904="1" defaultThemeVersion="166925"/>'
    '<mc:AlternateContent xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006">'
    '<mc:Choice Requires="x15"><x15ac:absPath url="/Users/planner/Documents/Reports/" '
    'xmlns:x15ac="http://schemas.microsoft.com/office/spreadsheetml/2010/11/ac"/></mc:Choice>'
    '</mc:AlternateContent>'
    '<xr:revisionPtr revIDLastSave="0" documentId="13_ncr:1_{6B1C8D2E-6A53-C249-9D8D-'
    '2F1B5F3E0C11}" xr6:coauthVersionLast="47" xr6:coauthVersionMax="47" '
    'xr10:uidLastSave="{00000000-0000-0000-0000-000000000000}"/>'
    '<bookViews><workbookView xWindow="0" yWindow="500" windowWidth="28800" '
    'windowHeight="16500" xr2:uid="{9A3F0A55-1E5B-7C4B-8F0D-0C8F4C2B6B7A}"/></bookViews>'
    '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets><calcPr calcId="191029"/>'
    '<extLst><ext uri="{140A7094-0E35-4892-8432-C4D2E57EDEB5}" '
    'xmlns:x15="http://schemas.microsoft.com/office/spreadsheetml/2010/11/main">'
    '<x15:workbookPr chartTrackingRefBase="1"/></ext>'
    '<ext uri="{B58B0392-4F1F-4190-BB64-5DF3571DCCFF}" '
    'xmlns:xcalcf="http://schemas.microsoft.com/office/spreadsheetml/2018/calcfeatures">'
    '<xcalcf:calcFeatures><xcalcf:feature name="microsoft.com:RD"/>'
    '<xcalcf:feature name="microsoft.com:Single"/></xcalcf:calcFeatures></ext></extLst>'
    '</workbook>')


def saved_by_excel_2013(path: Path) -> None:
    """Rewrite an xlsxwriter 1904 workbook's workbook.xml as Excel 2013+ saves it."""
    import zipfile

    with zipfile.ZipFile(path) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    assert b'date1904="1"' in parts["xl/workbook.xml"]
    parts["xl/workbook.xml"] = EXCEL_2013_WORKBOOK_XML.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        for name, data in parts.items():
            book.writestr(name, data)


@pytest.mark.parametrize("as_text", [False, True])
def test_1904_workbooks_saved_by_excel_2013_keep_their_dates(tmp_path: Path,
                                                            as_text: bool) -> None:
    """A Mac-template workbook saved by current Excel: date cells and plain serial numbers in
    the date column publish the day Excel shows, whatever the reader makes of the x15
    extension (calamine under fastexcel 0.21 resets the 1904 flag there: 1,462 days early)."""
    from dpo.demo.writers import excel_serial

    write_schema(tmp_path, {"records": dynamic_entry()})
    rows = [good_row(i) for i in range(4)]
    rows[0][0] = dt.datetime(2018, 11, 1)
    rows[1][0] = excel_serial(dt.datetime(2018, 11, 20, 6, 30), date1904=True)  # plain number
    rows[2][0] = dt.datetime(2018, 11, 3, 22, 15)
    rows[3][0] = dt.datetime(1904, 1, 2)  # serial 1 in the 1904 system
    if as_text:
        rows[2][SOURCE_HEADER.index("quantity")] = " 102 "  # a text cell: read as text
    path = write_xlsx(source_dir(tmp_path) / "records_201811.xlsx", "Sheet1", SOURCE_HEADER,
                      rows, date1904=True)
    saved_by_excel_2013(path)
    assert table_result(collect(tmp_path), "records").status is Status.SUCCESS
    dates = [r["recordDate"] for r in pq.read_table(output_path(tmp_path, "records")).to_pylist()]
    assert dates == [dt.datetime(2018, 11, 1), dt.datetime(2018, 11, 20, 6, 30),
                     dt.datetime(2018, 11, 3, 22, 15), dt.datetime(1904, 1, 2)]


def test_the_date_system_names_the_workbooks_flag_and_the_readers_choice(tmp_path: Path) -> None:
    """The probe asks the reader itself: a 1900 workbook is 1900 to both; an Excel 2013+ 1904
    workbook is 1904, and the reader's choice is what the reader really returns for it."""
    import zipfile

    import fastexcel

    from dpo.excel.datesystem import date_system

    plain = write_xlsx(tmp_path / "plain.xlsx", "Sheet1", ["d"], [[dt.datetime(2018, 11, 5)]])
    mac = write_xlsx(tmp_path / "mac.xlsx", "Sheet1", ["d"], [[dt.datetime(2018, 11, 5)]],
                     date1904=True)
    saved_by_excel_2013(mac)
    with zipfile.ZipFile(plain) as book:
        system = date_system(book)
        assert (system.date1904, system.reader1904) == (False, False)
    with zipfile.ZipFile(mac) as book:
        system = date_system(book)
    shown = fastexcel.read_excel(str(mac)).load_sheet(0).to_arrow().column(0)[0].as_py()
    assert system.date1904 is True
    assert system.reader1904 is (shown == dt.datetime(2018, 11, 5))


# -- rule 5: blank, merged and totals rows ----------------------------------------------------------
def test_blank_and_formula_blank_rows_of_a_master_table_are_skipped_and_counted(
        tmp_path: Path) -> None:
    path = tmp_path / "database/staticDatabase/items.xlsx"
    _static_root(tmp_path, [])
    blank_formula = Raw(' t="str"', "<f>IF(A3=\"\",\"\",A3)</f><v></v>")
    raw_xlsx(path, "Sheet1", list(STATIC), [
        ["A", "a", 1.5], [None, None, None], [blank_formula, blank_formula, None],
        ["   ", None, None], ["B", "b", 2.5]])
    result = run(tmp_path)
    assert [r["itemCode"] for r in published(tmp_path, "items")] == ["A", "B"]
    assert details(result, "items")["blank_rows_skipped"] == 3
    assert details(result, "items")["warnings"] == []


@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
def test_merged_cells_take_their_top_left_value_with_a_warning(records_root: Path,
                                                                ext: str) -> None:
    write_schema(records_root, {"records": dynamic_entry(extension=ext)})
    rows = [good_row(i) for i in range(4)]
    resin = SOURCE_HEADER.index("plasticResine")
    rows[1][resin], rows[2][resin], rows[3][resin] = "PP-MERGED", None, None
    writer = write_xlsb if ext == ".xlsb" else write_xlsx
    writer(source_dir(records_root) / f"records_201811{ext}", "Sheet1", SOURCE_HEADER, rows,
           merges=[(2, resin, 4, resin)])  # plasticResine, Excel rows 3-5
    table = table_result(collect(records_root), "records")
    out = pq.read_table(output_path(records_root, "records")).to_pylist()
    assert [r["plasticResin"] for r in out] == ["ABS-PA-758-T.NL", "PP-MERGED", "PP-MERGED",
                                                "PP-MERGED"]
    (warning,) = table.warnings
    assert warning.kind == "merged_cells" and warning.row == 3
    assert "merged cells F3:F5" in warning.message and "take the value of F3" in warning.message


@pytest.mark.parametrize("ext", [".xlsx", ".xlsb"])
def test_a_table_that_starts_in_column_c_names_its_error_cells_right(records_root: Path,
                                                                    ext: str) -> None:
    """The reader numbers columns from the sheet's column A, not from the used range."""
    write_schema(records_root, {"records": dynamic_entry(extension=ext)})
    rows: list[list[Any]] = [[None, None, *good_row(i)] for i in range(3)]
    weight = 2 + SOURCE_HEADER.index("weight")
    path = source_dir(records_root) / f"records_201811{ext}"
    if ext == ".xlsx":
        rows[1][weight] = Raw(' t="e"', "<f>1/0</f><v>#DIV/0!</v>")
        raw_xlsx(path, "Sheet1", [None, None, *SOURCE_HEADER], rows)
    else:
        rows[1][weight] = ExcelError("#DIV/0!")
        write_xlsb(path, "Sheet1", [None, None, *SOURCE_HEADER], rows)  # type: ignore[list-item]
    table = table_result(collect(records_root, on_error_cells="fail"), "records")
    assert table.error is not None
    assert (table.error.row, table.error.column) == (3, "weight"), table.error.message


@pytest.mark.parametrize("drop", [False, True])
def test_a_totals_row_is_a_warning_and_dropped_only_when_asked(tmp_path: Path,
                                                               drop: bool) -> None:
    _static_root(tmp_path, [["A", "a", 1.5], ["B", "b", 2.5], [None, "Total", 4.0]])
    result = run(tmp_path, drop_total_rows=drop)
    codes = [r["itemName"] for r in published(tmp_path, "items")]
    assert codes == (["a", "b"] if drop else ["a", "b", "Total"])
    (warning,) = details(result, "items")["warnings"]
    assert warning["kind"] == "totals_row" and warning["row"] == 4
    assert "'Total'" in warning["message"] and ("dropped" if drop else "kept") in warning["message"]


# -- rule 6: warnings are first-class ----------------------------------------------------------
def test_warnings_reach_summary_ledger_metrics_and_dashboard(tmp_path: Path) -> None:
    from pipelinetools import dpo

    _static_root(tmp_path, [["A", "a", ExcelError("#N/A")], ["B", ExcelError("#REF!"), 1.0]])
    done = dpo("run", "--root", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 warnings (2 error cells)" in done.stdout  # the run summary: a count per table
    again = dpo("run", "--root", tmp_path)  # the same file: its warnings are said again
    assert again.returncode == 0 and "2 warnings (2 error cells)" in again.stdout
    metrics = dpo("metrics", "--root", tmp_path, "--prometheus")
    # A gauge of the newest run's warnings per kind: 2 after two runs, not 2 + 2.
    assert 'dpo_data_quality_warnings{kind="error_cell"} 2' in metrics.stdout
    assert "# TYPE dpo_data_quality_warnings gauge" in metrics.stdout
    assert "_total" not in metrics.stdout and naming_problems(metrics.stdout) == []
    plain = dpo("metrics", "--root", tmp_path)  # the table shows them too (issue #19, 7)
    assert re.search(r"error cells\W+2\W+4\W", plain.stdout), plain.stdout
    history = json.loads(dpo("history", "--root", tmp_path, "--json").stdout)
    assert history[0]["warnings_count"] == 2
    assert history[0]["warnings_by_kind"] == {"error_cell": 2}  # an object, as /runs gives it
    page = (tmp_path / "agents/shared_db/DataPipelineOrchestrator/dashboard.html").read_text(
        encoding="utf-8")
    assert "Data quality warnings per run" in page and "error cell" in page


# -- rule 8: a schema broken between two runs -----------------------------------------------------
def test_a_schema_broken_between_runs_is_a_recorded_config_error(tmp_path: Path) -> None:
    from pipelinetools import dpo
    from reliabilitytools import published_bytes

    _static_root(tmp_path, [["A", "a", 1.5]])
    assert run(tmp_path)["overall_status"] == "success"
    before = published_bytes(tmp_path)
    schema = tmp_path / "database/databaseSchemas.json"
    body = json.loads(schema.read_text(encoding="utf-8"))
    del body["staticDB"]["items"]["dtypes"]
    schema.write_text(json.dumps(body), encoding="utf-8")
    mock = MockNotificationHandler()
    result = DataPipelineOrchestrator(root_dir=tmp_path, notification_handler=mock).run_pipeline()
    assert result["overall_status"] == "failed"
    (error,) = result["collector_result"]["errors"]
    assert (error["error_type"], error["table"], error["column"]) == ("CONFIG_ERROR", "items",
                                                                      "dtypes")
    assert mock.sent and "CONFIG_ERROR" in mock.sent[0]["message"]
    assert published_bytes(tmp_path) == before
    cli = dpo("run", "--root", tmp_path)
    assert cli.returncode == 2 and "items" in cli.stderr and "dtypes" in cli.stderr
    history = json.loads(dpo("history", "--root", tmp_path, "--json").stdout)
    assert [r["overall_status"] for r in history[:2]] == ["failed", "failed"]
