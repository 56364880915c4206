"""Pure normalisation (docs/behaviour.md, section 3) on tiny in-memory Arrow arrays and tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from dpo.excel.origin import Source
from dpo.schema import TableSpec
from dpo.transform.arrowtypes import arrow_schema
from dpo.transform.normalize import (
    normalize_table,
    to_boolean,
    to_datetime,
    to_float,
    to_int,
    to_text,
    upper_shift,
)
from dpo.transform.rejects import quarantine_table
from dpo.transform.screen import excel_errors, null_like

TS = dt.datetime


def _ok(converted: tuple[pa.Array, np.ndarray]) -> list[object]:
    values, failed = converted
    assert not failed.any(), (values, failed)
    return values.to_pylist()


# --- null_like ---------------------------------------------------------------------------


def test_null_like_tokens_any_case_and_whitespace() -> None:
    raw = ["", "   ", "\t", "nan", "NaN", "NULL", "None", "n/a", " N/A ", "NA", "na"]
    assert null_like(pa.array(raw)).to_pylist() == [None] * len(raw)


def test_null_like_keeps_real_values_exactly() -> None:
    raw = ["x", "nano", "NAB", "n/a/b", " 12 ", "0", None, "Nonesuch"]
    assert null_like(pa.array(raw)).to_pylist() == raw


def test_null_like_large_string_and_float_nan() -> None:
    arr = pa.array(["NULL", "ok"], pa.large_string())
    out = null_like(arr)
    assert out.type == pa.large_string()
    assert out.to_pylist() == [None, "ok"]
    assert null_like(pa.array([1.0, float("nan"), None])).to_pylist() == [1.0, None, None]
    assert null_like(pa.array([1, None])).to_pylist() == [1, None]


def test_excel_error_values_detected() -> None:
    mask = excel_errors(pa.array(["#N/A", " #DIV/0! ", "#REF!", "N/A", "#hashtag", None]))
    assert mask.tolist() == [True, True, True, False, False, False]
    assert not excel_errors(pa.array([1.0, 2.0])).any()


# --- to_text -------------------------------------------------------------------------------


def test_to_text_whole_floats_become_integer_text() -> None:
    assert _ok(to_text(pa.array([10190.0, -3.0, 0.0, 1.5, None]))) == [
        "10190", "-3", "0", "1.5", None]


def test_to_text_keeps_text_exactly() -> None:
    raw = ["CT-PXN-HEAD-COVER-5.0", "10190.0", " padded ", "9917349N15", "007", None]
    assert _ok(to_text(pa.array(raw))) == raw


def test_to_text_integers() -> None:
    assert _ok(to_text(pa.array([12, None, -7]))) == ["12", None, "-7"]


# --- to_int ----------------------------------------------------------------------------------


def test_to_int_accepts_whole_numbers_in_text_and_numbers() -> None:
    assert _ok(to_int(pa.array(["12", "12.0", " 7 ", "-3", "+4", "0", None]))) == [
        12, 12, 7, -3, 4, 0, None]
    assert _ok(to_int(pa.array([12.0, -2.0, None]))) == [12, -2, None]
    assert _ok(to_int(pa.array([12, None], pa.int32()))) == [12, None]


@pytest.mark.parametrize("bad", ["12.5", "abc", "99999999999999999999", "1e3", "12,0", "1 2"])
def test_to_int_rejects(bad: str) -> None:
    values, failed = to_int(pa.array(["1", bad, None]))
    assert values.to_pylist() == [1, None, None]
    assert failed.tolist() == [False, True, False]


def test_to_int_rejects_fractional_float() -> None:
    values, failed = to_int(pa.array([12.5, 3.0]))
    assert values.to_pylist() == [None, 3]
    assert failed.tolist() == [True, False]


def test_to_int_rejects_floats_beyond_int64_instead_of_wrapping() -> None:
    values, failed = to_int(pa.array([1e20, -1e19, float("inf"), 7.0]))
    assert values.to_pylist() == [None, None, None, 7]
    assert failed.tolist() == [True, True, True, False]


def test_to_text_huge_float_is_not_wrapped() -> None:
    text = _ok(to_text(pa.array([1e20, float("inf")])))
    assert "-9223372036854775808" not in text
    assert float(text[0]) == 1e20


@pytest.mark.parametrize(
    ("target", "good", "bad"),
    [
        (pa.int8(), ["127", "-128"], ["128", "-129"]),
        (pa.int16(), ["32767"], ["32768"]),
        (pa.int32(), ["-2147483648"], ["2147483648"]),
        (pa.uint8(), ["0", "255"], ["256", "-1"]),
        (pa.uint64(), ["18446744073709551615"], ["18446744073709551616", "-1"]),
    ],
)
def test_sized_ints_range(target: pa.DataType, good: list[str], bad: list[str]) -> None:
    values, failed = to_int(pa.array(good + bad), target)
    assert values.type == target
    assert values.to_pylist() == [int(g) for g in good] + [None] * len(bad)
    assert failed.tolist() == [False] * len(good) + [True] * len(bad)


# --- to_float --------------------------------------------------------------------------------


def test_to_float_any_number() -> None:
    assert _ok(to_float(pa.array(["1.5", "2", "-0.25", ".5", "1e3", " 3.0 ", None]))) == [
        1.5, 2.0, -0.25, 0.5, 1000.0, 3.0, None]
    assert _ok(to_float(pa.array([1, 2]))) == [1.0, 2.0]
    assert _ok(to_float(pa.array([2.5], pa.float64()), pa.float32())) == [2.5]


@pytest.mark.parametrize("bad", ["abc", "inf", "1,5", "--1", "1.2.3"])
def test_to_float_rejects(bad: str) -> None:
    values, failed = to_float(pa.array([bad, "1"]))
    assert values.to_pylist() == [None, 1.0]
    assert failed.tolist() == [True, False]


# --- to_datetime ------------------------------------------------------------------------------


def test_to_datetime_iso_text() -> None:
    raw = ["2018-11-01", "2018-11-01 10:31:00", "2018-11-01T10:31", "2018-11-01 10:31:05.250",
           None]
    values, failed = to_datetime(pa.array(raw))
    assert values.type == pa.timestamp("ns")
    assert not failed.any()
    assert values.to_pylist() == [
        TS(2018, 11, 1), TS(2018, 11, 1, 10, 31), TS(2018, 11, 1, 10, 31),
        TS(2018, 11, 1, 10, 31, 5, 250000), None]


def test_to_datetime_serial_numbers_with_time_of_day() -> None:
    # Serial day 0 = 1899-12-30; 43405 = 2018-11-01; fractions are the time of day.
    as_text = _ok(to_datetime(pa.array(["43405", "43405.5", "0", "43405.4381944444"])))
    assert as_text == [TS(2018, 11, 1), TS(2018, 11, 1, 12), TS(1899, 12, 30),
                       TS(2018, 11, 1, 10, 31)]
    as_numbers = _ok(to_datetime(pa.array([43405.0, 43405.75, 43405.4381944444])))
    assert as_numbers == [TS(2018, 11, 1), TS(2018, 11, 1, 18), TS(2018, 11, 1, 10, 31)]
    assert _ok(to_datetime(pa.array([43405]))) == [TS(2018, 11, 1)]


def test_to_datetime_real_timestamps_and_dates() -> None:
    assert _ok(to_datetime(pa.array([TS(2018, 11, 1, 10, 31), None]))) == [
        TS(2018, 11, 1, 10, 31), None]
    assert _ok(to_datetime(pa.array([dt.date(2018, 11, 1)]))) == [TS(2018, 11, 1)]
    ms = pa.array([TS(2020, 2, 29, 23, 59, 59)], pa.timestamp("ms"))
    assert _ok(to_datetime(ms)) == [TS(2020, 2, 29, 23, 59, 59)]


@pytest.mark.parametrize(
    "bad", ["2018-02-30", "2018-13-01", "2019-02-29", "hello", "01/11/2018", "-5", "2018-11-01x"]
)
def test_to_datetime_rejects_impossible_or_unknown(bad: str) -> None:
    values, failed = to_datetime(pa.array(["2018-11-01", bad]))
    assert values.to_pylist() == [TS(2018, 11, 1), None]
    assert failed.tolist() == [False, True]


def test_to_datetime_rejects_negative_serial_number() -> None:
    values, failed = to_datetime(pa.array([-1.0, 43405.0]))
    assert failed.tolist() == [True, False]
    assert values.to_pylist()[0] is None


# --- to_boolean / upper_shift ------------------------------------------------------------------


def test_to_boolean() -> None:
    values, failed = to_boolean(pa.array(["TRUE", "no", "1", "0", " Y ", "false", "maybe", None]))
    assert values.to_pylist() == [True, False, True, False, True, False, None, None]
    assert failed.tolist() == [False] * 6 + [True, False]
    assert _ok(to_boolean(pa.array([True, None]))) == [True, None]
    values, failed = to_boolean(pa.array([1.0, 0.0, 2.0]))
    assert values.to_pylist() == [True, False, None]
    assert failed.tolist() == [False, False, True]


def test_upper_shift() -> None:
    assert upper_shift(pa.array(["hc", "Day", "NIGHT", None, "1"])).to_pylist() == [
        "HC", "DAY", "NIGHT", None, "1"]


# --- normalize_table / quarantine_table ----------------------------------------------------------

SPEC = TableSpec(
    name="records",
    kind="dynamic",
    path=Path("records_history"),
    dtypes=(
        ("recordDate", "datetime64[ns]"),
        ("workingShift", "string"),
        ("itemCode", "string"),
        ("quantity", "Int64"),
        ("weight", "Float64"),
    ),
)


def _raw(rows: list[tuple[str | None, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.table({name: pa.array(list(col), pa.string())
                     for name, col in zip(SPEC.columns, columns, strict=True)})


def test_normalize_table_types_and_values() -> None:
    raw = _raw([
        ("2018-11-01", "hc", "10190", "12.0", "1.5"),
        ("43406.5", "day", "CT-PXN-HEAD-COVER-5.0", "N/A", " "),
        (None, None, "10190.0", "", "2"),
    ])
    norm = normalize_table(raw, SPEC, Source("records_201811.xlsx", "Sheet1"))
    assert norm.cells == ()
    assert len(norm.bad_rows) == 0
    assert norm.table.schema == arrow_schema(SPEC)
    frame = norm.table.to_pandas()
    assert [str(t) for t in frame.dtypes] == ["datetime64[ns]", "string", "string", "Int64",
                                              "Float64"]
    assert frame["recordDate"].tolist()[:2] == [pd.Timestamp("2018-11-01"),
                                                pd.Timestamp("2018-11-02 12:00")]
    assert frame["recordDate"].isna().tolist() == [False, False, True]
    assert frame["workingShift"].tolist()[:2] == ["HC", "DAY"]
    assert frame["itemCode"].tolist() == ["10190", "CT-PXN-HEAD-COVER-5.0", "10190.0"]
    assert frame["quantity"].isna().tolist() == [False, True, True]
    assert frame["quantity"][0] == 12
    assert frame["weight"].isna().tolist() == [False, True, False]


def test_normalize_table_reports_each_bad_cell_with_excel_location() -> None:
    raw = _raw([
        ("2018-11-01", "A", "x", "1", "1"),
        ("2018-02-30", "A", "x", "abc", "1"),
        ("2018-11-01", "A", "x", "2", "1"),
        ("2018-11-01", "A", "x", "12.5", "#DIV/0!"),
    ])
    norm = normalize_table(raw, SPEC, Source("records_201811.xlsx", "Sheet1", first_row=5))
    got = {(c.row, c.column, c.value) for c in norm.cells}
    assert got == {(6, "recordDate", "2018-02-30"), (6, "quantity", "abc"),
                   (8, "quantity", "12.5"), (8, "weight", "#DIV/0!")}
    assert norm.bad_rows.tolist() == [1, 3]
    for cell in norm.cells:
        assert cell.file == "records_201811.xlsx"
        assert cell.sheet == "Sheet1"
        assert cell.reason
        assert cell.file in cell.describe() and str(cell.row) in cell.describe()
    (div,) = [c for c in norm.cells if c.column == "weight"]
    assert "Excel error" in div.reason
    (abc,) = [c for c in norm.cells if c.value == "abc"]
    assert "whole number" in abc.reason


def test_quarantine_table_keeps_raw_text_location_and_reason() -> None:
    raw = _raw([
        ("2018-11-01", "A", "x", "1", "1"),
        ("2018-11-01", "b", "y", "abc", "oops"),
        ("2018-11-01", "C", "z", "12.5", "2"),
    ])
    source = Source("records_201811.xlsx", "Sheet1")
    norm = normalize_table(raw, SPEC, source)
    quarantine = quarantine_table(raw, norm)
    assert quarantine.column_names == [*SPEC.columns, "_source_file", "_sheet", "_excel_row",
                                       "_reason"]
    rows = quarantine.to_pylist()
    assert [r["_excel_row"] for r in rows] == [3, 4]
    assert rows[0]["quantity"] == "abc" and rows[0]["weight"] == "oops"
    assert rows[0]["workingShift"] == "b"  # raw text, not normalised
    assert rows[1]["quantity"] == "12.5"
    assert {r["_source_file"] for r in rows} == {"records_201811.xlsx"}
    assert {r["_sheet"] for r in rows} == {"Sheet1"}
    assert "quantity" in rows[0]["_reason"] and "weight" in rows[0]["_reason"]
    assert "'abc'" in rows[0]["_reason"]
    assert "'12.5'" in rows[1]["_reason"]
