"""Each rule kind as a vectorised pass over an Arrow table: the positions of the rows that fail.

NA follows SQL: a `references`, `accepted_values`, `min`/`max` or `rule` check passes a row
whose value is NA (not_null is its own rule); `unique` never finds two NA keys equal.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import bools, from_numpy, lit, numbers, numpy_of, scalar_of, strings
from dpo.checks.evaluate import evaluate
from dpo.checks.spec import Check


def failing_rows(check: Check, table: pa.Table, referenced: pa.Table | None = None
                 ) -> np.ndarray:
    """Positions (ascending) of the rows of `table` that fail a row-level `check`."""
    rule = check.rule
    if rule == "not_null":
        mask = np.zeros(table.num_rows, dtype=bool)
        for name in check.params["not_null"]:
            mask |= _mask(pc.is_null(table.column(name)))
        return np.flatnonzero(mask)
    if rule == "unique":
        return _duplicated(table, check.params["unique"])
    if rule == "references":
        assert referenced is not None and check.column is not None
        ref_column = str(check.params["references"]).split(".", 1)[1]
        return _not_in(table.column(check.column), referenced.column(ref_column))
    if rule == "accepted_values":
        assert check.column is not None
        column = table.column(check.column)
        values = check.params["accepted_values"]
        allowed = (strings([str(v) for v in values], pa.large_string())
                   if _is_text(column.type) else numbers([float(v) for v in values], pa.float64()))
        return _not_in(column, allowed)
    if rule == "min_max":
        assert check.column is not None
        column = pc.cast(table.column(check.column), pa.float64())
        bad = np.zeros(table.num_rows, dtype=bool)
        if "min" in check.params:
            bad |= _mask(pc.less(column, scalar_of(float(check.params["min"]), pa.float64())))
        if "max" in check.params:
            bad |= _mask(pc.greater(column, scalar_of(float(check.params["max"]), pa.float64())))
        return np.flatnonzero(bad)
    if rule == "rule":
        assert check.expr is not None
        return _false_rows(evaluate(check.expr, table), table.num_rows)
    raise ValueError(f"{rule} is not a row-level rule")


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where `values` is true (NA: false)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return bools(pc.fill_null(values, scalar_of(False, pa.bool_())))


def _false_rows(result: pa.Array | pa.ChunkedArray | pa.Scalar, rows: int) -> np.ndarray:
    """A row fails when the condition is false; NA passes (SQL's CHECK)."""
    if isinstance(result, pa.Scalar):
        return np.arange(rows) if result.is_valid and not result.as_py() else \
            np.empty(0, dtype=np.int64)
    return np.flatnonzero(_mask(pc.invert(result)))


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _not_in(column: pa.ChunkedArray, allowed: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Rows whose non-NA value is not among `allowed` (types made alike first)."""
    if _is_text(column.type):
        column, allowed = (pc.cast(column, pa.large_string()),
                           pc.cast(allowed, pa.large_string()))
    elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        # + 0.0 makes -0.0 the 0.0 it equals (is_in compares by hash, bit for bit)
        column, allowed = (pc.add(pc.cast(column, pa.float64()), lit(0.0)),
                           pc.add(pc.cast(allowed, pa.float64()), lit(0.0)))
    if isinstance(allowed, pa.ChunkedArray):
        allowed = allowed.combine_chunks()
    known = pc.is_in(column, value_set=pc.unique(allowed.drop_null()))
    return np.flatnonzero(_mask(pc.and_(pc.invert(known), pc.is_valid(column))))


def _duplicated(table: pa.Table, keys: list[str]) -> np.ndarray:
    """Every row whose key (all of `keys`, none NA) another row shares: exact, by value. Each
    key becomes one int64 per row (a whole-number column as it is; other columns, and several
    columns together, through their dictionary codes), sorted once: values seen twice are then
    looked up. Memory: a few int64 copies of the rows, never a hash table of every row."""
    n = table.num_rows
    valid = np.ones(n, dtype=bool)
    for name in keys:
        valid &= ~_mask(pc.is_null(table.column(name)))
    if n == 0 or not valid.any():
        return np.empty(0, dtype=np.int64)
    first = table.column(keys[0])
    if len(keys) == 1 and pa.types.is_integer(first.type):
        combined = numpy_of(pc.fill_null(pc.cast(first, pa.int64()), scalar_of(0, pa.int64())))
    else:
        combined = np.zeros(n, dtype=np.int64)
        for name in keys:  # in place: a 1,000,000-row key costs 8 MB, not 8 MB a step
            codes, size = _codes(table.column(name))
            if combined.max(initial=0) >= np.iinfo(np.int64).max // (size + 1):
                combined = np.unique(combined, return_inverse=True)[1].astype(np.int64).ravel()
            combined *= size + 1
            combined += codes
    ordered = combined[valid]
    ordered.sort()
    twice = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not len(twice):
        return np.empty(0, dtype=np.int64)
    at = np.searchsorted(twice, combined).clip(0, len(twice) - 1)
    return np.flatnonzero(valid & (twice[at] == combined))


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Each value's code (equal values, equal codes; NA its own) and how many codes there are."""
    whole = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    encoded = pc.dictionary_encode(whole, null_encoding="encode")
    return numpy_of(encoded.indices), len(encoded.dictionary)


def row_counts_fail(rows_before: int, rows_after: int, change: float) -> bool:
    """row_count_change: below (1 - change) x or above (1 + change) x the published rows."""
    return rows_after < (1 - change) * rows_before or rows_after > (1 + change) * rows_before


def short_files(file_rows: list[tuple[str, int]], ratio: float) -> list[str]:
    """min_file_rows_ratio: files with fewer rows than `ratio` x the median of the table's
    files (a truncated export)."""
    if not file_rows:
        return []
    median = float(np.median([rows for _, rows in file_rows]))
    return [name for name, rows in file_rows if rows < ratio * median]


def without(table: pa.Table, positions: np.ndarray) -> pa.Table:
    """`table` without the rows at `positions`."""
    keep = np.ones(table.num_rows, dtype=bool)
    keep[positions] = False
    return table.filter(from_numpy(keep))
