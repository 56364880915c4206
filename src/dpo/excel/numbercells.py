"""Number cells whose value the reader's text does not keep, put back in text-read columns.

fastexcel renders a number cell read as text with at most 9 decimals (Rust `{x:.9}`, trailing
zeros trimmed): 1.5e-10 reads as "0", 12.0000000001 as "12", 1/3 as "0.333333333". Text
columns are always read as text, and so is every column of a sheet that mixes types, so such
a cell would load as "0" in a text column, or as 0 in an integer column, without a word.

Finding them costs no second parse in the common case: the sheet's own bytes, streamed once by
errorcells.scan_sheet, go through a test (number values with 10+ decimals or an exponent in
.xlsx XML; BrtCellReal, BrtCellRk and BrtFmlaNum records in .xlsb, their doubles checked with
numpy). Only when a number the 9-decimal text does not give back is found, and its text occurs
in a column read as text, is that column read again as floats. A number cell there is one
whose text is the reader's rendering of its float (a float read also parses text: "1e3" ->
1000, but the rendering of 1000 is "1000", not "1e3"); its text becomes Excel's General
spelling with 15 significant digits (`%.15g`: "1.5e-10", "0.333333333333333", "12.0000000001";
lower case, as Python and Arrow spell an exponent, so a typed and a text read report the same
text) and its float goes to the exact values, so an integer column reports it as not whole.
Text cells are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import bools, lit, numbers, strings

_NINE = Decimal("1e-9")
# Number text that may hold more than 9 decimals: 10+ decimal digits, or an exponent.
_XLSX_HINT = re.compile(rb"\.\d{10}|\d[eE][-+]?\d")
_XLSX_VALUE = re.compile(rb"<v>([^<]*(?:\.\d{10}|\d[eE][-+]?\d)[^<]*)</v>")


def general(value: float) -> str:
    """The text of a number as Excel's General format shows it: 15 significant digits."""
    return format(value, ".15g")


def renderings(value: float) -> set[str]:
    """The reader's text of a number cell (9 decimals, zeros trimmed); both spellings of a tie,
    whose rounding direction is the formatter's choice."""
    exact = Decimal(value)
    return {format(exact.quantize(_NINE, rounding), "f").rstrip("0").rstrip(".")
            for rounding in (ROUND_HALF_EVEN, ROUND_HALF_UP)}


def _lossy(values: np.ndarray) -> np.ndarray:
    """Numbers that their 9-decimal text does not give back (whole numbers always do)."""
    with np.errstate(invalid="ignore", over="ignore"):
        lossy: np.ndarray = np.isfinite(values) & (values != np.floor(values)) & (
            np.round(values, 9) != values)
    return lossy


def xlsx_lossy_numbers(block: bytes) -> np.ndarray:
    """The values of what looks like a number cell in one block of an .xlsx sheet's XML that
    their 9-decimal text loses (errorcells.scan_sheet streams the sheet through this once;
    an .xlsb block's numbers come with its other records: excel.xlsbmarks)."""
    if not _XLSX_HINT.search(block):
        return np.zeros(0)
    found = []
    for match in _XLSX_VALUE.finditer(block):
        try:  # a string formula's value or an error code may match too: not a number
            found.append(float(match.group(1)))
        except ValueError:
            continue
    return lossy_only(np.asarray(found, dtype=np.float64))


def lossy_only(values: np.ndarray) -> np.ndarray:
    """The numbers among `values` that their 9-decimal text loses. Only those are kept while
    a sheet is streamed: every number of a 200,000-row sheet would be ~25 MB held beside
    the reader's parse, at the run's peak (BENCHMARKS.md)."""
    lossy: np.ndarray = values[_lossy(values)]
    return lossy


def lossy_texts_of(lossy: np.ndarray) -> frozenset[str]:
    """The reader's texts of `lossy`, numbers their 9-decimal text loses (lossy_only)."""
    # A set, not np.unique: np.unique's first call imports numpy.ma (20 ms, and the plant's
    # real reports do hold such numbers), and these values are few.
    return frozenset(text for value in set(lossy.tolist()) for text in renderings(value))


def restore(
    batch: pa.RecordBatch, texts: frozenset[str], columns: Iterable[str],
    read_floats: Callable[[set[str]], pa.RecordBatch],
) -> tuple[pa.RecordBatch, dict[str, pa.Array]]:
    """`batch` with the lossy number cells of `columns` (text-read, where one of `texts`
    occurs) in their General spelling, and those cells' floats by column (null elsewhere)."""
    value_set = strings(sorted(texts), pa.string())
    suspects = {name for name in columns if _holds_any(batch.column(name), value_set)}
    if not suspects:
        return batch, {}
    floats = read_floats(suspects)
    arrays = dict(zip(batch.schema.names, batch.columns, strict=True))
    exact: dict[str, pa.Array] = {}
    for name in suspects & set(floats.schema.names):
        text, found = _restore_column(arrays[name], floats.column(name), value_set)
        if found is not None:
            arrays[name], exact[name] = text, found
    return pa.RecordBatch.from_arrays(list(arrays.values()), names=list(arrays)), exact


def _holds_any(column: pa.Array, value_set: pa.Array) -> bool:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False
    return bool(pc.any(pc.is_in(column, value_set=value_set.cast(column.type))).as_py())


def _restore_column(
    text: pa.Array, floats: pa.Array, value_set: pa.Array
) -> tuple[pa.Array, pa.Array | None]:
    candidates = np.flatnonzero(bools(pc.fill_null(pc.and_(
        pc.is_in(text, value_set=value_set.cast(text.type)), pc.is_valid(floats)), lit(False))))
    values: list[str | None] = text.to_pylist()
    exact: list[float | None] = [None] * len(values)
    for position in candidates.tolist():
        written, number = values[position], floats[position].as_py()
        # A number cell: its text is the reader's rendering of its float, which loses it.
        if written in renderings(number) and float(written or "nan") != number:
            values[position], exact[position] = general(number), number
    if not any(x is not None for x in exact):
        return text, None
    return strings(values, text.type), numbers(exact, pa.float64())
