"""Property tests of normalisation: any cell either becomes the schema type exactly, or is
reported as a row-level error (file, row, column, raw value). Never silently changed or dropped.

Each property has two halves. Soundness: a value that was not reported equals what an
independent oracle (Python's int/Decimal/float/datetime, written from docs/behaviour.md,
sections 2-4) reads in the cell. Completeness: the canonical spellings (what Excel and the
plant's exports produce) are accepted, not reported. In between, a converter may be strict:
"1e3" in an integer column may be an error, never 1 or 3.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import collect, dynamic_entry, output_path, table_result, write_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpo.demo.plant import write_xlsx
from dpo.demo.writers import ExcelError, write_xlsb
from dpo.excel.numbercells import general
from dpo.excel.origin import Source
from dpo.schema import TableSpec
from dpo.tables.parquet import read_verified
from dpo.transform.normalize import normalize_table

COLUMNS = {"code": "string", "qty": "Int64", "weight": "Float64", "when": "datetime64[ns]",
           "ok": "boolean"}
SPEC = TableSpec(name="t", kind="dynamic", path=Path("t"), dtypes=tuple(COLUMNS.items()))
KIND = {"string": "string", "Int64": "int", "Float64": "float", "datetime64[ns]": "datetime",
        "boolean": "boolean"}
EPOCH = dt.datetime(1970, 1, 1)
EXCEL_DAY0 = dt.datetime(1899, 12, 30)
LAST_DAY = 132_320  # serial of 2262-04-11: datetime64[ns] cannot hold that whole day
INT64 = 2**63
ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?$",
                 re.ASCII)
SERIAL = re.compile(r"^[ \t\n]*(\d+(?:\.\d+)?)[ \t\n]*$", re.ASCII)
ERROR = object()  # the oracle's "this cell must be reported"
# The oracle's own lists, written from docs/behaviour.md and never imported from the code: a
# token added there by mistake ("n" as null) must make these tests fail, not follow along.
NULL_TEXT = ("", "nan", "null", "none", "n/a", "na")
EXCEL_ERROR_TEXT = ("#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!",
                    "#GETTING_DATA", "#SPILL!", "#CALC!")


# -- the oracle -----------------------------------------------------------------------------
def ns(moment: dt.datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def serial_ns(days: float) -> Any:
    """Excel serial day -> ns since 1970; day 0 is 1899-12-30. Days before it, and days past
    the last whole day a datetime64[ns] holds, must be reported."""
    if not 0 <= days < LAST_DAY:
        return ERROR
    ms = round(days * 86_400_000.0)  # Excel keeps time to the millisecond
    return ms * 10**6 + ns(EXCEL_DAY0)


def read_text(kind: str, text: str) -> Any:
    """What a text cell means for `kind`: a value, None (empty) or ERROR; `lenient` readings
    (e.g. "1e3" as 1000) are left to `soundly_read`."""
    if text.strip().lower() in NULL_TEXT:  # whitespace as Unicode (and Python) defines it
        return None
    if text.strip() in EXCEL_ERROR_TEXT:
        return ERROR
    if kind == "string":
        return text
    core = text.strip()
    if kind == "int":
        try:
            number = Decimal(core)
        except InvalidOperation:
            return ERROR
        if not number.is_finite() or number != number.to_integral_value() or abs(number) >= INT64:
            return ERROR
        return int(number)
    if kind == "float":
        try:
            value = float(core)
        except ValueError:
            return ERROR
        return value if value not in (float("inf"), float("-inf")) and value == value else ERROR
    if kind == "boolean":
        low = core.lower()
        return True if low in ("true", "1", "yes", "y") else False if low in (
            "false", "0", "no", "n") else ERROR
    if SERIAL.match(text):
        return serial_ns(float(SERIAL.match(text).group(1)))  # type: ignore[union-attr]
    match = ISO.match(core)
    if not match:
        return ERROR
    y, m, d, hh, mm, ss, frac = match.groups()
    try:
        moment = dt.datetime(int(y), int(m), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
    except ValueError:
        return ERROR  # 2018-02-30 is not a date (never rolled over to March)
    value = ns(moment) + int((frac or "0").ljust(9, "0"))
    return value if -(2**63) < value < 2**63 else ERROR  # beyond datetime64[ns]


# -- generated cell text ------------------------------------------------------------------------
datetimes = st.datetimes(min_value=dt.datetime(1900, 3, 1), max_value=dt.datetime(9999, 12, 30))
int_text = st.builds(lambda n, pad, tail: f"{pad}{n}{tail}{pad}",
                     st.integers(-(2**70), 2**70), st.sampled_from(["", " ", "\t"]),
                     st.sampled_from(["", ".0", ".00", ".5", "e3", "E0"]))
float_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda x: f"{x:.7g}"),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str))
date_text = st.one_of(
    datetimes.map(lambda d: d.strftime("%Y-%m-%d")),
    datetimes.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    datetimes.map(lambda d: d.strftime("%Y-%m-%dT%H:%M")),
    datetimes.map(lambda d: d.isoformat(sep=" ")),
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(1900, 2100),
              st.integers(0, 13), st.integers(0, 32)),
    st.floats(-10, 3_000_000, allow_nan=False).map(lambda x: f"{x:.6f}".rstrip("0").rstrip(".")),
    st.integers(-5, 3_000_000).map(str))
tricky = st.sampled_from([
    "", " ", "  \t", "nan", "NaN", "NULL", "none", "N/A", " na ", "n/a ", "#N/A", " #DIV/0! ",
    "#REF!", "true", "FALSE", "Yes", "n", "1", "0", "-0", "+7", "0x1F", "1_000", "1,5", "½",
    "١٢", "12\u00a0", "Infinity", "∞", "2018-02-29", "2020-02-29", "31/12/2018", "abc", "ßÆ🙂",
    "0300200", "24720322", "9917349N15", "0xFFFFFFFFFFFFFFFF", "=1+1", "'12", "12 pcs", "1e400", "-1e-400"])
any_text = st.one_of(tricky, int_text, float_text, date_text, st.text(max_size=12))
cells = st.one_of(st.none(), any_text)


def table_of(rows: list[dict[str, str | None]]) -> pa.Table:
    return pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in COLUMNS})


def typed(table: pa.Table, column: str) -> list[Any]:
    data = table.column(column)
    if COLUMNS[column] == "datetime64[ns]":
        data = data.cast(pa.int64())
    return data.to_pylist()


# -- properties on normalize_table ------------------------------------------------------------
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({c: cells for c in COLUMNS}), min_size=1, max_size=12))
def test_every_text_cell_is_converted_exactly_or_reported(rows: list[dict[str, Any]]) -> None:
    norm = normalize_table(table_of(rows), SPEC, Source("plant.xlsx", "Sheet1"))
    reported = {(c.row, c.column): c for c in norm.cells}
    assert len(reported) == len(norm.cells)  # one report per cell
    for column, dtype in COLUMNS.items():
        kind = KIND[dtype]
        values = typed(norm.table, column)
        for i, row in enumerate(rows):
            raw, got, cell = row[column], values[i], reported.get((i + 2, column))
            if raw is None:
                assert got is None and cell is None
                continue
            meaning = read_text(kind, raw)
            if cell is not None:  # reported: where, what, and the whole row is marked bad
                assert (cell.file, cell.sheet, cell.value) == ("plant.xlsx", "Sheet1", raw)
                assert i in norm.bad_rows
                assert meaning is ERROR or not canonical(kind, raw), (column, raw, cell.reason)
                continue
            assert meaning is not ERROR, (column, raw, got)  # never accepted silently
            assert got == meaning, (column, raw, got, meaning)  # never changed, never dropped
    assert sorted(norm.bad_rows.tolist()) == sorted({c.row - 2 for c in norm.cells})
    kept = norm.without_bad_rows()
    assert kept.table.num_rows == len(rows) - len(norm.bad_rows)


def canonical(kind: str, text: str) -> bool:
    """Spellings that must be accepted: what Excel and the plant's exports write."""
    core = text.strip(" ")
    if kind == "string":
        return True
    if kind == "int":
        return bool(re.fullmatch(r"[+-]?\d+(\.0+)?", core, re.ASCII))
    if kind == "float":
        return bool(re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", core, re.ASCII))
    if kind == "boolean":
        return core.lower() in ("true", "false", "1", "0", "yes", "no", "y", "n")
    return bool(ISO.match(core)) or bool(re.fullmatch(r"\d+(\.\d+)?", core, re.ASCII))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                          st.integers(-(2**62), 2**62).map(float)), min_size=1, max_size=20))
def test_numbers_held_by_the_reader_keep_their_exact_value(numbers: list[float | None]) -> None:
    """Numeric cells: the reader's text keeps 9 decimals, so the exact float comes alongside;
    an integer column accepts only whole numbers within Int64, a float column any number, a
    date column serials from day 0 (1899-12-30) to 9999-12-31."""
    from dpo.transform.normalize import to_datetime, to_float, to_int

    exact = pa.array(numbers, pa.float64())
    text = pa.array([None if x is None else f"{x:.9f}".rstrip("0").rstrip(".") for x in numbers],
                    pa.string())
    ints, int_bad = to_int(text, pa.int64(), exact)
    floats, float_bad = to_float(text, pa.float64(), exact)
    dates, date_bad = to_datetime(text, exact)
    as_ns = dates.cast(pa.int64()).to_pylist()
    for i, x in enumerate(numbers):
        if x is None:
            assert ints[i].as_py() is None and not int_bad[i]
            continue
        assert (floats[i].as_py(), bool(float_bad[i])) == (x, False)
        whole = x == int(x) and abs(x) < INT64
        assert (ints[i].as_py(), bool(int_bad[i])) == ((int(x), False) if whole else (None, True))
        expected = serial_ns(x)
        assert (as_ns[i], bool(date_bad[i])) == (
            (None, True) if expected is ERROR else (expected, False))


# -- the same promise through real .xlsx files --------------------------------------------------
HEADER = ["recordDate", "workingShift", "itemCode", "quantity", "weight", "plasticResine"]
REAL_KINDS = {"recordDate": "datetime", "itemCode": "string", "quantity": "int",
              "weight": "float"}
ms_datetimes = datetimes.map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
# Integer columns get whole numbers, numbers with a visible fraction and fractions beyond the
# reader's 9 decimals; float columns get any finite double.
whole_or_plain = st.one_of(st.integers(-(2**53), 2**53), st.floats(-1e300, 1e300).filter(
    lambda x: x == int(x)), st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)))
beyond_nine_decimals = st.one_of(st.floats(-1e-6, 1e-6, allow_nan=False),
                                 st.floats(-1e6, 1e6, allow_nan=False))
numbers = st.one_of(whole_or_plain, st.floats(allow_nan=False, allow_infinity=False))
values: dict[str, st.SearchStrategy[Any]] = {
    "recordDate": st.one_of(st.none(), ms_datetimes, ms_datetimes.map(lambda d: d.date()),
                            # (+ 0.0: a -0.0 date cell, text "-0", may be refused)
                            st.floats(-3, 3e6, allow_nan=False).map(lambda x: x + 0.0),
                            st.integers(-3, 3_000_000),
                            date_text, tricky, st.just(ExcelError("#N/A"))),
    # (+ 0.0 here too: a -0.0 number cell in a text column reads "-0" where Excel shows 0;
    # no exporter writes one, and telling it from a typed "-0" needs the cell's type)
    "itemCode": st.one_of(st.none(), st.integers(-(2**53), 2**53),
                          beyond_nine_decimals.map(lambda x: x + 0.0),
                          st.booleans(), tricky,
                          st.text(max_size=10), st.just(ExcelError("#REF!", formula=False))),
    "quantity": st.one_of(st.none(), whole_or_plain, beyond_nine_decimals, st.booleans(),
                          int_text, tricky,
                          ms_datetimes, st.just(ExcelError("#DIV/0!"))),
    "weight": st.one_of(st.none(), numbers, st.booleans(), float_text, tricky,
                        st.just(ExcelError("#VALUE!"))),
}


def expected_from_cell(column: str, value: Any) -> Any:
    """What a written cell must become (None, a value, or ERROR), by docs/behaviour.md, sections 2-4."""
    kind = REAL_KINDS[column]
    if value is None:
        return None
    if isinstance(value, ExcelError):
        return ERROR
    if isinstance(value, str):
        return read_text(kind, value)
    if isinstance(value, bool):  # a TRUE/FALSE cell
        return {"string": str(value).lower()}.get(kind, ERROR)
    if isinstance(value, dt.datetime | dt.date):
        moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(
            value, dt.time())
        if kind != "datetime":
            return ERROR
        return ns(moment) if ns(moment) < 2**63 else ERROR  # after 2262-04-11: not in ns
    number = float(f"{float(value):.16G}")  # what the .xlsx writer (xlsxwriter) stores
    if number in (float("inf"), float("-inf")):  # 1.7976931348623155e308 is stored as 1.8e308
        return ERROR
    if kind == "string":  # integer text; else the reader's 9 decimals if they are exact,
        if number == int(number):  # else Excel's General 15 significant digits
            return str(int(number))
        nine = f"{number:.9f}".rstrip("0").rstrip(".")
        return nine if float(nine) == number else format(number, ".15g")
    if kind == "int":
        return int(number) if number == int(number) and abs(number) < INT64 else ERROR
    if kind == "float":
        return number
    return serial_ns(number)


def ids(n: int) -> list[str]:
    return [f"ROW-{i:04d}" for i in range(n)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(st.lists(st.fixed_dictionaries(values), min_size=1, max_size=15))
def test_real_workbooks_every_cell_exact_or_quarantined_with_its_place(
    rows: list[dict[str, Any]]
) -> None:
    """Written with the fixture writer, read by the production reader, normalised and merged by
    the collector with the quarantine policy: each row lands either in the output, every cell
    exactly as the oracle reads it, or in quarantine with the reason for a cell that must be
    reported. None is lost (a unique workingShift per row keeps exact duplicates apart)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_schema(root)
        source = root / "database" / "dynamicDatabase" / "records_history"
        source.mkdir(parents=True)
        shifts = ids(len(rows))
        body = [[r["recordDate"], shifts[i], r["itemCode"], r["quantity"], r["weight"], "PA"]
                for i, r in enumerate(rows)]
        write_xlsx(source / "records_201811.xlsx", "Sheet1", HEADER, body)
        result = collect(root, on_bad_rows="quarantine", on_error_cells="quarantine")
        table = table_result(result, "records")
        quarantine = root / "agents" / "shared_db" / "dynamicDatabase" / "quarantine" / (
            "records.parquet")
        out = []
        if output_path(root, "records").exists():
            data = read_verified(output_path(root, "records"))
            dates = data.column("recordDate").cast(pa.int64())
            out = data.set_column(0, "recordDate", dates).to_pylist()
        rejected = pq.read_table(quarantine).to_pylist() if quarantine.exists() else []
    by_shift = {r["workingShift"]: r for r in out}
    held = {r["workingShift"]: r for r in rejected}
    assert len(out) + len(rejected) == len(rows), (len(out), len(rejected))
    assert table.rows_rejected == len(rejected)
    for i, row in enumerate(rows):
        shift = shifts[i].upper()
        expected = {c: expected_from_cell(c, row[c]) for c in REAL_KINDS}
        if shift in by_shift:
            assert ERROR not in expected.values(), (row, by_shift[shift])
            got = by_shift[shift]
            for column, want in expected.items():
                assert got[column] == want, (column, row[column], got[column], want)
        else:
            reasons = held[shifts[i]]["_reason"]
            assert held[shifts[i]]["_excel_row"] == i + 2
            named = {c for c in REAL_KINDS if f"{c}:" in reasons}
            assert named, reasons
            assert {c for c, want in expected.items() if want is ERROR} <= named, (row, reasons)
            for column in named:  # a strict reading is allowed only for an odd spelling
                raw = row[column]
                assert expected[column] is ERROR or (
                    isinstance(raw, str) and not canonical(REAL_KINDS[column], raw)), (
                    column, raw, reasons)


@pytest.mark.parametrize("ext", ["xlsx", "xlsb"])
@pytest.mark.parametrize("column, value, mixed, loaded", [
    ("quantity", 1e-10, False, None), ("quantity", 12.0000000001, False, None),
    ("quantity", 1e-10, True, None), ("quantity", -1e-10, True, None),
    ("itemCode", 1.5e-10, False, "1.5e-10"), ("itemCode", 1.5e-10, True, "1.5e-10"),
    ("itemCode", 12.0000000001, False, "12.0000000001"),
    ("itemCode", 1 / 3, True, "0.333333333333333")])
def test_tiny_fractions_in_integer_and_text_columns_are_reported_or_kept(
    tmp_path: Path, ext: str, column: str, value: float, mixed: bool, loaded: str | None
) -> None:
    """The reader's text of a number keeps 9 decimals (1.5e-10 reads as "0"). An integer
    column with a tiny fraction is an error naming the number; a text column loads the
    number as Excel's General format shows it. `mixed`: another column mixes numbers and
    text (a blank " " cell), so the sheet is read as text."""
    write_schema(tmp_path, {"records": dynamic_entry(extension=f".{ext}")})
    source = tmp_path / "database" / "dynamicDatabase" / "records_history"
    source.mkdir(parents=True)
    row = {"recordDate": dt.datetime(2018, 11, 1), "itemCode": "A", "quantity": 1, "weight": 1.0}
    row[column] = value
    rows = [[row["recordDate"], "1", row["itemCode"], row["quantity"], row["weight"], "PA"]]
    if mixed:
        rows.append([dt.datetime(2018, 11, 2), "1", "B", 2, " ", "PA"])  # weight: number + text
    writer = write_xlsx if ext == "xlsx" else write_xlsb
    writer(source / f"records_201811.{ext}", "Sheet1", HEADER, rows)
    if loaded is None:
        error = table_result(collect(tmp_path), "records").error
        assert error is not None
        cells = [(c.row, c.value) for c in error.cells if c.column == column]
        assert cells == [(2, general(value))]  # the number itself, not the reader's "0"
        return
    result = table_result(collect(tmp_path), "records")  # (a blank weight is NA, not an error)
    assert result.error is None, result.error
    published = read_verified(output_path(tmp_path, "records")).column(column).to_pylist()
    assert published == [loaded, "B"][:len(rows)]
