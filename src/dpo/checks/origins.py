"""Where a table's rows came from: file, sheet and Excel row, worked out when a check fails.

Phase 1 knows each row's sheet and Excel row while it reads a file (dpo.excel.origin), but
keeps neither in the table nor its cache: naming a row costs a second parse of the sheet's
range (excel.reader.first_data_row), so dpo, as for bad cells, finds out only when a row must
be named. The source files are read again in file order, through the same normalisation and
row policies as the run, and a failing row is matched to its source row by row hash (the
k-th row with a hash to the k-th source row with it; Phase 1 keeps the first of exact
duplicates, so a dynamic table's row is the first source row equal to it). Reading stops
once every row asked for is found. A row no source holds any more (the file changed since
it was published) is named by its table only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from dpo.config import RowPolicy
from dpo.errors import DpoError
from dpo.excel.origin import Origin, Source
from dpo.excel.reader import first_data_row, read_spec
from dpo.schema import TableSpec
from dpo.transform.normalize import normalize_table
from dpo.transform.rejects import screen_rows
from dpo.transform.rowhash import row_hashes

Where = tuple[str, str, int]  # (file name, sheet, Excel row)


@dataclass(frozen=True)
class _FileRows:
    name: str
    sheet: str
    hashes: np.ndarray  # each loaded row's hash, in sheet order
    excel_rows: np.ndarray


class Provenance:
    """A table's source files (in the order the run reads them), read again only if asked."""

    def __init__(self, spec: TableSpec, files: list[Path], policy: RowPolicy,
                 cached_rows: Callable[[Path], int | None] | None = None) -> None:
        self.spec, self.files, self.policy = spec, files, policy
        self.cached_rows = cached_rows  # a file's row count without reading it (Phase 1 cache)
        self._read: dict[Path, _FileRows | None] = {}

    def file_rows(self) -> list[tuple[str, int]]:
        """Rows each source file gives (before duplicates across files are dropped)."""
        counts = []
        for path in self.files:
            known = self.cached_rows(path) if self.cached_rows else None
            if known is None:
                rows = self._rows_of(path)
                known = len(rows.hashes) if rows is not None else 0
            counts.append((path.name, known))
        return counts

    def rows_from(self, table: pa.Table, name: str) -> np.ndarray:
        """Positions of `table`'s rows that file `name` holds."""
        path = next(p for p in self.files if p.name == name)
        rows = self._rows_of(path)
        if rows is None or table.num_rows == 0:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(np.isin(row_hashes(table), rows.hashes))

    def locate(self, table: pa.Table, positions: np.ndarray) -> list[Where | None]:
        """(file, sheet, Excel row) of each row of `table` at `positions` (None: not found)."""
        if not len(positions):
            return []
        hashes = row_hashes(table)
        rank = _ranks(hashes)[positions]
        wanted = hashes[positions]
        found: list[Where | None] = [None] * len(positions)
        missing = np.ones(len(positions), dtype=bool)
        seen: dict[int, int] = {}  # rows with each wanted hash in the files read so far
        for path in self.files:
            rows = self._rows_of(path)
            if rows is None:
                continue
            hit = np.flatnonzero(np.isin(rows.hashes, wanted[missing]))
            for at in hit:
                key = int(rows.hashes[at])
                index = seen.get(key, 0)
                seen[key] = index + 1
                for i in np.flatnonzero(missing & (wanted == rows.hashes[at]) & (rank == index)):
                    found[i] = (rows.name, rows.sheet, int(rows.excel_rows[at]))
                    missing[i] = False
            if not missing.any():
                break
        return found

    def _rows_of(self, path: Path) -> _FileRows | None:
        if path not in self._read:
            self._read[path] = self._reread(path)
        return self._read[path]

    def _reread(self, path: Path) -> _FileRows | None:
        """One source file's loaded rows as the run loads them, with their Excel rows."""
        try:
            raw = read_spec(path, self.spec)
            flagged = raw.flagged()

            def exact() -> Origin:
                return Origin.single(Source(raw.source.file, raw.source.sheet, first_data_row(
                    path, raw.source.sheet, raw.header_row), raw.source.date1904))

            screened = screen_rows(
                raw.table, self.spec, self.policy,
                lambda where: normalize_table(raw.table, self.spec, where, raw.exact, flagged,
                                              self.policy.on_error_cells),
                Origin.single(raw.source), exact, bad_values_quarantine=True)
            first = exact().sources[0].first_row
        except (DpoError, OSError):  # gone or broken since: its rows are named by table only
            return None
        keep = np.ones(raw.table.num_rows, dtype=bool)
        keep[np.asarray(screened.norm.bad_rows, dtype=np.int64)] = False
        return _FileRows(path.name, raw.source.sheet, row_hashes(screened.norm.table),
                         np.flatnonzero(keep) + first)


def _ranks(hashes: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows have its hash (0 for the first)."""
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(hashes)]))
    rank = np.empty(len(hashes), dtype=np.int64)
    rank[order] = np.arange(len(hashes)) - first
    return rank
