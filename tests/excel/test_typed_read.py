"""Typed reading (excel.py): numbers and dates come straight from their cells when every cell
of a column has one type; otherwise the sheet is read as text. Both give the same table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from conftest import (
    SOURCE_HEADER,
    collect,
    dynamic_entry,
    good_row,
    output_path,
    table_result,
    write_schema,
    write_source,
)

from dpo.excel.reader import read_sheet
from dpo.results import Status
from dpo.schema import RENAMES, load_schema

# Text fastexcel reads as empty in a column it types as numbers (pandas' NA strings), beyond
# the null tokens dpo itself treats as empty.
READER_NULL_TEXT = ("#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                    "1.#QNAN", "<NA>")


def _spec(root: Path):  # -> TableSpec
    return load_schema(root / "database" / "databaseSchemas.json", root).table("records")


def _read(root: Path, path: Path):  # -> RawSheet
    spec = _spec(root)
    return read_sheet(path, spec.sheet_name, spec.columns, RENAMES,
                      numeric=spec.float_columns, text=spec.text_columns)


@pytest.mark.parametrize("ext", ["xlsx", "xlsb"])
def test_clean_sheet_is_read_typed(records_root: Path, ext: str) -> None:
    path = write_source(records_root, f"records_201811.{ext}", [good_row(i) for i in range(4)])
    raw = _read(records_root, path)
    types = dict(zip(raw.table.column_names, raw.table.schema.types, strict=True))
    assert pa.types.is_floating(types["quantity"]) and pa.types.is_floating(types["weight"])
    assert pa.types.is_timestamp(types["recordDate"])
    assert pa.types.is_string(types["itemCode"]) and pa.types.is_string(types["workingShift"])
    assert raw.exact == {}  # typed values are exact already: no second read


@pytest.mark.parametrize("ext", ["xlsx", "xlsb"])
def test_a_column_mixing_numbers_and_text_reads_the_sheet_as_text(
    records_root: Path, ext: str
) -> None:
    rows = [good_row(i) for i in range(4)]
    rows[2][SOURCE_HEADER.index("weight")] = " "
    path = write_source(records_root, f"records_201811.{ext}", rows)
    raw = _read(records_root, path)
    assert all(pa.types.is_string(t) for t in raw.table.schema.types)
    assert raw.exact["weight"].to_pylist() == [0.0, 1.25, None, 3.75]


@pytest.mark.parametrize("ext", ["xlsx", "xlsb"])
@pytest.mark.parametrize("token", READER_NULL_TEXT)
def test_text_the_reader_would_empty_is_reported(records_root: Path, ext: str, token: str) -> None:
    """fastexcel reads `#N/A`, `<NA>`, `-1.#IND`... as empty in a number column read typed,
    but says so (to_arrow_with_errors): dpo reads the sheet as text, so they are reported."""
    write_schema(records_root, {"records": dynamic_entry(extension=f".{ext}")})
    rows = [good_row(i) for i in range(4)]
    rows[1][SOURCE_HEADER.index("quantity")] = token
    write_source(records_root, f"records_201811.{ext}", rows)
    error = table_result(collect(records_root, on_error_cells="fail"), "records").error
    assert error is not None, token
    assert (error.row, error.column, error.cells[0].value) == (3, "quantity", token)


def test_files_read_typed_and_as_text_make_one_exact_table(records_root: Path) -> None:
    """Month 1 is typed; month 2 has a text cell (read as text); month 3 has an empty weight
    column and dates as serial numbers. The table is what each cell says, to the last bit."""
    month1 = [good_row(i) for i in range(3)]
    month2 = [good_row(i) for i in range(3, 6)]
    month2[1][SOURCE_HEADER.index("quantity")] = " 104 "  # text: the sheet is read as text
    month2[2][SOURCE_HEADER.index("weight")] = 5.000000000001  # beyond the text's 9 decimals
    month3 = [good_row(i) for i in range(6, 8)]
    for row in month3:
        row[SOURCE_HEADER.index("weight")] = None
        row[0] = 43405.5  # 2018-11-01 12:00 as an Excel serial number
    for name, rows in (("201811", month1), ("201812", month2), ("201901", month3)):
        write_source(records_root, f"records_{name}.xlsx", rows)
    result = collect(records_root)
    assert table_result(result, "records").status is Status.SUCCESS, result.to_dict()
    frame = pd.read_parquet(output_path(records_root, "records"))
    assert frame["quantity"].tolist() == [100, 101, 102, 103, 104, 105, 106, 107]
    assert frame["weight"].tolist()[:6] == [0.0, 1.25, 2.5, 3.75, 5.0, 5.000000000001]
    assert frame["weight"].isna().tolist()[6:] == [True, True]
    assert str(frame["quantity"].dtype) == "Int64" and str(frame["weight"].dtype) == "Float64"
    assert frame["recordDate"].tolist()[6:] == [pd.Timestamp("2018-11-01 12:00")] * 2
    assert frame["recordDate"].tolist()[0] == pd.Timestamp(dt.datetime(2018, 11, 1))


def test_a_date_past_2262_is_reported_not_wrapped(records_root: Path) -> None:
    write_schema(records_root, {"records": dynamic_entry(extension=".xlsb")})
    rows = [good_row(i) for i in range(3)]
    rows[2][0] = dt.datetime(2263, 1, 1)
    write_source(records_root, "records_201811.xlsb", rows)
    error = table_result(collect(records_root), "records").error
    assert error is not None
    assert (error.row, error.column) == (4, "recordDate")



def test_an_empty_column_logs_no_reader_warning(
    records_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """fastexcel warns "Could not determine dtype for column 4, falling back to string" for a
    column with no value; that reached the plant engineer's terminal, and is not news to dpo
    (an empty column is fine, whatever its type)."""
    rows = [good_row(i) for i in range(4)]
    for row in rows:
        row[SOURCE_HEADER.index("weight")] = None
    path = write_source(records_root, "records_201811.xlsx", rows)
    raw = _read(records_root, path)
    assert raw.table.column("weight").null_count == 4
    assert [r.getMessage() for r in caplog.records if r.name.startswith("fastexcel")] == []
