"""The same data in another form loads the same values (docs/behaviour.md, "Real exports").

Random tables are written as a plant's tools write them: typed cells with shared strings
(xlsxwriter), a binary .xlsb, inline strings (a hand-rolled exporter), numbers and dates
typed as text, and extra columns shuffled in among the schema's. Every form must publish the
identical Phase 1 table. The oracle is the typed form itself: nothing here imports the
code's token lists.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from conftest import SOURCE_HEADER, collect, dynamic_entry, output_path, source_dir, write_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliabilitytools import raw_xlsx

from dpo.demo.writers import write_xlsb
from dpo.demo.xlsx import write_xlsx

# Text that is never a null token nor padded: a code starts with a letter other than N.
_CODE = st.from_regex(r"[A-MP-Z][A-Z0-9\-]{0,8}", fullmatch=True)
_ROW = st.fixed_dictionaries({
    "recordDate": st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2200, 12, 31)).map(
        lambda d: d.replace(microsecond=0)),
    "workingShift": st.sampled_from(["1", "2", "3", "hc", "HC"]),
    "itemCode": _CODE,
    "quantity": st.integers(-10**9, 10**9),
    "weight": st.integers(-10**6, 10**6).map(lambda n: n / 8),  # exact in text and binary
    "plasticResine": _CODE,
})
Writer = Callable[[Path, list[dict[str, Any]]], None]


def _typed(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[row[c] for c in SOURCE_HEADER] for row in rows]


def _as_text(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return repr(value) if isinstance(value, float) else str(value)


def _shuffled(path: Path, rows: list[dict[str, Any]]) -> None:
    extra = ["note", "operator", "Unnamed"]
    header = [*SOURCE_HEADER, *extra]
    random.Random(len(rows)).shuffle(header)
    body = [[row.get(c, f"x{i}") for c in header] for i, row in enumerate(rows)]
    write_xlsx(path.with_suffix(".xlsx"), "Sheet1", header, body)


FORMS: dict[str, Writer] = {
    "shared strings, typed cells": lambda p, rows: write_xlsx(
        p.with_suffix(".xlsx"), "Sheet1", SOURCE_HEADER, _typed(rows)),
    "inline strings": lambda p, rows: raw_xlsx(
        p.with_suffix(".xlsx"), "Sheet1", SOURCE_HEADER,
        [[_as_text(v) if isinstance(v, dt.datetime) else v for v in r] for r in _typed(rows)]),
    "numbers and dates as text": lambda p, rows: write_xlsx(
        p.with_suffix(".xlsx"), "Sheet1", SOURCE_HEADER,
        [[_as_text(v) for v in r] for r in _typed(rows)]),
    "extra columns, shuffled": _shuffled,
}
BINARY: dict[str, Writer] = {
    "xlsb, typed cells": lambda p, rows: write_xlsb(
        p.with_suffix(".xlsb"), "Sheet1", SOURCE_HEADER, _typed(rows)),
}


def _published(writer: Writer, rows: list[dict[str, Any]], extension: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_schema(root, {"records": dynamic_entry(extension=extension)})
        writer(source_dir(root) / "records_201811", rows)
        result = collect(root)
        assert result.errors == (), result.errors
        table: list[dict[str, Any]] = pq.read_table(output_path(root, "records")).to_pylist()
        return table


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ROW, min_size=1, max_size=20, unique_by=lambda r: r["itemCode"]))
def test_every_form_of_the_same_table_publishes_the_same_values(rows: list[dict[str, Any]]
                                                                ) -> None:
    expected = [{"recordDate": r["recordDate"], "workingShift": r["workingShift"].upper(),
                 "itemCode": r["itemCode"], "quantity": r["quantity"], "weight": r["weight"],
                 "plasticResin": r["plasticResine"]} for r in rows]
    for name, writer in FORMS.items():
        assert _published(writer, rows, ".xlsx") == expected, name
    for name, writer in BINARY.items():
        assert _published(writer, rows, ".xlsb") == expected, name
