"""The .xlsx twin of the demo's .xlsb writer (xlsxwriter), with the same value rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xlsxwriter

from dpo.demo.writers import CellValue, ExcelError, Merge, check_value


def write_xlsx(
    path: Path, sheet: str, header: list[str], rows: Sequence[Sequence[object]], *,
    date1904: bool = False, merges: Sequence[Merge] = (),
) -> Path:
    """Write a one-sheet .xlsx with xlsxwriter, typing each cell explicitly.

    Same value rules as :func:`write_xlsb`: None/NaN -> empty; str -> text, never
    parsed as a number or formula; int/float -> number; date/datetime -> Excel date with a
    date (or date-time) format; bool -> boolean. A fixed creation time keeps bytes stable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "date_1904": date1904})
    book.set_properties({"created": dt.datetime(2000, 1, 1)})
    formats = (book.add_format({"num_format": "yyyy-mm-dd"}),
               book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}))
    ws = book.add_worksheet(sheet)
    for c, name in enumerate(header):
        ws.write_string(0, c, name)
    for r, row in enumerate(rows, start=1):
        for c, raw in enumerate(row):
            _write_cell(ws, r, c, check_value(raw), formats)
    for first_row, first_col, last_row, last_col in merges:
        ws.merge_range(first_row, first_col, last_row, last_col, "")  # blanks the range
        top = rows[first_row - 1] if 0 < first_row <= len(rows) else header
        _write_cell(ws, first_row, first_col,
                    check_value(top[first_col] if first_col < len(top) else None), formats)
    book.close()
    return path


def _write_cell(ws: Any, r: int, c: int, value: CellValue, formats: tuple[Any, Any]) -> None:
    if value is None:
        return
    if isinstance(value, ExcelError):
        ws.write_formula(r, c, "=1/0" if value.text == "#DIV/0!" else "=NA()", None, value.text)
    elif isinstance(value, str):
        ws.write_string(r, c, value)
    elif isinstance(value, bool):
        ws.write_boolean(r, c, value)
    elif isinstance(value, int | float):
        ws.write_number(r, c, value)
    else:
        ws.write_datetime(r, c, value, formats[1] if isinstance(value, dt.datetime) else formats[0])
