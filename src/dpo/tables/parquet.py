"""Parquet files with dpo's metadata: the content hash recorded at write time, and proof on read.

Kept apart from fsio so that a run which reads no data (nothing changed) never imports pyarrow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dpo.errors import DpoError, ErrorType, IntegrityError
from dpo.fsio import atomic_file
from dpo.tables.contenthash import content_hash, hash_matches
from dpo.tables.meta import META_HASH, META_ROWS


def write_parquet(path: Path, table: pa.Table, meta: Mapping[bytes, bytes], point: str) -> str:
    """Write `table` atomically with its content hash in the file's metadata; return the hash.

    A META_HASH already in `meta` is the caller's hash of this very table (not recomputed).
    """
    table, digest = _with_meta(table, meta)
    with atomic_file(path, point) as handle:
        _write(table, handle, str(path))
    return digest


def parquet_bytes(table: pa.Table, meta: Mapping[bytes, bytes], name: str) -> tuple[bytes, str]:
    """`table` as the bytes of the Parquet file write_parquet would write, and its content hash
    (for a store that puts whole objects: dpo.store.objects.store)."""
    table, digest = _with_meta(table, meta)
    sink = pa.BufferOutputStream()
    _write(table, sink, name)
    return sink.getvalue().to_pybytes(), digest


def _with_meta(table: pa.Table, meta: Mapping[bytes, bytes]) -> tuple[pa.Table, str]:
    known = meta.get(META_HASH)
    digest = known.decode() if known else content_hash(table)
    extra = {**(table.schema.metadata or {}), **meta, META_HASH: digest.encode(),
             META_ROWS: str(table.num_rows).encode()}
    return table.replace_schema_metadata(extra), digest


def _write(table: pa.Table, sink: Any, name: str) -> None:
    try:
        pq.write_table(table, sink, compression="zstd",
                       write_statistics=_statistics_columns(table.schema))
    except (pa.ArrowException, ValueError) as exc:
        raise DpoError(f"cannot write Parquet {name}: {exc}", error_type=ErrorType.WRITE_ERROR,
                       file=name) from exc


def _statistics_columns(schema: pa.Schema) -> list[str]:
    """Min/max statistics for dates and numbers, which readers filter on (a month of
    recordDate); not for text, where they cost a fifth of the write and are rarely used."""
    return [f.name for f in schema
            if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]


def parquet_meta(path: Path) -> dict[bytes, bytes] | None:
    """The key-value metadata of a Parquet file, or None if it is missing or unreadable."""
    try:
        return dict(pq.read_schema(path).metadata or {})
    except (OSError, pa.ArrowException):
        return None


def recorded_hash(path: Path) -> str | None:
    meta = parquet_meta(path)
    value = meta.get(META_HASH) if meta else None
    return value.decode() if value else None


def read_parquet(source: Path | pa.NativeFile) -> pa.Table:
    """One Parquet file, whole. Not `pq.read_table`: it imports pyarrow.dataset, whose import
    imports pandas when nothing has (dpo.arrays says why that matters)."""
    with pq.ParquetFile(source) as parquet:
        return parquet.read()


def read_verified(path: Path) -> pa.Table:
    """Read a Parquet file and prove its data still matches the hash recorded when written
    (by the algorithm that recorded it: older versions verify too)."""
    expected = recorded_hash(path)
    try:
        table = read_parquet(path)
    except (OSError, pa.ArrowException) as exc:
        raise IntegrityError(f"{path}: unreadable Parquet ({exc})", file=str(path)) from exc
    if expected is None or not hash_matches(table, expected):
        raise IntegrityError(f"{path}: content does not match its recorded hash", file=str(path))
    return table


def read_verified_bytes(data: bytes, name: str, expected: str | None = None) -> pa.Table:
    """read_verified of a Parquet file held in memory (an object store's object); `expected`,
    when given (the hash a manifest recorded), must be the file's recorded hash too."""
    try:
        table = read_parquet(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise IntegrityError(f"{name}: unreadable Parquet ({exc})", file=name) from exc
    found = (table.schema.metadata or {}).get(META_HASH)
    recorded = found.decode() if found else None
    if recorded is None or (expected is not None and recorded != expected) \
            or not hash_matches(table, recorded):
        raise IntegrityError(f"{name}: content does not match its recorded hash", file=name)
    return table


def is_intact(path: Path) -> bool:
    try:
        read_verified(path)
    except IntegrityError:
        return False
    return True




def version_bytes(table: pa.Table | Path, meta: Mapping[bytes, bytes],
                  name: str) -> tuple[bytes, str, int]:
    """A version's Parquet bytes, content hash and row count, for a store that puts whole
    objects. A file given must carry dpo's hash in its metadata (written by dpo): a store
    never records a hash it did not see made."""
    if not isinstance(table, Path):
        data, digest = parquet_bytes(table, meta, name)
        return data, digest, table.num_rows
    data = table.read_bytes()
    try:
        found = pq.read_schema(pa.BufferReader(data)).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise IntegrityError(f"{name}: unreadable Parquet ({exc})", table=name) from exc
    if META_HASH not in found or META_ROWS not in found:
        raise IntegrityError(f"{name}: Parquet without dpo's content hash", table=name)
    return data, found[META_HASH].decode(), int(found[META_ROWS])
