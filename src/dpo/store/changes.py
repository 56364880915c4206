"""What changed between two versions of a table: what a planner asks first after an alert.

* rows added / removed: a multiset diff of the row hashes (dpo.transform.rowhash) over the columns both
  versions have. A row that appears twice in the new version and once in the old is one row
  added; the order of rows does not matter.
* columns changed: the columns whose values were edited in place. A removed row and an added
  row that are equal in every column but one are an edit of that column; such pairs are found
  with a leave-one-out hash per row (the sum of per-column value hashes, minus one column's),
  matched as multisets, so no key column is needed. A row edited in two or more columns is
  counted as removed and added, without naming its columns.
* columns added / removed: by name, between the two versions' schemas.

Only numpy over Arrow buffers: no pandas, no per-row Python.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from loguru import logger

from dpo import quality
from dpo.arrays import from_numpy
from dpo.quality import WarningKind
from dpo.tables.rowhashes import RowHashes
from dpo.transform.rowhash import row_hashes, value_hashes

if TYPE_CHECKING:
    from dpo.results import LoaderResult, TableResult
    from dpo.store.api import Store

_COLUMN_MIX = 0x9E3779B97F4A7C15  # odd: times an odd number, one-to-one modulo 2**64


@dataclass(frozen=True)
class TableDiff:
    added: np.ndarray  # row indices into the new version, ascending
    removed: np.ndarray  # row indices into the old version, ascending
    columns_changed: dict[str, int]  # column -> rows edited in that column only
    columns_added: tuple[str, ...]
    columns_removed: tuple[str, ...]

    def counts(self, previous: str | None) -> dict[str, Any]:
        """The per-publish record (results, reports, ledger): counts and column names."""
        return {"previous": previous, "rows_added": len(self.added),
                "rows_removed": len(self.removed),
                "columns_changed": list(self.columns_changed),
                "columns_added": list(self.columns_added),
                "columns_removed": list(self.columns_removed)}


def diff_tables(old: pa.Table, new: pa.Table,
                hashes: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> TableDiff:
    """The rows and columns that differ between `old` and `new` (module docstring). `hashes`:
    each table's row hashes when known (valid when both have the same columns)."""
    common = [c for c in new.column_names if c in set(old.column_names)]
    old_c, new_c = old.select(common), new.select(common)
    same = common == old.column_names == new.column_names
    old_h = hashes[0] if same and hashes[0] is not None else row_hashes(old_c)
    new_h = hashes[1] if same and hashes[1] is not None else row_hashes(new_c)
    removed = _excess(old_h, new_h)
    added = _excess(new_h, old_h)
    return TableDiff(
        added=added, removed=removed,
        columns_changed=_edited_columns(old_c.take(from_numpy(removed)),
                                       new_c.take(from_numpy(added))),
        columns_added=tuple(c for c in new.column_names if c not in common),
        columns_removed=tuple(c for c in old.column_names if c not in set(common)))


def _excess(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Indices of the rows of `a` that `b` does not account for, as multisets: of k equal
    hashes in `a` and j in `b`, the last k - j occurrences in `a` are in excess."""
    if not len(a):
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(a, kind="stable")
    ordered = a[order]
    first = np.searchsorted(ordered, ordered, side="left")
    occurrence = np.arange(len(ordered)) - first  # 0 for the first of equal hashes, 1, ...
    sb = np.sort(b)
    in_b = np.searchsorted(sb, ordered, side="right") - np.searchsorted(sb, ordered, side="left")
    return np.sort(order[occurrence >= in_b]).astype(np.int64)


def _edited_columns(removed: pa.Table, added: pa.Table) -> dict[str, int]:
    if not removed.num_rows or not added.num_rows:
        return {}
    parts_r, parts_a = _column_parts(removed), _column_parts(added)
    total_r, total_a = parts_r.sum(axis=1), parts_a.sum(axis=1)  # wraps modulo 2**64
    edited = {}
    for i, name in enumerate(removed.column_names):
        pairs = _matches(total_r - parts_r[:, i], total_a - parts_a[:, i])
        if pairs:
            edited[name] = pairs
    return edited


def _column_parts(table: pa.Table) -> np.ndarray:
    """rows x columns of value hashes, each mixed with its column's position."""
    parts = np.empty((table.num_rows, table.num_columns), dtype=np.uint64)
    for i, column in enumerate(table.columns):
        values = value_hashes(column.combine_chunks()) if column.num_chunks != 1 else \
            value_hashes(column.chunk(0))
        parts[:, i] = values * np.uint64(_COLUMN_MIX * (2 * i + 1) % (1 << 64))
    return parts


def _matches(a: np.ndarray, b: np.ndarray) -> int:
    """The size of the multiset intersection of `a` and `b`."""
    va, ca = np.unique(a, return_counts=True)
    vb, cb = np.unique(b, return_counts=True)
    _, ia, ib = np.intersect1d(va, vb, assume_unique=True, return_indices=True)
    return int(np.minimum(ca[ia], cb[ib]).sum())


# -- after a publish ---------------------------------------------------------------------------
def describe_publish(store: Store, before: Mapping[str, str],
                     loader: LoaderResult) -> LoaderResult:
    """The loader result with `changes` on every table it published: the diff against the
    version that was current before (`before`: the annotations as Phase 2 found them)."""
    tables = tuple(_with_changes(store, before.get(t.table), t) if t.changed and t.output
                   else t for t in loader.tables)
    return replace(loader, tables=tables)


def _with_changes(store: Store, previous: str | None, table: TableResult) -> TableResult:
    from dpo.errors import DpoError
    from dpo.tables.parquet import read_parquet, recorded_hash

    if previous is None:  # the first version: everything is new
        return replace(table, changes={"previous": None, "rows_added": table.rows,
                                       "rows_removed": 0, "columns_changed": [],
                                       "columns_added": [], "columns_removed": []})
    cache = RowHashes(store.paths.cache_dir)
    try:  # (on object storage, either version may have to be downloaded first)
        new_path = store.local_file(str(table.output))
        old_path = store.local_file(previous)
        # Both were verified when published (and the new one seconds ago): read, no re-hash.
        old, new = read_parquet(old_path), read_parquet(new_path)
        known = (cache.get(recorded_hash(old_path), old.schema),
                 cache.get(table.content_hash, new.schema))
        diff = diff_tables(old, new, known)
        if known[1] is None and table.content_hash and new.column_names == old.column_names:
            cache.put(table.content_hash, row_hashes(new))  # the next publish's "old"
    except (OSError, DpoError, pa.ArrowException) as exc:  # the data is published: say, go on
        note = f"changes not computed: {exc}"
        logger.warning("⚠️ {}: {}", table.table, note)
        return replace(table, warnings=(*table.warnings, quality.note(WarningKind.OTHER, note)))
    return replace(table, changes=diff.counts(_stamp(old_path.name, table.table)))


def _stamp(name: str, table: str) -> str:
    """A version's stamp from its file name: `<stamp>_<table>.parquet` on disk,
    `<stamp>.<token>.parquet` on object storage."""
    found = re.match(r"^\d{8}_\d{4}(?:-\d+)?", name)
    return found.group(0) if found else name.removesuffix(f"_{table}.parquet")
