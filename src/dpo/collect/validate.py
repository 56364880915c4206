"""`dpo validate`: check the schema and every source file as a run would read it (the same
row policies: an Excel error cell is a warning, as in the run); nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dpo.config import Paths, RowPolicy
from dpo.errors import CellErrors, DpoError
from dpo.excel.discover import discover
from dpo.quality import grouped_lines
from dpo.schema import TableSpec, load_schema
from dpo.transform.table import read_table


def validate_sources(paths: Paths, policy: RowPolicy | None = None) -> list[dict[str, Any]]:
    """One row per source file: ok, a warning, or the first problems found with
    file/row/column."""
    schema = load_schema(paths.schema_path, paths.root)  # raises SchemaError
    rows: list[dict[str, Any]] = []
    for spec in schema:
        try:
            files = (discover(spec, paths.source_dir / spec.path.name)
                     if spec.kind == "dynamic" else [spec.path])
        except DpoError as exc:
            rows.append(_row(spec, exc.file or "", "error", 0, exc.message))
            continue
        rows += [_check(spec, path, policy or RowPolicy()) for path in files]
    return rows


def _check(spec: TableSpec, path: Path, policy: RowPolicy) -> dict[str, Any]:
    if not path.is_file():
        return _row(spec, path.name, "error", 0, f"{path.name}: file not found")
    try:
        screened = read_table(path, spec, policy)
    except CellErrors as exc:
        cells = exc.cells()
        shown = "; ".join(c.describe() for c in cells[:5])
        more = f" (+{len(cells) - 5} more)" if len(cells) > 5 else ""
        return _row(spec, path.name, "error", 0, f"{len(cells)} bad value(s): {shown}{more}")
    except DpoError as exc:
        return _row(spec, path.name, "error", 0, exc.message)
    rows = screened.norm.table.num_rows
    if rows == 0:
        return _row(spec, path.name, "warning", 0, "headers only, no data rows")
    if screened.warnings:
        return _row(spec, path.name, "warning", rows, "; ".join(grouped_lines(screened.warnings)))
    return _row(spec, path.name, "ok", rows, "")


def _row(spec: TableSpec, file: str, status: str, rows: int, message: str) -> dict[str, Any]:
    return {"table": spec.name, "file": file, "status": status, "rows": rows, "message": message}
