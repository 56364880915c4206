"""The files' task outcomes (collect.filetask) put together as the one-pass normalisation of
the in-process path would have made them: the same rows, warnings in the same order, the same
CellErrors (every file's cells, column by column), the same quarantine table.

Why each order: `normalize_table` goes column by column over the concatenated files, so its
cells and NA'd error cells come column-major, files in order within a column; totals rows come
in row order; the reader's notes come file by file before them (DataCollector._normalize).
Quarantined raw values become text as `concat_raw` would have made them: a column the files
typed alike keeps its type, one they typed differently becomes text with whole numbers
written as integers (normalize.to_text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import numpy_of
from dpo.collect.filetask import FileOutcome, RawColumn
from dpo.collect.segments import HASH_COLUMN, Piece
from dpo.errors import CellError, CellErrors
from dpo.excel.retry import RetryReport, report_retries
from dpo.quality import DataWarning, WarningKind, from_cell, note
from dpo.schema import TableSpec
from dpo.transform.arrowtypes import arrow_schema
from dpo.transform.normalize import Normalized, as_text, to_text
from dpo.transform.rowhash import row_hashes


def split_pieces(norm: Normalized, count: int) -> list[Piece]:
    """The threads path: the one normalised table cut back into its files (bad rows already
    dropped), as pieces of the one table, so that consecutive files coalesce again when
    merged. Its row hashes are computed here, once for all new files; the cache keeps them."""
    bad = np.asarray(norm.bad_rows, dtype=np.int64)
    starts = [*norm.origin.starts, norm.table.num_rows + len(bad)]
    kept_before = [int(s) - int(np.searchsorted(bad, s)) for s in starts]
    hashes = row_hashes(norm.table)
    return [Piece(norm.table, hashes, kept_before[i], kept_before[i + 1] - kept_before[i])
            for i in range(count)]


@dataclass(frozen=True)
class Combined:
    pieces: list[Piece]  # each file's rows that load, in file order
    emptied: list[str]  # files with headers only
    warnings: list[DataWarning]  # the reader's notes, then NA'd cells, then totals rows
    cells: tuple[CellError, ...]
    blank: int
    quarantine: pa.Table | None


def combine(outcomes: list[FileOutcome], spec: TableSpec, said: list[DataWarning], *,
            on_retry: RetryReport, on_done: Callable[[int], None]) -> Combined:
    """The outcomes in file order; raises what the one pass would have raised first: a read
    error (first file first), a normalisation error, then CellErrors with every file's cells.
    Files with headers only are said (in `said`, the table's warnings) before that."""
    for outcome in outcomes:
        report_retries(outcome.retries, not outcome.read_failed, on_retry)
        on_done(1)
        if outcome.read_failed and outcome.error is not None:
            raise outcome.error
    emptied = [o.file for o in outcomes if o.raw_rows == 0]
    said.extend(note(WarningKind.HEADERS_ONLY, f"{name}: headers only, no data rows", name)
                for name in emptied)
    warnings: list[DataWarning] = []
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    order = {name: i for i, name in enumerate(arrow_schema(spec).names)}
    cells = _column_major([o.cells for o in outcomes], order)
    if any(o.failed for o in outcomes):
        raise CellErrors(list(cells), table=spec.name)
    warnings += [w for o in outcomes for w in o.notes]
    warnings += [from_cell(c) for c in _column_major([o.nulled for o in outcomes], order)]
    warnings += [w for o in outcomes for w in o.totals]
    return Combined([_piece(o) for o in outcomes], emptied, warnings, cells,
                    sum(o.blank for o in outcomes), _quarantine(outcomes))


def _column_major(per_file: list[tuple[CellError, ...]], order: dict[str, int]
                  ) -> tuple[CellError, ...]:
    every = [cell for cells in per_file for cell in cells]  # file order, then column-major
    return tuple(sorted(every, key=lambda c: order.get(c.column, len(order))))  # stable


def _read_ipc(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def _piece(outcome: FileOutcome) -> Piece:
    # a file without an error has its segment, here (cluster.fetch_segments)
    assert isinstance(outcome.segment, Path)
    stored = _read_ipc(outcome.segment)
    hashes = stored.column(HASH_COLUMN)
    values = numpy_of(hashes.chunk(0)) if hashes.num_chunks else np.zeros(0, np.uint64)
    return Piece(stored.drop_columns([HASH_COLUMN]), values, 0, stored.num_rows)


def _quarantine(outcomes: list[FileOutcome]) -> pa.Table | None:
    parts = [(o, _read_ipc(o.quarantine)) for o in outcomes if isinstance(o.quarantine, Path)]
    if not parts:
        return None
    width = len(outcomes[0].columns)
    names = parts[0][1].column_names
    columns = []
    for j in range(len(names)):
        if j >= width:  # where the row came from and why: already text
            columns.append(pa.concat_arrays([t.column(j).combine_chunks() for _, t in parts]))
            continue
        target = _concat_type([o.columns[j] for o in outcomes])
        columns.append(pa.concat_arrays([
            _as_text(t.column(j).combine_chunks(), target) for _, t in parts]))
    return pa.Table.from_arrays(columns, names=names)


_TEXT = object()  # concat_raw falls back to text


def _concat_type(columns: list[RawColumn]) -> pa.DataType | object:
    """The type concat_raw gives a column read by all files (transform/concat._common_type)."""
    first = columns[0].type
    if len(columns) == 1:
        return first  # one file: its table as it is
    if all(c.type == first for c in columns):
        target = first
    else:
        typed = {c.type for c in columns if c.holds_values}
        if len(typed) > 1:
            return _TEXT
        target = typed.pop() if typed else first
    return _TEXT if any(c.has_exact for c in columns) else target


def _as_text(values: pa.Array, target: pa.DataType | object) -> pa.Array:
    """One file's quarantined raw values as quarantine_table writes them from the one table."""
    if target is _TEXT:
        if pa.types.is_floating(values.type) or pa.types.is_integer(values.type):
            return as_text(to_text(values)[0])
        return pc.cast(values, pa.large_string())
    assert isinstance(target, pa.DataType)
    return as_text(values if values.type == target else pa.nulls(len(values), target))
