"""The synthetic plant and the fixture writers, checked through real Excel readers.

Every assertion reads the written bytes back with fastexcel (the production reader),
python-calamine and, for .xlsb, pyxlsb, so a writer bug cannot hide behind its own reader.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastexcel
import pytest
from python_calamine import CalamineWorkbook

from dpo.demo.plant import (
    MONTHLY_HEADER,
    SCHEMA,
    DemoPlant,
    generate_plant,
    write_monthly_report,
    write_xlsb,
    write_xlsx,
)
from dpo.demo.writers import check_value

Writer = Callable[[Path, str, list[str], list[list[object]]], Path]
WRITERS = [pytest.param(write_xlsb, ".xlsb", id="xlsb"), pytest.param(write_xlsx, ".xlsx", id="xlsx")]


def read_text(path: Path, sheet: str | int = 0) -> dict[str, list[Any]]:
    """All cells as text, the way the pipeline reads them."""
    return fastexcel.read_excel(path).load_sheet(sheet, dtypes="string").to_arrow().to_pydict()


def read_guessed(path: Path, sheet: str | int = 0) -> dict[str, list[Any]]:
    return fastexcel.read_excel(path).load_sheet(sheet).to_arrow().to_pydict()


def read_calamine(path: Path, sheet: str) -> list[list[Any]]:
    return CalamineWorkbook.from_path(str(path)).get_sheet_by_name(sheet).to_python()


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> DemoPlant:
    root = tmp_path_factory.mktemp("plant")
    return generate_plant(root, months=3, rows_per_month=400, po_files=4, seed=7)


# --- the plant --------------------------------------------------------------------------------


def test_layout_and_schema(plant: DemoPlant) -> None:
    assert plant.schema_path == plant.root / "database" / "databaseSchemas.json"
    schema = json.loads(plant.schema_path.read_text(encoding="utf-8"))
    assert schema == SCHEMA
    assert set(schema) == {"dynamicDB", "staticDB"}
    for entry in [*schema["dynamicDB"].values(), *schema["staticDB"].values()]:
        assert not Path(entry["path"]).is_absolute()
        assert (plant.root / entry["path"]).exists(), entry["path"]
    names = [p.name for p in plant.monthly_files]
    assert names == ["monthlyReports_201811.xlsb", "monthlyReports_201812.xlsb",
                     "monthlyReports_201901.xlsb"]
    assert len(plant.po_files) == 4 and len(set(plant.po_files)) == 4
    assert [p.name for p in plant.po_files] == sorted(p.name for p in plant.po_files)
    assert {p.name for p in plant.static_files} == {
        Path(e["path"]).name for e in schema["staticDB"].values()}
    assert plant.rows_per_month == 400


def test_dynamic_files_have_sheet_and_required_columns(plant: DemoPlant) -> None:
    tables = SCHEMA["dynamicDB"]
    for files, table in ((plant.monthly_files, "productRecords"),
                         (plant.po_files, "purchaseOrders")):
        spec = tables[table]
        for path in files:
            assert path.parent == plant.root / str(spec["path"])
            assert path.name.startswith(str(spec["name_start"]))
            assert path.suffix == spec["extension"]
            reader = fastexcel.read_excel(path)
            assert reader.sheet_names == [spec["sheet_name"]]
            assert list(read_text(path, str(spec["sheet_name"]))) == spec["required_fields"]


def test_static_files_have_exactly_the_schema_columns(plant: DemoPlant) -> None:
    for table, spec in SCHEMA["staticDB"].items():
        path = plant.root / str(spec["path"])
        assert list(read_text(path)) == list(spec["dtypes"]), table
        assert len(next(iter(read_text(path).values()))) > 0


def test_row_counts(plant: DemoPlant) -> None:
    for path in plant.monthly_files:
        assert fastexcel.read_excel(path).load_sheet("Sheet1").height == 400
    for path in plant.po_files:
        assert fastexcel.read_excel(path).load_sheet("poList").height > 0


def test_generation_is_deterministic(plant: DemoPlant, tmp_path: Path) -> None:
    again = generate_plant(tmp_path, months=3, rows_per_month=400, po_files=4, seed=7)
    for first, second in zip(
        plant.monthly_files + plant.po_files + plant.static_files,
        again.monthly_files + again.po_files + again.static_files, strict=True,
    ):
        assert first.relative_to(plant.root) == second.relative_to(again.root)
        assert read_text(first) == read_text(second), first.name
    # Our own XLSB writer has no clock in it at all: same content, same bytes.
    assert all(a.read_bytes() == b.read_bytes()
               for a, b in zip(plant.monthly_files, again.monthly_files, strict=True))


def test_seed_changes_content(plant: DemoPlant, tmp_path: Path) -> None:
    other = generate_plant(tmp_path, months=1, rows_per_month=400, po_files=0, seed=8)
    assert other.po_files == ()
    assert read_text(other.monthly_files[0]) != read_text(plant.monthly_files[0])


def test_month_n_does_not_depend_on_plant_length(plant: DemoPlant, tmp_path: Path) -> None:
    short = generate_plant(tmp_path, months=1, rows_per_month=400, seed=7)
    assert read_text(short.monthly_files[0]) == read_text(plant.monthly_files[0])


def test_report_has_the_real_exports_quirks(plant: DemoPlant) -> None:
    path = plant.monthly_files[0]
    raw = read_calamine(path, "Sheet1")
    header, rows = raw[0], raw[1:]
    col = {name: [r[header.index(name)] for r in rows] for name in header}
    shifts = col["workingShift"]
    assert {s for s in shifts if isinstance(s, float)} == {1.0, 2.0, 3.0}
    assert {"HC", "hc"} <= {s for s in shifts if isinstance(s, str)}
    # Codes stored as numbers next to codes stored as text, as in the plant's files.
    assert 10045.0 in col["plasticResineCode"] and "101104FJ" in col["plasticResineCode"]
    assert any(isinstance(v, float) for v in col["colorMasterbatchCode"])
    assert any(isinstance(c, str) and c.isdigit() for c in col["itemCode"])
    assert all(isinstance(c, str) for c in col["itemCode"])
    assert all(v == "" or float(v).is_integer() for v in col["itemBlackSpot"])
    assert sum(v == "" for v in col["itemBlackSpot"]) > len(rows) // 2  # mostly blank
    assert "" in col["moldShot"] and "" in col["plasticResineLot"]
    dates = col["recordDate"]
    assert all(isinstance(d, dt.date) and (d.year, d.month) == (2018, 11) for d in dates)
    assert dates == sorted(dates)
    guessed = fastexcel.read_excel(path).load_sheet("Sheet1").to_arrow()
    assert str(guessed.schema.field("recordDate").type).startswith("timestamp")


def test_reports_reference_the_static_tables(plant: DemoPlant) -> None:
    static = {t: read_text(plant.root / str(s["path"])) for t, s in SCHEMA["staticDB"].items()}
    reports = [read_text(p) for p in plant.monthly_files]
    used = {c: {v for r in reports for v in r[c] if v is not None}
            for c in ("itemCode", "moldNo", "machineCode", "plasticResineCode",
                      "colorMasterbatchCode")}
    assert used["itemCode"] <= set(static["itemInfo"]["itemCode"])
    assert used["moldNo"] <= set(static["moldInfo"]["moldNo"])
    assert used["machineCode"] <= set(static["machineInfo"]["machineCode"])
    resins = set(static["resinInfo"]["resinCode"])
    assert used["plasticResineCode"] | used["colorMasterbatchCode"] <= resins
    orders = [read_text(p) for p in plant.po_files]
    po_numbers = [n for o in orders for n in o["poNo"]]
    assert len(po_numbers) == len(set(po_numbers))
    assert {n for r in reports for n in r["poNote"]} <= set(po_numbers)


def test_po_values_are_typed(plant: DemoPlant) -> None:
    table = fastexcel.read_excel(plant.po_files[0]).load_sheet("poList").to_arrow()
    assert str(table.schema.field("poReceivedDate").type).startswith("timestamp")
    assert str(table.schema.field("poETA").type).startswith("timestamp")
    values = table.to_pydict()
    assert all(float(q).is_integer() for q in values["itemQuantity"])
    assert any(not float(q).is_integer() for q in values["plasticResinQuantity"])
    assert all(n.startswith("IM18") and len(n) == 9 for n in values["poNo"])


def test_too_many_po_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more than one a day"):
        generate_plant(tmp_path, months=1, rows_per_month=1, po_files=40)
    with pytest.raises(ValueError, match="2018-11"):
        generate_plant(tmp_path, start="Nov 2018")


# --- write_monthly_report -----------------------------------------------------------------------


def test_monthly_report_synthetic(tmp_path: Path) -> None:
    path = write_monthly_report(tmp_path / "monthlyReports_202002.xlsb", month="2020-02",
                                n_rows=50, seed=1)
    text = read_text(path, "Sheet1")
    assert list(text) == MONTHLY_HEADER and len(text["recordDate"]) == 50
    assert all(v.startswith("2020-02-") for v in text["recordDate"])


def test_monthly_report_from_dicts_keeps_extra_columns(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"recordDate": dt.date(2018, 11, 2), "workingShift": "hc", "itemCode": "10190",
         "moldShot": 12, "note": "extra"},
        {"recordDate": dt.date(2018, 11, 3), "workingShift": 2, "plasticResineCode": 10045},
    ]
    path = write_monthly_report(tmp_path / "r.xlsb", rows)
    text = read_text(path, "Sheet1")
    assert list(text) == [*MONTHLY_HEADER, "note"]
    assert text["itemCode"] == ["10190", None]
    assert text["workingShift"] == ["hc", "2"]
    assert text["plasticResineCode"] == [None, "10045"]
    assert text["note"] == ["extra", None]


# --- the generic writers ------------------------------------------------------------------------

HEADER = ["text", "number", "when", "flag"]
ROWS: list[list[object]] = [
    ["10190", 10190, dt.date(2018, 11, 1), True],
    ["0123", 1.25, dt.datetime(2018, 11, 2, 7, 30), False],
    ["=1+1", None, None, None],
    [None, float("nan"), dt.date(2019, 1, 31), None],
    ["héllo 🙂", -3, dt.datetime(2018, 12, 31, 23, 59, 59), True],
]


@pytest.mark.parametrize(("writer", "suffix"), WRITERS)
def test_writer_round_trip_text_reading(writer: Writer, suffix: str, tmp_path: Path) -> None:
    path = writer(tmp_path / f"t{suffix}", "Data", HEADER, ROWS)
    assert fastexcel.read_excel(path).sheet_names == ["Data"]
    text = read_text(path, "Data")
    assert text["text"] == ["10190", "0123", "=1+1", None, "héllo 🙂"]
    assert text["number"] == ["10190", "1.25", None, None, "-3"]
    assert [v[:10] if v else v for v in text["when"]] == [
        "2018-11-01", "2018-11-02", None, "2019-01-31", "2018-12-31"]


@pytest.mark.parametrize(("writer", "suffix"), WRITERS)
def test_writer_round_trip_guessed_types(writer: Writer, suffix: str, tmp_path: Path) -> None:
    path = writer(tmp_path / f"t{suffix}", "Data", HEADER, ROWS)
    sheet = fastexcel.read_excel(path).load_sheet("Data")
    schema = sheet.to_arrow().schema
    assert str(schema.field("text").type) in {"string", "large_string", "string_view"}
    assert str(schema.field("number").type) == "double"
    assert str(schema.field("when").type).startswith("timestamp")
    assert str(schema.field("flag").type) == "bool"
    values = read_guessed(path, "Data")
    assert values["text"][:2] == ["10190", "0123"]
    assert values["number"][:2] == [10190.0, 1.25]
    assert values["when"][:2] == [dt.datetime(2018, 11, 1), dt.datetime(2018, 11, 2, 7, 30)]
    assert values["when"][4] == dt.datetime(2018, 12, 31, 23, 59, 59)
    assert values["flag"] == [True, False, None, None, True]


@pytest.mark.parametrize(("writer", "suffix"), WRITERS)
def test_writer_round_trip_calamine(writer: Writer, suffix: str, tmp_path: Path) -> None:
    path = writer(tmp_path / f"t{suffix}", "Data", HEADER, ROWS)
    rows = read_calamine(path, "Data")
    assert rows[0] == HEADER
    assert rows[1] == ["10190", 10190.0, dt.date(2018, 11, 1), True]
    assert rows[2] == ["0123", 1.25, dt.datetime(2018, 11, 2, 7, 30), False]
    assert rows[3][:2] == ["=1+1", ""]
    assert rows[4][:3] == ["", "", dt.date(2019, 1, 31)]  # NaN is written as an empty cell
    assert isinstance(rows[1][0], str) and isinstance(rows[1][1], float)


def test_xlsb_is_readable_by_pyxlsb(tmp_path: Path) -> None:
    import pyxlsb  # a dev dependency: always there
    path = write_xlsb(tmp_path / "t.xlsb", "Sheet1", HEADER, ROWS)
    with pyxlsb.open_workbook(str(path)) as book, book.get_sheet("Sheet1") as sheet:
        # pyxlsb sizes rows from the BrtWsDim record: it must cover the whole used range.
        assert (sheet.dimension.h, sheet.dimension.w) == (len(ROWS) + 1, len(HEADER))
        rows = [[c.v for c in row] for row in sheet.rows()]
    assert rows[0] == HEADER
    assert rows[1][:2] == ["10190", 10190.0]
    assert pyxlsb.convert_date(rows[1][2]) == dt.datetime(2018, 11, 1)
    assert rows[3] == ["=1+1", None, None, None]


def test_xlsb_empty_and_header_only(tmp_path: Path) -> None:
    path = write_xlsb(tmp_path / "h.xlsb", "Sheet1", ["a", "b"], [])
    sheet = fastexcel.read_excel(path).load_sheet("Sheet1")
    assert sheet.height == 0 and sheet.to_arrow().schema.names == ["a", "b"]


def test_xlsb_big_report_streams(tmp_path: Path) -> None:
    rows: list[list[object]] = [[f"r{i}", i, dt.date(2018, 11, 1 + i % 30)] for i in range(70_000)]
    path = write_xlsb(tmp_path / "big.xlsb", "Sheet1", ["k", "n", "d"], rows)
    text = read_text(path, "Sheet1")
    assert len(text["k"]) == 70_000 and text["k"][-1] == "r69999" and text["n"][-1] == "69999"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (math.inf, ValueError),
        (2**53 + 1, ValueError),
        (dt.datetime(2018, 1, 1, tzinfo=dt.UTC), ValueError),
        (dt.date(1899, 12, 31), ValueError),
        ("x" * 32768, ValueError),
        (object(), TypeError),
        (b"bytes", TypeError),
    ],
)
def test_unwritable_values_are_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_value(value)


def test_bad_sheet_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sheet name"):
        write_xlsb(tmp_path / "x.xlsb", "a/b", ["a"], [])

