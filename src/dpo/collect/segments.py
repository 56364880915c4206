"""The per-file cache of normalised rows as Arrow: reading segments, adding new ones.

The bookkeeping (fingerprints, manifest, CRCs) is stdlib and lives in incremental.py; this
module is the Arrow side, used only when some data must actually be read.

A segment holds the rows and, as one more column (HASH_COLUMN, last), each row's
dpo.transform.rowhash hash: merging then finds duplicates and hashes the table's content from these
alone. The segment's CRC covers both; a segment without a well-formed hash column is not
used (its files are read again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from dpo.arrays import from_numpy, numpy_of
from dpo.fsio import Fingerprint
from dpo.schema import TableSpec
from dpo.tables.cache import ByteSink, TableCache
from dpo.tables.contenthash import content_hash_of
from dpo.transform.arrowtypes import arrow_schema, empty_table
from dpo.transform.dedupe import duplicate_mask

HASH_COLUMN = "__dpo_row_hash__"


@dataclass(frozen=True, eq=False)
class Piece:
    """One file's rows: `rows` rows from `offset` of `table` (a cache segment, or the file's
    own freshly normalised rows), whose row hashes are `hashes` (aligned with `table`)."""

    table: pa.Table
    hashes: np.ndarray
    offset: int
    rows: int

    def view(self) -> pa.Table:
        return self.table.slice(self.offset, self.rows)

    def row_hashes(self) -> np.ndarray:
        return self.hashes[self.offset: self.offset + self.rows]


def coalesce(pieces: list[Piece]) -> list[Piece]:
    """Fewer, longer chunks: files cached back to back in one segment become one piece, so
    the merged table has one chunk per segment instead of one per file."""
    runs: list[Piece] = []
    for piece in pieces:
        last = runs[-1] if runs else None
        if last is not None and last.table is piece.table and \
                last.offset + last.rows == piece.offset:
            runs[-1] = Piece(last.table, last.hashes, last.offset, last.rows + piece.rows)
        else:
            runs.append(piece)
    return runs


def cached_parts(
    cache: TableCache, files: list[Path], fingerprints: list[Fingerprint], spec: TableSpec
) -> list[Piece | None]:
    """Rows of unchanged files from the cache segments; None where a file must be read."""
    records = [cache.lookup(p, fp) for p, fp in zip(files, fingerprints, strict=True)]
    names = {r["segment"] for r in records if r is not None}
    segments = {name: _segment(cache, name, spec) for name in names}
    parts: list[Piece | None] = []
    for record in records:
        segment = segments.get(record["segment"]) if record is not None else None
        if segment is None or record is None or \
                record["offset"] + record["rows"] > segment[0].num_rows:
            parts.append(None)
        else:
            parts.append(Piece(segment[0], segment[1], record["offset"], record["rows"]))
    return parts


def _segment(cache: TableCache, name: str, spec: TableSpec) -> tuple[pa.Table, np.ndarray] | None:
    """A segment's rows and row hashes (both mapped, not copied), or None: then its files
    are read again, never trusted."""
    data = cache.segment_bytes(name)
    if data is None:
        return None  # missing or corrupt
    try:
        stored = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    except pa.ArrowInvalid:
        return None
    if stored.schema != segment_schema(spec):
        return None  # another layout (no hash column, say): not ours to interpret
    hashes = stored.column(HASH_COLUMN)
    if hashes.null_count or hashes.num_chunks != 1:
        return None  # written as one non-null batch (_ipc_writer): anything else is damage
    return stored.drop_columns([HASH_COLUMN]), numpy_of(hashes.chunk(0))


@lru_cache(maxsize=64)
def segment_schema(spec: TableSpec) -> pa.Schema:
    """The table's schema with the row-hash column appended."""
    return arrow_schema(spec).append(pa.field(HASH_COLUMN, pa.uint64(), nullable=False))


def update_cache(
    cache: TableCache, spec: TableSpec, files: list[Path], fingerprints: list[Fingerprint],
    pieces: list[Piece],
    todo: list[int], dirty: set[str], digests: dict[str, str],
) -> None:
    """Add this run's newly read clean files as one segment (or compact all into one)."""
    cache.keep_only({p.name for p in files} - dirty)
    entries = list(zip(files, fingerprints, pieces, strict=True))
    if cache.needs_compaction:
        clean = [e for e in entries if e[0].name not in dirty]
        replace_all = True
        known = {name: r["sha256"] for name, r in cache.manifest["files"].items()}
        digests = {**known, **digests}
    else:
        clean = [entries[i] for i in todo if files[i].name not in dirty]
        replace_all = False
    if clean:
        cache.add_segment(_ipc_writer(spec, [p for _, _, p in clean]),
                          [(path, fp, p.rows) for path, fp, p in clean], digests,
                          replace_all=replace_all)


def _ipc_writer(spec: TableSpec, pieces: list[Piece]) -> Callable[[ByteSink], None]:
    """Uncompressed Arrow IPC (reading it back is a map, not a decode: zstd cost 0.3 s), as
    one record batch so that files sliced from it coalesce (coalesce())."""
    def write(handle: ByteSink) -> None:
        rows = pa.concat_tables([p.view() for p in pieces]).combine_chunks()
        hashes = np.concatenate([p.row_hashes() for p in pieces])
        stored = rows.append_column(segment_schema(spec).field(HASH_COLUMN), from_numpy(hashes))
        with pa.ipc.new_file(pa.PythonFile(handle, mode="w"), segment_schema(spec)) as writer:
            writer.write_table(stored, max_chunksize=1 << 30)

    return write


def merge_pieces(
    spec: TableSpec, parts: list[Piece], names: tuple[str, ...]
) -> tuple[pa.Table, str, int, tuple[tuple[str, int], ...], np.ndarray]:
    """Concatenate in file order; drop exact duplicate rows, counted by the file they were in.
    Returns the table, its content hash, the duplicates (total, by file) and the row hashes.
    Duplicates and the hash come from the pieces' row hashes: no pass over the cached rows'
    values."""
    pieces = [p for p in parts if p.rows]
    if not pieces:
        empty = empty_table(spec)
        none = np.empty(0, np.uint64)
        return empty, content_hash_of(empty.schema, none), 0, (), none
    runs = coalesce(pieces)
    merged = pa.concat_tables([run.view() for run in runs])  # chunked: nobody needs one copy
    hashes = np.concatenate([run.row_hashes() for run in runs])
    duplicated = duplicate_mask(merged, hashes)
    if not duplicated.any():
        return merged, content_hash_of(merged.schema, hashes), 0, (), hashes
    owners = [n for n, p in zip(names, parts, strict=True) if p.rows]
    owner = np.repeat(np.arange(len(pieces)), [p.rows for p in pieces])
    counts = np.bincount(owner[duplicated], minlength=len(pieces))
    by_file = tuple((owners[i], int(n)) for i, n in enumerate(counts) if n)
    kept = ~duplicated
    return (merged.filter(from_numpy(kept)), content_hash_of(merged.schema, hashes[kept]),
            int(duplicated.sum()), by_file, hashes[kept])
