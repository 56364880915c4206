"""Rows that do not load: blank rows (skipped) and rejected rows (quarantined with reasons)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.normalize import Normalized, as_mask, as_text


def blank_rows(raw: pa.Table) -> np.ndarray:
    """Positions of rows with nothing in any column (empty or whitespace only): gaps in the
    sheet, not records."""
    blank = np.ones(raw.num_rows, dtype=bool)
    for column in raw.columns:
        values = column.combine_chunks()
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values = pc.if_else(pc.equal(pc.utf8_trim_whitespace(values), ""), None, values)
        blank &= as_mask(pc.is_null(values))
        if not blank.any():
            break
    return np.flatnonzero(blank)



def quarantine_table(raw: pa.Table, norm: Normalized) -> pa.Table:
    """The raw text of rejected rows, with where they came from and why they were rejected."""
    reasons: dict[tuple[str, int], list[str]] = {}
    for cell in norm.cells:
        reasons.setdefault((cell.file, cell.row), []).append(
            f"{cell.column}: {cell.value!r} {cell.reason}")
    located = [norm.origin.locate(int(p)) for p in norm.bad_rows]
    picked = raw.take(pa.array(norm.bad_rows, pa.int64()))
    text_cols = [as_text(picked.column(i).combine_chunks()) for i in range(picked.num_columns)]
    extra = {
        "_source_file": pa.array([src.file for src, _ in located], pa.large_string()),
        "_sheet": pa.array([src.sheet for src, _ in located], pa.large_string()),
        "_excel_row": pa.array([row for _, row in located], pa.int64()),
        "_reason": pa.array(["; ".join(reasons[(src.file, row)]) for src, row in located],
                            pa.large_string()),
    }
    return pa.Table.from_arrays(
        [*text_cols, *extra.values()], names=[*picked.column_names, *extra.keys()]
    )
