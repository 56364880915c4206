"""Pure normalisation of raw cell text into schema types (docs/behaviour.md, section 3).

Every converter takes an Arrow array as the reader gives it (text, since dtypes are forced to
string at read time; numbers and timestamps are accepted too) and returns the typed array plus
a mask of the cells it could not convert. A cell is either converted exactly or reported:
nothing is silently changed or dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import from_numpy, lit, null_of, scalar_of, text_array
from dpo.errors import NOT_CALCULATED, CellError
from dpo.excel.origin import Origin, Source
from dpo.schema import TableSpec
from dpo.transform.arrowtypes import arrow_schema
from dpo.transform.screen import as_mask, screen

_INT_RE = r"^\s*[+-]?\d+(\.0*)?\s*$"
_FLOAT_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_SERIAL_RE = r"^\s*\d+(\.\d+)?\s*$"
_ISO_RE = r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$"
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
                "%Y-%m-%d")
_EXCEL_EPOCH_NS = -25569 * 86_400 * 10**9  # serial day 0 = 1899-12-30, as ns from 1970-01-01
# The last whole day datetime64[ns] can hold is 2262-04-10 (Excel goes on to 9999-12-31): a
# later serial would wrap around to the 1600s, so it is an error instead.
_MAX_SERIAL = 132_319
_TRUE = ("true", "1", "yes", "y")
_FALSE = ("false", "0", "no", "n")

Converted = tuple[pa.Array, np.ndarray]  # typed values, mask of cells that failed


@dataclass(frozen=True)
class Normalized:
    table: pa.Table  # typed, with the spec's schema
    cells: tuple[CellError, ...]
    bad_rows: np.ndarray  # positions (in the raw table) of rows with at least one bad cell
    origin: Origin
    # Excel error cells loaded as NA under the "null" policy: each one becomes a warning.
    nulled: tuple[CellError, ...] = ()
    nulled_rows: np.ndarray = dataclass_field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def without_bad_rows(self) -> Normalized:
        return self.without(self.bad_rows)

    def without(self, positions: np.ndarray) -> Normalized:
        """The table without the rows at `positions` (raw positions, which `bad_rows` then
        holds, so the table can still be cut back into its files). The cells stay: they say
        which files were not clean (and must not be cached). `nulled_rows` is not carried: it
        serves only before rows are cut."""
        keep = np.ones(self.table.num_rows, dtype=bool)
        keep[positions] = False
        return Normalized(self.table.filter(from_numpy(keep)), self.cells,
                          np.asarray(positions, dtype=np.int64), self.origin, self.nulled)


def as_text(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr
    return pc.cast(arr, pa.large_string())


def _failed(raw: pa.Array, out: pa.Array) -> np.ndarray:
    """Cells that held a value but came out null: the conversion failed there."""
    return as_mask(pc.and_(pc.is_valid(raw), pc.is_null(out)))


def _whole_in_int64(arr: pa.Array) -> pa.Array:
    """Whole floats that fit int64; beyond it an unchecked cast would wrap to garbage."""
    return pc.and_(pc.equal(arr, pc.floor(arr)), pc.less(pc.abs(arr), lit(2.0**63)))


def to_text(arr: pa.Array) -> Converted:
    """A whole number stored as a number becomes its integer text; other values keep their text."""
    if pa.types.is_floating(arr.type):
        whole = _whole_in_int64(arr)
        as_int = pc.cast(pc.if_else(whole, arr, lit(None)), pa.int64(), safe=False)
        text = pc.if_else(whole, pc.cast(as_int, pa.large_string()), pc.cast(arr, pa.large_string()))
        return text, np.zeros(len(arr), dtype=bool)
    out = pc.cast(arr, pa.large_string())
    return out, np.zeros(len(arr), dtype=bool)


def to_int(arr: pa.Array, target: pa.DataType | None = None, exact: pa.Array | None = None
           ) -> Converted:
    """Whole numbers only: `12`, `12.0` are fine; `12.5`, `abc` and out-of-range are failures."""
    target = target or pa.int64()
    if pa.types.is_floating(arr.type):  # read typed: every cell a number, exact
        typed = _cast_each(pc.cast(pc.if_else(_whole_in_int64(arr), arr, lit(None)), pa.int64(),
                                   safe=False), target)
        return typed, _failed(arr, typed)
    if pa.types.is_integer(arr.type):
        arr = pc.cast(arr, pa.large_string())
    text = as_text(arr)
    numbers = _numeric_cells(text, exact)
    out: pa.Array = pa.nulls(len(text), target)
    if numbers is not None and exact is not None:
        whole = pc.if_else(pc.and_(numbers, _whole_in_int64(exact)), exact, lit(None))
        out = _cast_each(pc.cast(whole, pa.int64(), safe=False), target)
    if _has_text_cells(text, numbers):
        parsed = _plain_cast(text, target)  # the reader's own "12": one strict kernel pass
        if parsed is None:
            ok = pc.match_substring_regex(text, _INT_RE)
            digits = pc.replace_substring_regex(pc.utf8_trim_whitespace(text), r"^\+|\.0*$", "")
            parsed = _cast_each(pc.if_else(ok, digits, lit(None)), target)
        out = parsed if numbers is None else pc.if_else(numbers, out, parsed)
    return out, _failed(arr, out)


def _plain_cast(text: pa.Array, target: pa.DataType) -> pa.Array | None:
    """Arrow's strict parse of the whole column, or None when any value needs a closer look
    (then the regex path finds exactly which cells fail and why)."""
    if pc.any(pc.match_substring(text, "x", ignore_case=True)).as_py():
        return None  # Arrow also reads hex: "0x1F" -> 31, "0xFFFFFFFFFFFFFFFF" -> -1
    try:
        return pc.cast(text, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


_BOOL_TEXT = ("true", "false")


def _numeric_cells(text: pa.Array, exact: pa.Array | None) -> pa.Array | None:
    """Cells the reader holds as numbers (exact float present, not a TRUE/FALSE cell).

    Their text keeps only 9 decimals (1.5e-10 reads as "0", 12.0000000001 as "12"), so their
    value comes from the float; text cells are parsed from their text.
    """
    if exact is None:
        return None
    is_bool = pc.is_in(text, value_set=text_array(_BOOL_TEXT, text.type))
    return pc.and_(pc.is_valid(exact), pc.invert(pc.fill_null(is_bool, scalar_of(False, is_bool.type))))


def _has_text_cells(text: pa.Array, numbers: pa.Array | None) -> bool:
    if numbers is None:
        return True
    return bool(pc.any(pc.and_(pc.is_valid(text), pc.invert(numbers))).as_py())


def _cast_each(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast in one go; if one value overflows, fall back to per-value casts to null just it."""
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        fits = np.ones(len(arr), dtype=bool)
        for i in range(len(arr)):
            try:
                pc.cast(arr.slice(i, 1), target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                fits[i] = False
        return pc.cast(pc.if_else(from_numpy(fits), arr, null_of(arr.type)), target)


def to_float(arr: pa.Array, target: pa.DataType | None = None, exact: pa.Array | None = None
             ) -> Converted:
    """Any finite number; text that is not a number is a failure."""
    target = target or pa.float64()
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        out = pc.cast(arr, target)
        out = pc.if_else(pc.is_finite(out), out, lit(None)) if len(out) else out
        return out, _failed(arr, out)
    text = as_text(arr)
    numbers = _numeric_cells(text, exact)
    out = pa.nulls(len(text), target)
    if numbers is not None and exact is not None:
        out = pc.cast(pc.if_else(numbers, exact, lit(None)), target)
    if _has_text_cells(text, numbers):
        ok = pc.match_substring_regex(text, _FLOAT_RE)
        parsed = _cast_each(pc.if_else(ok, pc.utf8_trim_whitespace(text), lit(None)), target)
        out = parsed if numbers is None else pc.if_else(numbers, out, parsed)
    out = pc.if_else(pc.is_finite(out), out, lit(None)) if len(out) else out
    return out, _failed(arr, out)


def to_datetime(arr: pa.Array, exact: pa.Array | None = None, shift: pa.Array | None = None
                ) -> Converted:
    """Real Excel dates, Excel serial numbers (day 0 = 1899-12-30; `shift` days added to each
    row's serial, for workbooks in the 1904 system) and ISO date text."""
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        out = _to_ns(arr)
        return out, _failed(arr, out)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        out = _from_serial(_shifted(pc.cast(arr, pa.float64()), shift))
        return out, _failed(arr, out)
    text = as_text(arr)
    numbers = _numeric_cells(text, exact)
    serial_text = pc.fill_null(pc.match_substring_regex(text, _SERIAL_RE), lit(False))
    days = _cast_each(pc.if_else(serial_text, pc.utf8_trim_whitespace(text), lit(None)),
                      pa.float64())
    if numbers is not None and exact is not None:
        days = pc.if_else(numbers, exact, days)  # serial numbers, exact to the millisecond
        serial_text = pc.or_(serial_text, numbers)
    out = _from_serial(_shifted(days, shift))
    if bool(pc.any(pc.and_(pc.is_valid(text), pc.invert(serial_text))).as_py()):
        out = pc.if_else(serial_text, out, _from_iso(text))
    return out, _failed(arr, out)


def _shifted(days: pa.Array, shift: pa.Array | None) -> pa.Array:
    return days if shift is None else pc.add(days, shift)


_NS_RANGE_MS = (-(2**63) // 10**6 + 1, (2**63 - 1) // 10**6)  # what datetime64[ns] can hold


def _to_ns(arr: pa.Array) -> pa.Array:
    """A date or timestamp as timestamp[ns]; a date past 2262 (or before 1677) is a failure."""
    ms = pc.cast(pc.cast(arr, pa.timestamp("ms")), pa.int64())
    fits = pc.and_(pc.greater_equal(ms, lit(_NS_RANGE_MS[0])),
                   pc.less_equal(ms, lit(_NS_RANGE_MS[1])))
    return pc.cast(pc.multiply(pc.if_else(fits, ms, lit(None)), lit(10**6)), pa.timestamp("ns"))


def _from_serial(days: pa.Array) -> pa.Array:
    valid = pc.and_(pc.greater_equal(days, lit(0)), pc.less(days, lit(_MAX_SERIAL + 1)))
    # Excel keeps time to the millisecond; round there so 10:31 is not 10:30:59.999999.
    ms = pc.round(pc.multiply(pc.if_else(valid, days, lit(None)), lit(86_400_000.0)))
    ns = pc.add(pc.multiply(pc.cast(ms, pa.int64()), lit(1_000_000)), lit(_EXCEL_EPOCH_NS))
    return pc.cast(ns, pa.timestamp("ns"))


def _from_iso(text: pa.Array) -> pa.Array:
    """ISO dates/times; impossible dates (2018-02-30) are failures, never rolled over."""
    trimmed = pc.utf8_trim_whitespace(text)
    shaped = pc.if_else(pc.match_substring_regex(trimmed, _ISO_RE), trimmed, lit(None))
    base = pc.replace_substring_regex(shaped, r"\.\d{1,9}$", "")
    parsed = pa.nulls(len(text), pa.timestamp("ns"))
    for fmt in _ISO_FORMATS:  # the reader's own rendering of a date cell comes first
        parsed = pc.coalesce(parsed, pc.strptime(base, format=fmt, unit="ns", error_is_null=True))
        if pc.all(pc.or_(pc.is_valid(parsed), pc.is_null(base))).as_py():
            break
    # strptime rolls 2018-02-30 over to 2018-03-02: keep only dates whose day is as written.
    written_day = pc.cast(pc.utf8_slice_codeunits(base, 8, 10), pa.int64())
    parsed = pc.if_else(pc.fill_null(pc.equal(pc.day(parsed), written_day), lit(False)), parsed,
                       lit(None))
    if not pc.any(pc.match_substring(shaped, ".")).as_py():
        return parsed  # no fractional seconds anywhere
    fraction = pc.extract_regex(shaped, r"\.(?P<f>\d{1,9})$").field("f")
    nanos = pc.cast(pc.utf8_rpad(fraction, 9, "0"), pa.int64())
    return pc.cast(pc.add(pc.cast(parsed, pa.int64()), pc.fill_null(nanos, lit(0))), pa.timestamp("ns"))


def to_boolean(arr: pa.Array) -> Converted:
    """true/false, 1/0, yes/no (any case)."""
    if pa.types.is_boolean(arr.type):
        return arr, np.zeros(len(arr), dtype=bool)
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(as_text(to_text(arr)[0])))
    is_true = pc.is_in(folded, value_set=text_array(_TRUE, folded.type))
    is_false = pc.is_in(folded, value_set=text_array(_FALSE, folded.type))
    out = pc.if_else(is_true, lit(True), pc.if_else(is_false, lit(False), lit(None)))
    return out, _failed(arr, out)


def upper_shift(arr: pa.Array) -> pa.Array:
    """workingShift is upper-cased: `hc` -> `HC`."""
    return pc.utf8_upper(arr)


Converter = Callable[[pa.Array, pa.DataType, "pa.Array | None"], Converted]
CONVERTERS: dict[str, Converter] = {
    "string": lambda arr, _t, _x: to_text(arr),
    "int": to_int,
    "float": to_float,
    "datetime": lambda arr, _t, exact: to_datetime(arr, exact),
    "boolean": lambda arr, _t, _x: to_boolean(arr),
}
REASONS = {
    "string": "is not text",
    "int": "is not a whole number (or out of range)",
    "float": "is not a number",
    "datetime": "is not a date (Excel date, serial number or ISO text)",
    "boolean": "is not true/false",
}
SPECIAL: dict[str, Callable[[pa.Array], pa.Array]] = {"workingShift": upper_shift}


def normalize_table(
    raw: pa.Table, spec: TableSpec, origin: Origin | Source,
    exact: dict[str, pa.Array] | None = None,
    error_cells: Mapping[str, Mapping[int, str]] | None = None,
    on_error_cells: str = "fail",
) -> Normalized:
    """Convert every column of `raw` (already renamed and ordered) to the spec's types.

    `exact` holds, per numeric column, the reader's float value of each cell (null for text
    cells): the text rendering of a number is rounded, the float is not. `error_cells` holds,
    per column, the positions of Excel error cells (which the reader returns as empty).
    Excel error values (those and `#N/A`... text) are bad cells, or with `on_error_cells`
    "null" NA cells listed in `nulled` (docs/behaviour.md, "Excel error values").
    """
    if isinstance(origin, Source):
        origin = Origin.single(origin)
    schema = arrow_schema(spec)
    columns: list[pa.Array] = []
    cells: list[CellError] = []
    nulled: list[CellError] = []
    bad = np.zeros(raw.num_rows, dtype=bool)
    had_errors = np.zeros(raw.num_rows, dtype=bool)
    for field in schema:
        values = raw.column(field.name).combine_chunks()
        kind = spec.kind_of(field.name)
        errors, values = screen(values)
        flagged = (error_cells or {}).get(field.name, {})
        if flagged:
            errors[list(flagged)] = True
        if on_error_cells == "null" and errors.any():
            nulled.extend(_cells(values, errors, errors, field.name, "", origin, flagged))
            had_errors |= errors
            values = pc.if_else(from_numpy(errors), null_of(values.type), values)
            errors = np.zeros(len(values), dtype=bool)
        floats = (exact or {}).get(field.name)
        if kind == "datetime" and (shift := origin.serial_shift(raw.num_rows)) is not None:
            out, failed = to_datetime(values, floats, shift)
        else:
            out, failed = CONVERTERS[kind](values, field.type, floats)
        if field.name in SPECIAL:
            out = SPECIAL[field.name](out)
        failed = failed | errors
        if failed.any():
            bad |= failed
            cells.extend(_cells(values, failed, errors, field.name, REASONS[kind], origin,
                                flagged))
        columns.append(pc.cast(out, field.type))
    table = pa.Table.from_arrays(columns, schema=schema)
    return Normalized(table=table, cells=tuple(cells), bad_rows=np.flatnonzero(bad), origin=origin,
                      nulled=tuple(nulled), nulled_rows=np.flatnonzero(had_errors))


def _cells(
    raw: pa.Array, failed: np.ndarray, errors: np.ndarray, column: str, reason: str, origin: Origin,
    flagged: Mapping[int, str],
) -> list[CellError]:
    positions = np.flatnonzero(failed)
    texts = as_text(raw.take(from_numpy(positions.astype(np.int64)))).to_pylist()
    cells = []
    for pos, text in zip(positions, texts, strict=True):
        source, row = origin.locate(int(pos))
        value = flagged.get(int(pos), "" if text is None else str(text))
        if not errors[pos]:
            cells.append(CellError(source.file, source.sheet, row, column,
                                   "" if text is None else str(text), reason))
        elif value == NOT_CALCULATED:
            cells.append(CellError(source.file, source.sheet, row, column, "",
                                   "is a formula that was never calculated (no cached value)",
                                   excel_error=NOT_CALCULATED))
        else:
            cells.append(CellError(source.file, source.sheet, row, column, value,
                                   "is an Excel error value", excel_error=value))
    return cells
