"""The Arrow types of a TableSpec.

No pandas here: the run path must not pay its import. The pandas metadata that makes
`pandas.read_parquet` return the schema's nullable dtypes is written by hand, in the form
`pa.Schema.from_pandas` writes it.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pyarrow as pa

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


def empty_table(spec: TableSpec) -> pa.Table:
    return arrow_schema(spec).empty_table()
