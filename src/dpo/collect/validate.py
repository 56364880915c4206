"""`dpo validate`: check the schema and every source file; nothing is written."""

from __future__ import annotations

from typing import Any

from dpo.config import Paths
from dpo.errors import DpoError
from dpo.excel.discover import discover
from dpo.excel.reader import read_sheet
from dpo.schema import RENAMES, TableSpec, load_schema
from dpo.transform.normalize import normalize_table


def validate_sources(paths: Paths) -> list[dict[str, Any]]:
    """One row per source file: ok, or the first problems found with file/row/column."""
    schema = load_schema(paths.schema_path, paths.root)  # raises SchemaError
    rows: list[dict[str, Any]] = []
    for spec in schema:
        try:
            files = (discover(spec, paths.source_dir / spec.path.name)
                     if spec.kind == "dynamic" else [spec.path])
        except DpoError as exc:
            rows.append(_row(spec, exc.file or "", "error", 0, exc.message))
            continue
        rows += [_check(spec, path) for path in files]
    return rows


def _check(spec: TableSpec, path: Any) -> dict[str, Any]:
    if not path.is_file():
        return _row(spec, path.name, "error", 0, f"{path.name}: file not found")
    try:
        raw = read_sheet(path, spec.sheet_name, spec.columns, RENAMES, numeric=spec.float_columns,
                             text=spec.text_columns)
    except DpoError as exc:
        return _row(spec, path.name, "error", 0, exc.message)
    norm = normalize_table(raw.table, spec, raw.source, raw.exact,
                           raw.flagged())
    if norm.cells:
        shown = "; ".join(c.describe() for c in norm.cells[:5])
        more = f" (+{len(norm.cells) - 5} more)" if len(norm.cells) > 5 else ""
        return _row(spec, path.name, "error", raw.table.num_rows,
                    f"{len(norm.cells)} bad value(s): {shown}{more}")
    if raw.table.num_rows == 0:
        return _row(spec, path.name, "warning", 0, "headers only, no data rows")
    return _row(spec, path.name, "ok", raw.table.num_rows, "")


def _row(spec: TableSpec, file: str, status: str, rows: int, message: str) -> dict[str, Any]:
    return {"table": spec.name, "file": file, "status": status, "rows": rows, "message": message}
