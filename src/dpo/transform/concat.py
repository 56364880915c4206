"""Many files' raw sheets as one raw table, whatever type each file's reader gave a column.

A column is read typed when all its cells share a type (excel.py), so the same column may
come back as float64 from one month, all-empty text from the next and mixed text from a
third. Columns that agree (or are empty) are concatenated as they are; columns that disagree
fall back to text plus each number cell's exact float, the form normalize.py parses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.excel.origin import Origin, Source
from dpo.excel.reader import RawSheet, first_data_row
from dpo.transform.normalize import to_text


def concat_raw(sheets: list[RawSheet]) -> tuple[pa.Table, Origin, dict[str, pa.Array]]:
    """One raw table for many files, with where each row came from and the exact floats."""
    starts = tuple(int(x) for x in np.cumsum([0, *(s.table.num_rows for s in sheets)])[:-1])
    origin = Origin(tuple(s.source for s in sheets), starts)
    if len(sheets) == 1:
        return sheets[0].table, origin, dict(sheets[0].exact)
    names = sheets[0].table.column_names
    columns: list[pa.ChunkedArray] = []
    exact: dict[str, pa.Array] = {}
    by_position = list(zip(*(s.table.columns for s in sheets), strict=True))  # same order
    for name, column in zip(names, by_position, strict=True):
        pieces = list(column)
        floats = [s.exact.get(name) for s in sheets]
        target = _common_type(pieces)
        if target is not None and not any(f is not None for f in floats):
            columns.append(_as_type(pieces, target))
            continue
        texts, numbers = zip(*(_text_and_floats(p, f) for p, f in zip(pieces, floats, strict=True)),
                             strict=True)
        columns.append(pa.chunked_array([c for t in texts for c in t.chunks], pa.large_string()))
        if any(n is not None for n in numbers):
            exact[name] = pa.concat_arrays([
                n if n is not None else pa.nulls(len(p), pa.float64())
                for n, p in zip(numbers, pieces, strict=True)])
    return pa.Table.from_arrays(columns, names=names), origin, exact


def _common_type(pieces: list[pa.ChunkedArray]) -> pa.DataType | None:
    """The one type of the pieces that hold any value (None if they disagree)."""
    first = pieces[0].type
    if all(p.type == first for p in pieces):
        return first
    types = {p.type for p in pieces if p.null_count < len(p)}
    if len(types) > 1:
        return None
    return types.pop() if types else pieces[0].type


def _as_type(pieces: list[pa.ChunkedArray], target: pa.DataType) -> pa.ChunkedArray:
    chunks: list[pa.Array] = []
    for piece in pieces:  # a piece of another type is all empty: nulls of the common type
        chunks.extend(piece.chunks if piece.type == target else [pa.nulls(len(piece), target)])
    return pa.chunked_array(chunks, target)


def _text_and_floats(
    piece: pa.ChunkedArray, floats: pa.Array | None
) -> tuple[pa.ChunkedArray, pa.Array | None]:
    """A piece as text, and its number cells' exact floats (None when it has no numbers)."""
    arr = piece.combine_chunks()
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
        numbers = pc.cast(arr, pa.float64())
        return pa.chunked_array([to_text(arr)[0]], pa.large_string()), numbers
    text = pc.cast(arr, pa.large_string())
    if floats is not None:
        floats = pa.chunked_array([floats]).combine_chunks()
    return pa.chunked_array([text], pa.large_string()), floats


def error_cells(sheets: list[RawSheet], origin: Origin) -> dict[str, dict[int, str]]:
    """Excel error cells of all sheets, by column, at their position in the concatenation."""
    flagged: dict[str, dict[int, str]] = {}
    for sheet, start in zip(sheets, origin.starts, strict=True):
        for column, cells in sheet.flagged(start).items():
            flagged.setdefault(column, {}).update(cells)
    return flagged


def exact_origin(files: list[Path], sheets: list[RawSheet], origin: Origin) -> Origin:
    """`origin` with each sheet's real first data row (its used range may not start at row 1:
    finding out costs a second parse, so it is done only when a cell must be reported)."""
    by_name = {p.name: p for p in files}
    sources = tuple(
        Source(s.source.file, s.source.sheet,
               first_data_row(by_name[s.source.file], s.source.sheet, s.header_row),
               s.source.date1904)
        for s in sheets)
    return Origin(sources, origin.starts)
