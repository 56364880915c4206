"""The content hash that change detection relies on: of row count, column names and types, and
values in row order (from the rows' hashes, dpo.transform.rowhash); hashes written by an older
dpo (their prefix says which algorithm) still verify."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import bools, numpy_of, scalar_of
from dpo.tables.meta import HASH_PREFIX
from dpo.transform.rowhash import row_hashes


def content_hash(table: pa.Table) -> str:
    """Hash of row count, column names and types, and values in row order; independent of
    chunks and layout."""
    return content_hash_of(table.schema, row_hashes(table))


def content_hash_of(schema: pa.Schema, hashes: np.ndarray) -> str:
    """content_hash of a table with this schema whose rows have these row hashes: a table
    built from cached rows is hashed without reading its data again."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{len(hashes)}\x1e".encode())
    for field in schema:
        digest.update(f"{field.name}\x1f{field.type}\x1e".encode())
    digest.update(np.ascontiguousarray(hashes, dtype="<u8").data)
    return HASH_PREFIX + digest.hexdigest()


def hash_matches(table: pa.Table, recorded: str) -> bool:
    """Whether `recorded` is the hash of `table` by the algorithm that made it (its prefix
    says which): versions written by an older dpo still verify."""
    if recorded.startswith(HASH_PREFIX):
        return content_hash(table) == recorded
    if _is_legacy(recorded):
        return legacy_content_hash(table) == recorded
    return False  # a format this dpo does not know (a newer one): it cannot vouch for it


def older_hash_if_same(recorded: str | None, table: pa.Table, digest: str) -> str:
    """`recorded` if it is a legacy hash of `table`'s very content, else `digest` (its
    current hash): an upgrade alone must not make unchanged data look changed, which would
    rewrite Phase 1's output and publish a new version of every table. Costs a legacy hash
    only while the recorded hash is a legacy one."""
    if recorded is not None and _is_legacy(recorded) and legacy_content_hash(table) == recorded:
        return recorded
    return digest


def _is_legacy(recorded: str) -> bool:
    return re.fullmatch("[0-9a-f]{40}", recorded) is not None


def legacy_content_hash(table: pa.Table) -> str:
    """The content hash of dpo <= 0.1.0 (blake2b over every column's bytes), kept to verify
    what it recorded."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{table.num_rows}\x1e".encode())
    for field, column in zip(table.schema, table.columns, strict=True):
        digest.update(f"{field.name}\x1f{field.type}\x1e".encode())
        # One stream per kind of bytes, fed chunk by chunk: each stream is then the same
        # concatenation however the column is chunked, and no chunks are copied together.
        streams = [hashlib.blake2b(digest_size=20) for _ in range(3)]
        for chunk in column.chunks:
            for stream, part in zip(streams, _canonical_parts(chunk), strict=True):
                stream.update(part)
        for stream in streams:
            digest.update(stream.digest())
    return digest.hexdigest()


def _canonical_parts(arr: pa.Array) -> list[bytes]:
    """The array as bytes that depend only on its values: validity, values, string bodies."""
    nulls = bools(arr.is_null()).view(np.uint8).tobytes()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        filled = pc.fill_null(arr, scalar_of("", arr.type))
        lengths = numpy_of(pc.binary_length(filled)).astype(np.int64)
        width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
        offsets = np.frombuffer(filled.buffers()[1], dtype=width)[
            filled.offset: filled.offset + len(filled) + 1]
        data = filled.buffers()[2]
        body = b"" if data is None or not len(filled) else \
            data.to_pybytes()[int(offsets[0]): int(offsets[-1])]
        return [nulls, lengths.tobytes(), body]
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        arr = arr.cast(pa.int64())
    elif pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.uint8())
    zero = scalar_of(0, arr.type)
    return [nulls, numpy_of(pc.fill_null(arr, zero)).tobytes(), b""]
