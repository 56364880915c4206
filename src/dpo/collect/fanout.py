"""Batches (collect.batchtask) put together as one normalisation pass over all their files
would have made them: the same rows, warnings in the same order, the same CellErrors (every
file's cells, column by column), the same quarantine table. The threads path is one batch.

Why each order: `normalize_table` goes column by column over the concatenated files, so its
cells and NA'd error cells come column-major, files in order within a column; totals rows come
in row order; the reader's notes come file by file before them. A batch's pass gives each of
these in the same order for its own files, so batches are put together column by column
(cells, NA'd cells) or one after the other (notes, totals).
Quarantined raw values become text as `concat_raw` would have made them over all files: a
column the files typed alike keeps its type, one they typed differently becomes text with
whole numbers written as integers (normalize.to_text). A batch's own pass typed its column as
one file does (typed, or all-null of another type: nulls either way) or, when its own files
already disagreed, as text made exactly as the whole pass makes it (then all files disagree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import numpy_of
from dpo.collect.batchtask import BatchOutcome, RawColumn
from dpo.collect.segments import HASH_COLUMN, Piece
from dpo.errors import CellError, CellErrors
from dpo.excel.retry import RetryReport, report_retries
from dpo.quality import DataWarning, WarningKind, from_cell, note
from dpo.schema import TableSpec
from dpo.transform.arrowtypes import arrow_schema
from dpo.transform.normalize import as_text, to_text


@dataclass(frozen=True)
class Combined:
    pieces: list[Piece]  # each file's rows that load, in file order
    emptied: list[str]  # files with headers only
    warnings: list[DataWarning]  # the reader's notes, then NA'd cells, then totals rows
    cells: tuple[CellError, ...]
    blank: int
    quarantine: pa.Table | None


def combine(batches: list[BatchOutcome], spec: TableSpec, said: list[DataWarning], *,
            on_retry: RetryReport, on_done: Callable[[int], None]) -> Combined:
    """The batches in file order; raises what the one pass would have raised first: a read
    error (first file first), a normalisation error, then CellErrors with every batch's cells.
    Files with headers only are said (in `said`, the table's warnings) before that."""
    files = [read for batch in batches for read in batch.files]
    for read in files:
        report_retries(read.retries, read.error is None, on_retry)
        on_done(1)
        if read.error is not None:
            raise read.error
    emptied = [read.file for read in files if read.raw_rows == 0]
    said.extend(note(WarningKind.HEADERS_ONLY, f"{name}: headers only, no data rows", name)
                for name in emptied)
    for batch in batches:
        if batch.error is not None:
            raise batch.error
    order = {name: i for i, name in enumerate(arrow_schema(spec).names)}
    cells = _column_major([b.cells for b in batches], order)
    if any(b.failed for b in batches):
        raise CellErrors(list(cells), table=spec.name)
    warnings = [w for read in files for w in read.notes]
    warnings += [from_cell(c) for c in _column_major([b.nulled for b in batches], order)]
    warnings += [w for b in batches for w in b.totals]
    pieces = [piece for batch in batches for piece in _pieces(batch)]
    return Combined(pieces, emptied, warnings, cells, sum(b.blank for b in batches),
                    _quarantine(batches))


def _column_major(per_file: list[tuple[CellError, ...]], order: dict[str, int]
                  ) -> tuple[CellError, ...]:
    every = [cell for cells in per_file for cell in cells]  # file order, then column-major
    return tuple(sorted(every, key=lambda c: order.get(c.column, len(order))))  # stable


def _read_ipc(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def _pieces(batch: BatchOutcome) -> list[Piece]:
    """Each file's rows: slices of the batch's one table (merge_pieces coalesces them)."""
    if batch.held is not None:
        table, hashes = batch.held.table, batch.held.hashes
    else:  # a batch without an error has its segment, here (cluster.fetch_segments)
        assert isinstance(batch.segment, Path)
        stored = _read_ipc(batch.segment)
        column = stored.column(HASH_COLUMN)
        hashes = numpy_of(column.chunk(0)) if column.num_chunks else np.zeros(0, np.uint64)
        table = stored.drop_columns([HASH_COLUMN])
    pieces, offset = [], 0
    for read in batch.files:
        pieces.append(Piece(table, hashes, offset, read.rows))
        offset += read.rows
    return pieces


def _quarantine(batches: list[BatchOutcome]) -> pa.Table | None:
    if len(batches) == 1 and batches[0].held is not None:
        return batches[0].held.quarantine  # all files' one pass: made as it is written
    parts = [_quarantined(b) for b in batches]
    tables = [t for t in parts if t is not None]
    if not tables:
        return None
    files = [read for batch in batches for read in batch.files]
    width = len(files[0].columns)
    names = tables[0].column_names
    columns = []
    for j in range(len(names)):
        if j >= width:  # where the row came from and why: already text
            columns.append(pa.concat_arrays([t.column(j).combine_chunks() for t in tables]))
            continue
        target = _concat_type([read.columns[j] for read in files])
        columns.append(pa.concat_arrays([
            _as_text(t.column(j).combine_chunks(), target) for t in tables]))
    return pa.Table.from_arrays(columns, names=names)


def _quarantined(batch: BatchOutcome) -> pa.Table | None:
    if batch.held is not None:
        return batch.held.quarantine
    return _read_ipc(batch.quarantine) if isinstance(batch.quarantine, Path) else None


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
    """A batch's quarantined raw values (typed as the batch's one pass concatenated them) as
    quarantine_table writes them from the one table of all batches."""
    if target is _TEXT:
        if pa.types.is_floating(values.type) or pa.types.is_integer(values.type):
            return as_text(to_text(values)[0])
        return pc.cast(values, pa.large_string())
    assert isinstance(target, pa.DataType)
    return as_text(values if values.type == target else pa.nulls(len(values), target))
