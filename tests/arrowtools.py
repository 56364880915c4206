"""Small Arrow tables for the row-hash and content-hash tests."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import pyarrow as pa


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
