"""One sheet read and normalised under the row policies: what Phase 2 loads from a master
table, and what `dpo validate` checks in each source file."""

from __future__ import annotations

from pathlib import Path

from dpo.config import RowPolicy
from dpo.errors import ErrorType
from dpo.excel.origin import Origin, Source
from dpo.excel.reader import first_data_row, read_spec
from dpo.schema import TableSpec
from dpo.transform.normalize import normalize_table
from dpo.transform.rejects import Screened, screen_rows


def read_table(path: Path, spec: TableSpec, policy: RowPolicy, *,
               bad_values_quarantine: bool = True, error_type: ErrorType | None = None
               ) -> Screened:
    """The rows of one workbook that load, with every warning (the reader's notes first).
    Bad cells raise CellErrors (of `error_type`) unless the policy quarantines them."""
    raw = read_spec(path, spec)
    flagged = raw.flagged()
    screened = screen_rows(
        raw.table, spec, policy,
        lambda where: normalize_table(raw.table, spec, where, raw.exact, flagged,
                                      policy.on_error_cells),
        Origin.single(raw.source),
        lambda: Origin.single(Source(raw.source.file, raw.source.sheet, first_data_row(
            path, raw.source.sheet, raw.header_row), raw.source.date1904)),
        bad_values_quarantine=bad_values_quarantine, error_type=error_type)
    return Screened(screened.norm, (*raw.notes, *screened.warnings), screened.blank,
                    screened.quarantine)
