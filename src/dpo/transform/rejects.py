"""Rows that are not records: blank rows (skipped), totals rows (warned about, or dropped), and
rejected rows (quarantined with reasons)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import from_numpy, lit, numbers, strings
from dpo.config import RowPolicy
from dpo.errors import CellErrors, ErrorType
from dpo.excel.origin import Origin
from dpo.quality import DataWarning, WarningKind, from_cell
from dpo.schema import TableSpec
from dpo.transform.normalize import Normalized, as_text
from dpo.transform.screen import as_mask


def blank_rows(raw: pa.Table) -> np.ndarray:
    """Positions of rows with nothing in any column (empty or whitespace only): gaps in the
    sheet, not records."""
    blank = np.ones(raw.num_rows, dtype=bool)
    for column in raw.columns:
        values = column.combine_chunks()
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values = pc.if_else(pc.equal(pc.utf8_trim_whitespace(values), lit("")), lit(None), values)
        blank &= as_mask(pc.is_null(values))
        if not blank.any():
            break
    return np.flatnonzero(blank)


def total_rows(table: pa.Table, spec: TableSpec) -> np.ndarray:
    """Positions of rows that look like a totals or subtotal row a person added below the
    data: every text column empty but one (the label), every date empty, a number filled.
    Only for tables with two text columns or more and a number column (else any record
    could look like one)."""
    kinds = {c: spec.kind_of(c) for c in table.column_names}
    texts = [c for c, k in kinds.items() if k == "string"]
    numbers = [c for c, k in kinds.items() if k in ("int", "float")]
    if len(texts) < 2 or not numbers or not table.num_rows:
        return np.empty(0, dtype=np.int64)
    filled_texts = sum(as_mask(pc.is_valid(table.column(c))).astype(np.int8) for c in texts)
    looks = filled_texts == 1
    for column in (c for c, k in kinds.items() if k == "datetime"):
        looks &= as_mask(pc.is_null(table.column(column)))
    any_number = np.zeros(table.num_rows, dtype=bool)
    for column in numbers:
        any_number |= as_mask(pc.is_valid(table.column(column)))
    return np.flatnonzero(looks & any_number)


def row_label(table: pa.Table, spec: TableSpec, position: int) -> str:
    """The one text a totals row holds."""
    for column in table.column_names:
        if spec.kind_of(column) == "string":
            value = table.column(column)[position].as_py()
            if value is not None:
                return str(value)
    return ""


def quarantine_table(raw: pa.Table, norm: Normalized, *, as_read: bool = False) -> pa.Table:
    """The raw text of rejected rows, with where they came from and why they were rejected.
    `as_read`: the raw values as the reader typed them (a worker's per-file part: the run
    makes them text as one table would, collect.fanout)."""
    reasons: dict[tuple[str, int], list[str]] = {}
    for cell in norm.cells:
        reasons.setdefault((cell.file, cell.row), []).append(
            f"{cell.column}: {cell.value!r} {cell.reason}")
    located = [norm.origin.locate(int(p)) for p in norm.bad_rows]
    picked = raw.take(from_numpy(np.asarray(norm.bad_rows, dtype=np.int64)))
    text_cols = [picked.column(i).combine_chunks() if as_read else
                 as_text(picked.column(i).combine_chunks()) for i in range(picked.num_columns)]
    extra = {
        "_source_file": strings([src.file for src, _ in located], pa.large_string()),
        "_sheet": strings([src.sheet for src, _ in located], pa.large_string()),
        "_excel_row": numbers([row for _, row in located], pa.int64()),
        "_reason": strings(["; ".join(reasons[(src.file, row)]) for src, row in located],
                         pa.large_string()),
    }
    return pa.Table.from_arrays(
        [*text_cols, *extra.values()], names=[*picked.column_names, *extra.keys()]
    )


@dataclass(frozen=True)
class Screened:
    """A sheet's (or several files') rows after the policies: what loads, and what to say."""

    norm: Normalized  # the rows that load
    warnings: tuple[DataWarning, ...]
    blank: int  # blank rows skipped
    quarantine: pa.Table | None  # rejected rows, with their reasons, when quarantined


def screen_rows(
    raw: pa.Table, spec: TableSpec, policy: RowPolicy,
    normalize: Callable[[Origin], Normalized], origin: Origin, exact: Callable[[], Origin], *,
    bad_values_quarantine: bool = True, error_type: ErrorType | None = None,
    as_read: bool = False,
) -> Screened:
    """Normalise `raw`, then apply the policies: bad cells fail the table (CellErrors) or go to
    quarantine, error cells become NA with a warning, blank rows are skipped and counted,
    totals rows are warned about (and dropped if the policy says so). `exact()` gives the
    origin with each sheet's real first row, worked out only when a row must be named."""
    norm = normalize(origin)
    # A row whose cells were errors is a record with unknown values, not a totals row.
    totals = total_rows(norm.table, spec)
    if totals.size:  # (np.union1d and setdiff1d cost a numpy.ma import on their first call)
        totals = np.setdiff1d(totals, np.union1d(norm.bad_rows, norm.nulled_rows))
    if norm.cells or norm.nulled or totals.size:
        norm = normalize(exact())
    quarantine = None
    if norm.cells:
        if not all(policy.quarantines(c, bad_values=bad_values_quarantine) for c in norm.cells):
            raise CellErrors(list(norm.cells), table=spec.name, error_type=error_type)
        quarantine = quarantine_table(raw, norm, as_read=as_read)
    warnings = [from_cell(cell) for cell in norm.nulled]
    action = "dropped (drop_total_rows)" if policy.drop_total_rows else "kept"
    for position in totals:
        source, row = norm.origin.locate(int(position))
        warnings.append(DataWarning(
            WarningKind.TOTALS, f"{source.file} [{source.sheet}] row {row}: looks like a totals "
            f"row ({row_label(norm.table, spec, int(position))!r}, numbers but no other text); "
            f"{action}", source.file, source.sheet, row))
    blank = blank_rows(raw)
    removed = np.union1d(blank, totals) if policy.drop_total_rows and totals.size else blank
    if norm.cells:
        removed = np.union1d(removed, norm.bad_rows)
    kept = norm.without(removed) if removed.size or norm.cells else norm
    return Screened(kept, tuple(warnings), int(blank.size), quarantine)
