"""Merged cells in data rows, loaded as a person sees them.

Excel shows a merged range's top-left value across the whole range, but stores it only in the
top-left cell: every reader returns the other cells as empty. A planner who merged a machine
number down three rows means those three rows' machine; so each cell of the range takes the
top-left value, and each range is a warning naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import from_numpy
from dpo.excel.errorcells import Merge, cell_ref
from dpo.excel.origin import Source
from dpo.quality import DataWarning, WarningKind


def fill_merges(
    table: pa.Table, exact: dict[str, pa.Array], merges: Sequence[Merge],
    columns_at: Mapping[int, str], first_row: int, source: Source,
) -> tuple[pa.Table, dict[str, pa.Array], list[DataWarning]]:
    """`table` (row 0 = sheet row `first_row`, 0-based) with every merged range in data rows
    filled from its top-left cell; `exact` likewise; one warning per range filled."""
    notes: list[DataWarning] = []
    for merge in merges:
        top = merge.first_row - first_row
        last = min(merge.last_row - first_row, table.num_rows - 1)
        origin = columns_at.get(merge.first_col)
        targets = [columns_at[c] for c in range(merge.first_col, merge.last_col + 1)
                   if c in columns_at]
        if top < 0 or last < top or origin is None or not targets or (
                last == top and targets == [origin]):
            continue  # in the header, past the data, or its value is in no column read
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[top:last + 1] = True
        value = table.column(origin)[top]
        for column in targets:
            cells = mask.copy()
            if column == origin:
                cells[top] = False
            table = _filled(table, column, cells, value)
            if column in exact and origin in exact:
                exact[column] = pc.if_else(from_numpy(cells), exact[origin][top], exact[column])
        notes.append(DataWarning(
            WarningKind.MERGED,
            f"{source.file} [{source.sheet}] merged cells {merge.ref()}: column(s) "
            f"{', '.join(targets)}, Excel rows {merge.first_row + 1}-{merge.last_row + 1} take "
            f"the value of {cell_ref(merge.first_row, merge.first_col)}",
            source.file, source.sheet, merge.first_row + 1, origin))
    return table, exact, notes


def _filled(table: pa.Table, column: str, cells: np.ndarray, value: pa.Scalar) -> pa.Table:
    index = table.column_names.index(column)
    current = table.column(index)
    if value.type != current.type:
        if not (pa.types.is_string(current.type) or pa.types.is_large_string(current.type)):
            return table  # a number across into a date column: nothing a cast could mean
        value = pc.cast(value, current.type)
    filled = pc.if_else(from_numpy(cells), value, current)
    return table.set_column(index, column, filled)
