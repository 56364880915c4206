"""The per-file cache of normalised rows as Arrow: reading segments, adding new ones.

The bookkeeping (fingerprints, manifest, CRCs) is stdlib and lives in incremental.py; this
module is the Arrow side, used only when some data must actually be read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from dpo.frames import arrow_schema
from dpo.incremental import ByteSink, Fingerprint, TableCache
from dpo.schema import TableSpec


@dataclass(frozen=True)
class Piece:
    """One file's rows: `rows` rows from `offset` of `table` (a cache segment, or the file's
    own freshly normalised rows)."""

    table: pa.Table
    offset: int
    rows: int

    def view(self) -> pa.Table:
        return self.table.slice(self.offset, self.rows)


def coalesce(pieces: list[Piece]) -> list[pa.Table]:
    """Fewer, longer chunks: files cached back to back in one segment become one slice, so
    hashing and dictionary-encoding make one pass per segment instead of one per file."""
    runs: list[Piece] = []
    for piece in pieces:
        last = runs[-1] if runs else None
        if last is not None and last.table is piece.table and \
                last.offset + last.rows == piece.offset:
            runs[-1] = Piece(last.table, last.offset, last.rows + piece.rows)
        else:
            runs.append(piece)
    return [run.view() for run in runs]


def cached_parts(
    cache: TableCache, files: list[Path], fingerprints: list[Fingerprint], spec: TableSpec
) -> list[Piece | None]:
    """Rows of unchanged files from the cache segments; None where a file must be read."""
    records = [cache.lookup(p, fp) for p, fp in zip(files, fingerprints, strict=True)]
    names = {r["segment"] for r in records if r is not None}
    segments = {name: _segment(cache, name, spec) for name in names}
    parts: list[Piece | None] = []
    for record in records:
        rows = segments.get(record["segment"]) if record is not None else None
        if rows is None or record is None or record["offset"] + record["rows"] > rows.num_rows:
            parts.append(None)
        else:
            parts.append(Piece(rows, record["offset"], record["rows"]))
    return parts


def _segment(cache: TableCache, name: str, spec: TableSpec) -> pa.Table | None:
    data = cache.segment_bytes(name)
    if data is None:
        return None  # missing or corrupt: its files are read again, never trusted
    try:
        rows = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    except pa.ArrowInvalid:
        return None
    return rows if rows.schema == arrow_schema(spec) else None


def update_cache(
    cache: TableCache, spec: TableSpec, files: list[Path], fingerprints: list[Fingerprint],
    tables: list[pa.Table],
    todo: list[int], dirty: set[str], digests: dict[str, str],
) -> None:
    """Add this run's newly read clean files as one segment (or compact all into one)."""
    cache.keep_only({p.name for p in files} - dirty)
    entries = list(zip(files, fingerprints, tables, strict=True))
    if cache.needs_compaction:
        clean = [e for e in entries if e[0].name not in dirty]
        replace_all = True
        known = {name: r["sha256"] for name, r in cache.manifest["files"].items()}
        digests = {**known, **digests}
    else:
        clean = [entries[i] for i in todo if files[i].name not in dirty]
        replace_all = False
    if clean:
        cache.add_segment(_ipc_writer(spec, [t for _, _, t in clean]),
                          [(path, fp, t.num_rows) for path, fp, t in clean], digests,
                          replace_all=replace_all)


def _ipc_writer(spec: TableSpec, tables: list[pa.Table]) -> Callable[[ByteSink], None]:
    """Uncompressed Arrow IPC (reading it back is a map, not a decode: zstd cost 0.3 s), as
    one record batch so that files sliced from it coalesce (coalesce())."""
    def write(handle: ByteSink) -> None:
        rows = pa.concat_tables(tables).combine_chunks()
        with pa.ipc.new_file(pa.PythonFile(handle, mode="w"), arrow_schema(spec)) as writer:
            writer.write_table(rows, max_chunksize=1 << 30)

    return write


