"""Excel (.xlsx/.xlsb) -> Arrow columns, with reader errors translated into dpo errors.

Types are forced from the schema: text columns are read as text (fastexcel `dtypes="string"`),
so a code numeric for 1,000 rows and then `9917349N15` keeps every value. The other columns
are read as the cells are (numbers as float64, dates as timestamps), but only when every cell
of the column has one type, checked over *all* rows (`schema_sample_rows=None`,
`dtype_coercion="strict"`): a number column with one text cell anywhere would otherwise be
coerced. When any column mixes types, or the reader could not type a cell (an error cell, or
text it reads as empty in a number column: `#N/A`, `<NA>`, `-1.#IND`...), the whole sheet is
read again as text, and normalize.py parses it and reports what does not fit. Typed reading
is faster (no number -> text -> number round trip) and exact (the reader's text of a number
keeps only 9 decimals). A number with more than 9 decimals in a column read as text (1.5e-10
reads as "0") is found in the sheet's bytes and put back (numbercells.py). Headers are matched
as a person reads them (headers.py), merged cells filled (merged.py), and what the reader does
not say (error cells, formulas never calculated, merges) found in the sheet's bytes
(cellerrors.py).
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Literal

import fastexcel
import numpy as np
import pyarrow as pa

from dpo.errors import DpoError, ErrorType
from dpo.excel.datesystem import date_system, dates_as_serials
from dpo.excel.errorcells import SheetScan, scan_sheet
from dpo.excel.files import (
    check_unchanged,
    check_workbook,
    open_reader,
    open_zip,
    read_error,
    stat_source,
)
from dpo.excel.headers import HEADER_SEARCH_ROWS, HeaderMatch, find_header_row, match_headers, spellings
from dpo.excel.merged import fill_merges
from dpo.excel.numbercells import restore
from dpo.excel.origin import Source
from dpo.faults import pause_point
from dpo.quality import DataWarning, WarningKind, note
from dpo.schema import RENAMES, TableSpec

# From this size the error-cell scan runs beside the reader instead of after it.
SCAN_AHEAD_BYTES = 1 << 20


@dataclass(frozen=True)
class RawSheet:
    table: pa.Table  # text columns, renamed to canonical names, in the requested order
    source: Source
    # Per numeric column, each cell's float as the reader holds it (null for text cells): the
    # reader's text of a number keeps only 9 decimals, so 1.5e-10 would read as "0".
    exact: dict[str, pa.Array] = field(default_factory=dict)
    # Excel error cells (#DIV/0!...) and formulas never calculated, which the reader returns
    # as empty: (row position in `table`, canonical column, error text).
    error_cells: tuple[tuple[int, str, str], ...] = ()
    header_row: int = 0  # rows above the header within the sheet's used range (a title block)
    notes: tuple[DataWarning, ...] = ()  # loose headers, header row, merged cells

    def flagged(self, offset: int = 0) -> dict[str, dict[int, str]]:
        """The error cells by column, as {row position + offset: error text}."""
        found: dict[str, dict[int, str]] = {}
        for position, column, text in self.error_cells:
            found.setdefault(column, {})[offset + position] = text
        return found


@cache
def _quiet_reader_logs() -> None:
    """fastexcel logs a warning for a column whose type it cannot infer (an empty one:
    "falling back to string"). dpo handles every such column (an empty column is fine whatever
    its type, a mixed one sends the sheet to the text path): the warning is only noise on the
    engineer's terminal. Set when dpo first reads, not when it is imported."""
    logging.getLogger("fastexcel").setLevel(logging.ERROR)


def read_spec(path: Path, spec: TableSpec, display_name: str | None = None) -> RawSheet:
    """The sheet of `path` that `spec` names, its columns typed as the spec says."""
    return read_sheet(path, spec.sheet_name, spec.columns, RENAMES, numeric=spec.float_columns,
                      text=spec.text_columns, dates=spec.date_columns, display_name=display_name)


def read_sheet(
    path: Path,
    sheet: str | None,
    columns: tuple[str, ...],
    renames: Mapping[str, str],
    *,
    numeric: frozenset[str] = frozenset(),
    text: frozenset[str] | None = None,
    dates: frozenset[str] = frozenset(),
    display_name: str | None = None,
) -> RawSheet:
    """Read `columns` (canonical names) of one sheet; extra columns are dropped.

    Columns in `text` are read as text, the others typed (see the module's docstring);
    `text=None` reads everything as text. When the sheet is read as text, columns in `numeric`
    are read a second time as floats, for their exact values. Columns in `dates` have their
    date cells corrected when the reader took the workbook's date system wrong (datesystem.py).
    """
    _quiet_reader_logs()
    name = display_name or path.name
    before = stat_source(path, name)
    check_workbook(path, name, before)  # a PDF named .xlsx is said at once, never retried
    archive = open_zip(path, name)  # bomb-checked; the sheet scan reads it too
    try:
        return _read_sheet(path, sheet, _Wanted(columns, renames, numeric, text, dates),
                           name=name, before=before, archive=archive)
    finally:
        if archive is not None:
            archive.close()


@dataclass(frozen=True)
class _Wanted:
    """What to read: canonical columns, their other spellings, and how to type them."""

    columns: tuple[str, ...]
    renames: Mapping[str, str]
    numeric: frozenset[str]
    text: frozenset[str] | None
    dates: frozenset[str] = frozenset()

    def headers(self, names: Mapping[str, str] | None) -> _Headers:
        """The header names to load: as matched (`names`), else every exact spelling."""
        if names is None:
            spelled = spellings(self.columns, self.renames)
            return _Headers(set(spelled), {h for h, c in spelled.items() if c in self.numeric},
                            None if self.text is None else
                            {h for h, c in spelled.items() if c in self.text})
        return _Headers(set(names.values()), {names[c] for c in self.numeric if c in names},
                        None if self.text is None else {names[c] for c in self.text})


@dataclass(frozen=True)
class _Headers:
    load: set[str]
    numeric: set[str]
    text: set[str] | None


def _read_sheet(path: Path, sheet: str | None, wanted: _Wanted, *, name: str,
                before: os.stat_result, archive: zipfile.ZipFile | None) -> RawSheet:
    reader = open_reader(path, name, before.st_mtime)
    pause_point(f"read:{name}")  # test-only: lets a test change the file while it is read
    sheet_name = sheet if sheet is not None else reader.sheet_names[0]
    if sheet_name not in reader.sheet_names:
        found = ", ".join(repr(s) for s in reader.sheet_names)
        raise DpoError(
            f"{name}: sheet {sheet_name!r} not found; the file has {found}",
            error_type=ErrorType.FILE_READ_ERROR, file=name, sheet=sheet_name,
        )
    try:
        raw = _read_columns(reader, path, sheet_name, wanted, name=name, archive=archive)
    except DpoError:
        check_unchanged(path, name, before)  # a read broken by a writer is worth a retry
        raise
    # The reader and the sheet scan each open the file themselves: it must be the same file
    # (inode), untouched (size, mtime, ctime) since `before`, or the passes may mix two.
    check_unchanged(path, name, before)
    return raw


def _read_columns(
    reader: fastexcel.ExcelReader, path: Path, sheet: str, wanted: _Wanted, *, name: str,
    archive: zipfile.ZipFile | None,
) -> RawSheet:
    """The wanted columns (typed when possible, else as text with exact floats), the sheet's
    error cells, and its merged ranges filled as Excel shows them."""
    scan = _scan_soon(path, sheet, archive)
    headers: list[str] = []
    batch, exact = _load_columns(reader, sheet, wanted.headers(None), 0, name, headers)
    match = match_headers(headers, wanted.columns, wanted.renames, name, sheet)
    header_row, notes = 0, []
    if match.missing:
        header_row, match = _header_further_down(reader, sheet, wanted, name, match)
        notes.append(note(WarningKind.HEADER_ROW, f"{name} [{sheet}]: the header is row "
                          f"{header_row + 1} of the table, not its first row (title rows "
                          "above it are skipped)", name, sheet))
    notes += [note(WarningKind.HEADER, f"{name} [{sheet}]: header {header!r} read as column "
                   f"{column}", name, sheet, column) for header, column in match.loose]
    loaded = wanted.headers(match.names)
    if not match.exact or header_row:
        batch, exact = _load_columns(reader, sheet, loaded, header_row, name, [])
    found = scan()
    if found.lossy:
        batch, restored = _restore_numbers(reader, sheet, batch, loaded.load - loaded.numeric,
                                           (found.lossy, name, header_row))
        exact.update(restored)
    table = _select(pa.Table.from_batches([batch]), wanted.columns, match.names)
    exact = {column: exact[match.names[column]] for column in wanted.columns
             if match.names[column] in exact}
    system = date_system(archive)
    if system.reader_disagrees:
        table, exact = dates_as_serials(
            table, exact, {c: match.names[c] for c in wanted.dates if c in match.names},
            lambda headers, dtype: _load(reader, sheet, headers, dtype, name,
                                         header_row=header_row), system.reader1904)
    source = Source(name, sheet, date1904=system.date1904)
    if not (found.errors or found.merges):
        return RawSheet(table, source, exact, (), header_row, tuple(notes))
    start_row = range_start(path, sheet)[0]
    columns_at = _columns_by_index(reader, sheet, header_row, match.names)
    first_row = start_row + header_row + 1  # 0-based sheet row of the first data row
    errors = tuple((cell.row - first_row, columns_at[cell.col], cell.text)
                   for cell in found.errors if cell.col in columns_at and cell.row >= first_row)
    table, exact, merged = fill_merges(table, exact, found.merges, columns_at, first_row, source)
    return RawSheet(table, source, exact, errors, header_row, (*notes, *merged))


def _header_further_down(reader: fastexcel.ExcelReader, sheet: str, wanted: _Wanted, name: str,
                         first: HeaderMatch) -> tuple[int, HeaderMatch]:
    """The header row below a title block (within the first rows), and its match; else the
    first row's missing columns are the error."""
    try:
        top = reader.load_sheet(sheet, header_row=None, n_rows=HEADER_SEARCH_ROWS + 1,
                                dtypes="string").to_arrow()
    except fastexcel.FastExcelError as exc:
        raise read_error(name, exc, sheet) from exc
    rows = [list(r.values()) for r in top.to_pylist()]
    found = find_header_row(rows, wanted.columns, wanted.renames)
    if found is None or found == 0:
        raise DpoError(f"{name} [{sheet}]: missing required column(s): {', '.join(first.missing)}",
                       error_type=ErrorType.MISSING_FIELDS, file=name, sheet=sheet,
                       column=first.missing[0])
    headers: list[str] = []
    _load(reader, sheet, set(), "string", name, headers, header_row=found, n_rows=0)
    return found, match_headers(headers, wanted.columns, wanted.renames, name, sheet)


def _load_columns(reader: fastexcel.ExcelReader, sheet: str, wanted: _Headers, header_row: int,
                  name: str, headers: list[str]) -> tuple[pa.RecordBatch, dict[str, pa.Array]]:
    """The `wanted` headers typed when every column has one type, else as text plus exact
    floats; keyed by header as written. `headers` receives every header of the sheet."""
    batch = None if wanted.text is None else _load_typed(
        reader, sheet, wanted.load, wanted.text, name, headers, header_row)
    if batch is not None:
        return batch, {}
    headers.clear()
    batch = _load(reader, sheet, wanted.load, "string", name, headers, header_row=header_row)
    return batch, _exact_floats(reader, sheet, batch, wanted.numeric, name, header_row)


def _scan_soon(path: Path, sheet: str, archive: zipfile.ZipFile | None
               ) -> Callable[[], SheetScan]:
    """The sheet's scan (error cells, uncalculated formulas, merges): for a large file in a
    thread of its own, where it overlaps the reader's parse (both release the GIL for most of
    their work)."""
    try:
        large = path.stat().st_size >= SCAN_AHEAD_BYTES
    except OSError:
        large = False  # gone: the reader says so
    if not large:
        return partial(scan_sheet, str(path), sheet, archive)
    pool = ThreadPoolExecutor(1)
    future = pool.submit(scan_sheet, str(path), sheet, archive)
    pool.shutdown(wait=False)  # the thread ends with the scan; the future keeps its result
    return future.result


def _columns_by_index(reader: fastexcel.ExcelReader, sheet: str, header_row: int,
                      names: Mapping[str, str]) -> dict[int, str]:
    """0-based sheet column -> canonical column, for the columns read (the reader's
    absolute_index counts from column A, wherever the used range starts)."""
    by_header = {header: column for column, header in names.items()}
    infos = reader.load_sheet(sheet, n_rows=0, header_row=header_row).available_columns()
    return {info.absolute_index: by_header[info.name] for info in infos
            if info.name in by_header}


def _load(
    reader: fastexcel.ExcelReader, sheet: str, wanted: set[str],
    dtype: Literal["string", "float", "datetime"], name: str, headers: list[str] | None = None, *,
    header_row: int = 0, n_rows: int | None = None,
) -> pa.RecordBatch:
    def use(column: fastexcel.ColumnInfoNoDtype) -> bool:  # type: ignore[name-defined]
        if headers is not None:
            headers.append(column.name)  # every header, also those not loaded
        return column.name in wanted

    try:
        batch: pa.RecordBatch = reader.load_sheet(
            sheet, dtypes=dtype, use_columns=use, header_row=header_row,
            n_rows=n_rows).to_arrow()
    except fastexcel.FastExcelError as exc:
        raise read_error(name, exc, sheet) from exc
    return batch


def _typed_ok(batch: pa.RecordBatch) -> bool:
    """A sheet read typed that needs no second look: every column of a type normalize.py
    converts (not a duration...), and no NaN, which no Excel number is: the reader parsed
    text ("-nan"). The NaN test is one numpy pass over all float columns' value buffers (a
    null's slot may hold anything: at worst the sheet is read as text, never wrongly typed)."""
    floats = []
    for column in batch.columns:
        kind = column.type.id  # one set look-up a column: this runs on every file read
        if kind == _FLOAT64:
            values = column.buffers()[1]
            if values is not None and len(column):
                floats.append(np.frombuffer(values, dtype=np.float64,
                                            count=len(column) + column.offset)[column.offset:])
        elif kind not in _CONVERTED:
            return False
    return not floats or not np.isnan(np.concatenate(floats)).any()


_FLOAT64 = pa.float64().id
# The other types normalize.py converts: text, integers, timestamps (any unit), dates, bools.
_CONVERTED = frozenset(t.id for t in (
    pa.string(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(),
    pa.uint32(), pa.uint64(), pa.timestamp("ns"), pa.date32(), pa.date64(), pa.bool_(),
    pa.null()))


def _load_typed(
    reader: fastexcel.ExcelReader, sheet: str, wanted: set[str], text: set[str], name: str,
    headers: list[str], header_row: int,
) -> pa.RecordBatch | None:
    """The sheet with text columns as text and the others as their cells' one type; None when
    a column mixes types (a number column holding one text cell) and must be read as text."""
    def use(column: fastexcel.ColumnInfoNoDtype) -> bool:  # type: ignore[name-defined]
        headers.append(column.name)
        return column.name in wanted

    try:
        batch, failed = reader.load_sheet(
            sheet, use_columns=use, dtypes={n: "string" for n in text & wanted},
            schema_sample_rows=None, dtype_coercion="strict",
            header_row=header_row).to_arrow_with_errors()
    except fastexcel.UnsupportedColumnTypeCombinationError:
        return None
    except fastexcel.FastExcelError as exc:
        raise read_error(name, exc, sheet) from exc
    if failed is not None and failed.errors:
        return None  # a cell it read as empty: an error cell, or text such as "#N/A"
    return batch if _typed_ok(batch) else None


def _exact_floats(
    reader: fastexcel.ExcelReader, sheet: str, batch: pa.RecordBatch, numeric: set[str],
    name: str, header_row: int,
) -> dict[str, pa.Array]:
    """Each number cell's float, for the headers in `numeric` that a text read rounded (keyed
    by header as written)."""
    if not numeric & set(batch.schema.names):
        return {}
    floats = _load(reader, sheet, numeric, "float", name, header_row=header_row)
    return {n: floats.column(n) for n in floats.schema.names}


def _restore_numbers(
    reader: fastexcel.ExcelReader, sheet: str, batch: pa.RecordBatch, columns: set[str],
    found: tuple[frozenset[str], str, int],
) -> tuple[pa.RecordBatch, dict[str, pa.Array]]:
    """`batch` with the number cells that its text-read `columns` hold rounded (1.5e-10 as
    "0") in their General spelling, and their floats (numbercells.py); `found`: the rounded
    texts the sheet scan saw, the file's name, the header row. Keyed by header as written."""
    texts, name, header_row = found
    return restore(batch, texts, [n for n in batch.schema.names if n in columns],
                   lambda wanted: _load(reader, sheet, wanted, "float", name,
                                        header_row=header_row))


def _select(table: pa.Table, columns: tuple[str, ...], names: Mapping[str, str]) -> pa.Table:
    """The matched headers' columns, under their canonical names, in schema order."""
    return pa.Table.from_arrays([table.column(names[c]) for c in columns], names=list(columns))


def first_data_row(path: Path, sheet: str, header_row: int = 0) -> int:
    """Excel row number of the first data row: the sheet's used range may not start at row 1,
    and a title block may stand above the header.

    Only asked on the error path, so the happy path reads each file once.
    """
    return range_start(path, sheet)[0] + header_row + 2


def range_start(path: Path, sheet: str) -> tuple[int, int]:
    """(row, column), 0-based, where the sheet's used range (its header row) starts."""
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        start = CalamineWorkbook.from_path(str(path)).get_sheet_by_name(sheet).start
    except (CalamineError, OSError, ValueError, TypeError):
        return 0, 0
    return (int(start[0]), int(start[1])) if start else (0, 0)
