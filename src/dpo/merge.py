"""Merging a table's files: exact duplicate rows found without pandas, counted per file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MIX = np.uint64(0x100000001B3)  # FNV-style multiplier for combining per-column codes


def duplicate_mask(table: pa.Table) -> np.ndarray:
    """True for every row that repeats an earlier row exactly (nulls equal to nulls)."""
    n = table.num_rows
    mask = np.zeros(n, dtype=bool)
    if n < 2:
        return mask
    codes = np.empty((n, table.num_columns), dtype=np.int32)
    for j, column in enumerate(table.columns):
        # One dictionary for all chunks (the kernel shares it), so codes compare across files.
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes[:, j] = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False)
                                      for chunk in encoded.chunks])
    key = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(codes.shape[1]):
            key = (key * _MIX) ^ codes[:, j].astype(np.uint64)
    order = np.argsort(key, kind="stable")  # equal keys keep file order
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    ends = np.r_[starts[1:], n]
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
        _mark_exact(codes, order[start:end], mask)  # the key only groups: compare for real
    return mask


def _mark_exact(codes: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> None:
    seen: set[bytes] = set()
    for row in rows:
        value = codes[row].tobytes()
        if value in seen:
            mask[row] = True
        else:
            seen.add(value)
