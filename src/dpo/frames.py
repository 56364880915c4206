"""Arrow types of a TableSpec, and the content hash that change detection relies on.

No pandas here: the run path must not pay its import. The pandas metadata that makes
`pandas.read_parquet` return the schema's nullable dtypes is written by hand, in the form
`pa.Schema.from_pandas` writes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.metakeys import HASH_PREFIX
from dpo.rowhash import row_hashes
from dpo.schema import TableSpec

# schema dtype -> (Arrow type, pandas_type in the metadata)
_TYPES: dict[str, tuple[pa.DataType, str]] = {
    "string": (pa.large_string(), "unicode"),
    "boolean": (pa.bool_(), "bool"),
    "datetime64[ns]": (pa.timestamp("ns"), "datetime"),
    "Int8": (pa.int8(), "int8"), "Int16": (pa.int16(), "int16"),
    "Int32": (pa.int32(), "int32"), "Int64": (pa.int64(), "int64"),
    "UInt8": (pa.uint8(), "uint8"), "UInt16": (pa.uint16(), "uint16"),
    "UInt32": (pa.uint32(), "uint32"), "UInt64": (pa.uint64(), "uint64"),
    "Float32": (pa.float32(), "float32"), "Float64": (pa.float64(), "float64"),
}


@lru_cache(maxsize=64)
def arrow_schema(spec: TableSpec) -> pa.Schema:
    """The Arrow schema (with pandas metadata) that makes read_parquet return the spec's dtypes."""
    fields = [pa.field(column, _TYPES[dtype][0]) for column, dtype in spec.dtypes]
    columns = [
        {"name": column, "field_name": column, "pandas_type": _TYPES[dtype][1],
         "numpy_type": dtype, "metadata": None}
        for column, dtype in spec.dtypes
    ]
    pandas_meta = {"index_columns": [], "column_indexes": [], "columns": columns,
                   "creator": {"library": "pyarrow", "version": pa.__version__},
                   "pandas_version": "2.2.0"}
    return pa.schema(fields, metadata={b"pandas": json.dumps(pandas_meta).encode()})


def from_numpy(values: np.ndarray) -> pa.Array:
    """A numpy array (bool or numeric) as Arrow, sharing its memory. `pa.array(ndarray)` looks
    up `numpy.ma`, whose first import costs 20 ms of a 0.4 s run."""
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [None, pa.py_buffer(values)])


def empty_table(spec: TableSpec) -> pa.Table:
    return arrow_schema(spec).empty_table()


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
    nulls = arr.is_null().to_numpy(zero_copy_only=False).view(np.uint8).tobytes()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        filled = pc.fill_null(arr, "")
        lengths = pc.binary_length(filled).to_numpy(zero_copy_only=False).astype(np.int64)
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
    zero = pa.scalar(0, arr.type)
    return [nulls, pc.fill_null(arr, zero).to_numpy(zero_copy_only=False).tobytes(), b""]
