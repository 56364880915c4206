"""databaseSchemas.json -> one TableSpec per table, validated before any data is read.

This is the one place where dtypes and column lists live: collect, load, the demo generator
and the tests all take their columns from a TableSpec, never from a copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from dpo.errors import ConfigError, SchemaError
from dpo.urls import is_url, local_mirror

# Source exports spell "resin" both ways; the store always uses "plasticResin...".
RENAMES: Mapping[str, str] = {
    "plasticResine": "plasticResin",
    "plasticResineCode": "plasticResinCode",
    "plasticResineLot": "plasticResinLot",
}

# Schema dtype -> kind of normalisation. Sized ints/floats are all pandas nullable dtypes.
DTYPE_KINDS: Mapping[str, str] = {
    "string": "string",
    "boolean": "boolean",
    "datetime64[ns]": "datetime",
    **{name: "int" for name in ("Int8", "Int16", "Int32", "Int64")},
    **{name: "int" for name in ("UInt8", "UInt16", "UInt32", "UInt64")},
    **{name: "float" for name in ("Float32", "Float64")},
}

DYNAMIC_KEYS = ("path", "name_start", "extension", "sheet_name", "required_fields", "dtypes")
STATIC_KEYS = ("path", "dtypes")


def canonical(column: str) -> str:
    return RENAMES.get(column, column)


@dataclass(frozen=True)
class TableSpec:
    name: str
    kind: Literal["dynamic", "static"]
    path: Path  # dynamic: the schema's folder path; static: the workbook
    dtypes: tuple[tuple[str, str], ...]  # (column, dtype) in output order
    name_start: str = ""
    extension: str = ""
    sheet_name: str | None = None
    url: str | None = None  # a static workbook on object storage; `path` is its local mirror

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.dtypes)

    def dtype_of(self, column: str) -> str:
        return self._dtype_by_column[column]

    def kind_of(self, column: str) -> str:
        return DTYPE_KINDS[self._dtype_by_column[column]]

    # Cached: asked for every column of every file read (a frozen dataclass keeps a cached
    # property in its __dict__; equality and hashing still use the fields only).
    @cached_property
    def _dtype_by_column(self) -> dict[str, str]:
        return dict(self.dtypes)

    @cached_property
    def text_columns(self) -> frozenset[str]:
        """Columns read as text whatever their cells hold (codes, names, notes)."""
        return frozenset(c for c in self.columns if self.kind_of(c) == "string")

    @cached_property
    def date_columns(self) -> frozenset[str]:
        return frozenset(c for c in self.columns if self.kind_of(c) == "datetime")

    @cached_property
    def float_columns(self) -> frozenset[str]:
        """Columns whose number cells are read a second time as floats when a sheet has to be
        read as text: the reader's text of a number keeps 9 decimals (1e-10 reads as "0").
        Only float columns: a float read also parses numeric text ("1e3" -> 1000), which an
        integer or date column must reject as text. Their number cells beyond 9 decimals, and
        those of text columns, are found in the sheet's bytes instead (numbercells.py)."""
        return frozenset(c for c in self.columns if self.kind_of(c) == "float")


@dataclass(frozen=True)
class Schema:
    path: Path
    tables: tuple[TableSpec, ...]
    fingerprint: str  # hash of the schema file's meaning; invalidates caches when it changes

    @property
    def dynamic(self) -> tuple[TableSpec, ...]:
        return tuple(t for t in self.tables if t.kind == "dynamic")

    @property
    def static(self) -> tuple[TableSpec, ...]:
        return tuple(t for t in self.tables if t.kind == "static")

    def table(self, name: str) -> TableSpec:
        for spec in self.tables:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def __iter__(self) -> Iterator[TableSpec]:
        return iter(self.tables)


def resolve_within(root: Path, value: str | Path, what: str) -> Path:
    """Resolve `value` against `root`; refuse a path that ends up outside it."""
    root = root.resolve()
    path = Path(value)
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ConfigError(f"{what} {str(value)!r} escapes the root directory {root}")
    return resolved


def load_schema(path: Path, root: Path) -> Schema:
    """Read and validate the schema file; every problem is reported at once."""
    if not path.is_file():
        raise SchemaError(str(path), [f"file not found: {path}"])
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(str(path), [f"not valid JSON: {exc}"]) from exc
    problems: list[str] = []
    tables = _parse(raw, root, problems)
    if problems:
        raise SchemaError(str(path), problems)
    text = json.dumps(raw, sort_keys=True).encode()
    return Schema(path=path, tables=tuple(tables), fingerprint=hashlib.sha256(text).hexdigest())


def _parse(raw: Any, root: Path, problems: list[str]) -> list[TableSpec]:
    if not isinstance(raw, dict):
        problems.append("top level must be an object with 'dynamicDB' and 'staticDB'")
        return []
    tables: list[TableSpec] = []
    for section, keys in (("dynamicDB", DYNAMIC_KEYS), ("staticDB", STATIC_KEYS)):
        body = raw.get(section)
        if not isinstance(body, dict):
            problems.append(f"missing or non-object section '{section}'")
            continue
        for name, entry in body.items():
            spec = _parse_table(section, name, entry, keys, root, problems)
            if spec is not None:
                tables.append(spec)
    return tables


def _parse_table(
    section: str, name: str, entry: Any, keys: tuple[str, ...], root: Path, problems: list[str]
) -> TableSpec | None:
    where = f"{section}.{name}"
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be an object")
        return None
    before = len(problems)
    for key in keys:
        if key not in entry:
            problems.append(f"{where}: missing key '{key}'")
    for key in ("path", "name_start", "extension", "sheet_name"):
        if key in entry and not (isinstance(entry[key], str) and entry[key]):
            problems.append(f"{where}.{key}: must be a non-empty string")
    dtypes = _parse_dtypes(where, entry.get("dtypes"), problems)
    path: Path | None = None
    url = entry.get("path") if section != "dynamicDB" and is_url(entry.get("path") or "") else None
    if isinstance(entry.get("path"), str) and entry["path"]:
        try:  # a master file on object storage is read from its local mirror (dpo.urls)
            path = (local_mirror(root, entry["path"]) if url
                    else resolve_within(root, entry["path"], f"{where}.path"))
        except ConfigError as exc:
            problems.append(exc.message)
    if section == "dynamicDB":
        dtypes = _order_by_required(where, entry.get("required_fields"), dtypes, problems)
    if len(problems) > before or path is None:
        return None
    return TableSpec(
        name=name,
        kind="dynamic" if section == "dynamicDB" else "static",
        path=path,
        dtypes=tuple(dtypes.items()),
        name_start=entry.get("name_start", ""),
        extension=entry.get("extension", ""),
        sheet_name=entry.get("sheet_name"),
        url=url,
    )


def _parse_dtypes(where: str, raw: Any, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{where}.dtypes: must be a non-empty object of column -> dtype")
        return {}
    dtypes: dict[str, str] = {}
    for column, dtype in raw.items():
        if dtype not in DTYPE_KINDS:
            allowed = ", ".join(DTYPE_KINDS)
            problems.append(f"{where}.dtypes.{column}: unknown dtype {dtype!r} (allowed: {allowed})")
        elif canonical(column) in dtypes:
            problems.append(f"{where}.dtypes.{column}: column given twice")
        else:
            dtypes[canonical(column)] = dtype
    return dtypes


def _order_by_required(
    where: str, required: Any, dtypes: dict[str, str], problems: list[str]
) -> dict[str, str]:
    """Dynamic tables output exactly their required fields, in the listed order."""
    if required is None:
        return dtypes
    if not isinstance(required, list) or not required or not all(
        isinstance(c, str) for c in required
    ):
        problems.append(f"{where}.required_fields: must be a non-empty list of column names")
        return dtypes
    ordered: dict[str, str] = {}
    for column in required:
        name = canonical(column)
        if name in ordered:
            problems.append(f"{where}.required_fields: {column!r} listed twice")
        elif name not in dtypes:
            problems.append(f"{where}.required_fields: {column!r} has no entry in dtypes")
        else:
            ordered[name] = dtypes[name]
    return ordered
