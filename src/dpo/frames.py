"""Arrow/pandas types of a TableSpec, and the content hash that change detection relies on."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import pandas as pd
import pyarrow as pa

from dpo.schema import TableSpec

# Keys of the Parquet key-value metadata dpo writes beside the pandas metadata.
META_HASH = b"dpo.content_hash"
META_ROWS = b"dpo.rows"
META_TABLE = b"dpo.table"
META_SOURCES = b"dpo.sources"


@lru_cache(maxsize=64)
def arrow_schema(spec: TableSpec) -> pa.Schema:
    """The Arrow schema (with pandas metadata) that makes read_parquet return the spec's dtypes."""
    empty = pd.DataFrame({c: pd.Series([], dtype=d) for c, d in spec.dtypes})
    return pa.Schema.from_pandas(empty, preserve_index=False)


def arrow_type(spec: TableSpec, column: str) -> pa.DataType:
    return arrow_schema(spec).field(column).type


def empty_table(spec: TableSpec) -> pa.Table:
    return arrow_schema(spec).empty_table()


def content_hash(table: pa.Table) -> str:
    """Hash of column names, dtypes and values in row order; independent of chunking/layout."""
    digest = hashlib.blake2b(digest_size=20)
    for field in table.schema:
        digest.update(f"{field.name}\x1f{field.type}\x1e".encode())
    digest.update(str(table.num_rows).encode())
    if table.num_rows:
        frame = table.to_pandas(types_mapper=_nullable_mapper)
        row_hashes = pd.util.hash_pandas_object(frame, index=False)
        digest.update(row_hashes.to_numpy().tobytes())
    return digest.hexdigest()


def _nullable_mapper(arrow: pa.DataType) -> object:
    # Hashing must not depend on how pandas would guess types: map to nullable dtypes.
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return pd.StringDtype()
    if pa.types.is_integer(arrow):
        return pd.Int64Dtype()
    if pa.types.is_floating(arrow):
        return pd.Float64Dtype()
    if pa.types.is_boolean(arrow):
        return pd.BooleanDtype()
    return None


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """The public-API frame: pandas nullable dtypes exactly as the schema says."""
    return table.to_pandas()
