"""Small Arrow tables for the row-hash and content-hash tests."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def small_table() -> pa.Table:
    return pa.table({
        "code": pa.array(["A-1", "", None, "a value longer than eight bytes", "Grün €"],
                         pa.large_string()),
        "qty": pa.array([1, 0, None, -5, 2**40], pa.int64()),
        "weight": pa.array([1.5, -0.0, None, float("nan"), 3.0], pa.float64()),
        "when": pa.array([datetime(2024, 5, 6, 7, 8), None, datetime(1999, 12, 31),
                          datetime(2024, 5, 6), datetime(1970, 1, 1)], pa.timestamp("ns")),
        "ok": pa.array([True, False, None, True, False], pa.bool_()),
    })


def rechunked(table: pa.Table, cuts: list[int]) -> pa.Table:
    """The same rows as several chunks (slices, so with offsets), empty ones included."""
    bounds = [0, *cuts, table.num_rows]
    return pa.concat_tables([table.slice(a, b - a) for a, b in pairwise(bounds)])


def old_duplicate_mask(table: pa.Table) -> np.ndarray:
    """dpo 0.1.0's merge.duplicate_mask, verbatim in substance: the oracle."""
    n = table.num_rows
    mask = np.zeros(n, dtype=bool)
    if n < 2:
        return mask
    codes = np.empty((n, table.num_columns), dtype=np.int32)
    for j, column in enumerate(table.columns):
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes[:, j] = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False)
                                      for chunk in encoded.chunks])
    seen: set[bytes] = set()
    for row in range(n):
        value = codes[row].tobytes()
        if value in seen:
            mask[row] = True
        seen.add(value)
    return mask
