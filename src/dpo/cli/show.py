"""`dpo show`: a published table, hash-verified, on the terminal or exported (csv, json,
parquet), through the same code as `dpo.open_table` (dpo.consume.table).

Added to the `dpo` command by `dpo.cli.build_app`. `--out` is the user's file, wherever
they choose, except inside the plant's own folders (the store, the sources): an export never
overwrites what dpo reads or publishes.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dpo.cli.store import Annot, Config, Out, Root, Verbose

if TYPE_CHECKING:
    import pyarrow as pa

    from dpo.config import Paths

FORMATS = ("table", "csv", "json", "parquet")
SCREEN_ROWS = 20  # rows the table format shows unless --limit says otherwise


def show(
    table: Annotated[str, typer.Argument(help="Table to show.")],
    version: Annotated[str | None, typer.Option(
        "--version", help="Version stamp, e.g. 20261127_0612 (default: the current one; see "
        "dpo versions TABLE).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=0, help=f"Rows to give (default: {SCREEN_ROWS} for --format table, "
        "every row for the others).")] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", help="Columns to give, comma-separated, in that order.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table (on the terminal), csv, json "
                                     "(an array of row objects) or parquet.")] = "table",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write to this file (csv, json, parquet) instead of stdout.")] = None,
    root: Root = None, config: Config = None, annotations: Annot = None, default_dir: Out = None,
    verbose: Verbose = False,
) -> None:
    """Show TABLE's current version (or --version), its content hash verified first."""
    from dpo.cli.runtime import EXIT_USAGE, _fail, _guard, _setup_logging

    _setup_logging(verbose)
    if fmt not in FORMATS:
        raise _fail(f"--format {fmt!r}: give one of {', '.join(FORMATS)}", EXIT_USAGE)
    if out is not None and fmt == "table":
        raise _fail("--out writes a file: give --format csv, json or parquet", EXIT_USAGE)
    if out is None and fmt == "parquet" and sys.stdout.isatty():
        raise _fail("--format parquet is binary: give --out FILE or redirect stdout",
                    EXIT_USAGE)
    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None

    def go() -> tuple[Any, Any]:
        from dpo.consume.table import open_plant_store, pick_version, read_version, select

        store, _ = open_plant_store(root, config, annotation_path=annotations,
                                    default_dir=default_dir)
        if out is not None:
            refuse_plant_file(store.paths, out)
        chosen = pick_version(store, table, version)
        return chosen, select(read_version(store, chosen), table, wanted, None)

    chosen, data = _guard(verbose, go)
    rows = limit if limit is not None else (SCREEN_ROWS if fmt == "table" else None)
    shown = data if rows is None else data.slice(0, rows)
    if wanted is not None or shown.num_rows != data.num_rows:
        shown = _without_version_hash(shown)
    if fmt == "table":
        _print_table(chosen, shown, data.num_rows)
        return
    body = _encode(shown, fmt)
    if out is None:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return
    from dpo.fsio import atomic_write_bytes

    _guard(verbose, lambda: atomic_write_bytes(out, body, point="show:out", durable=False))
    typer.echo(f"wrote {shown.num_rows:,} of {data.num_rows:,} rows of {chosen.table} "
               f"{chosen.stamp} (hash verified) to {out} ({fmt})")


def refuse_plant_file(paths: Paths, out: Path) -> None:
    """ConfigError when `out` is one of dpo's own files or inside its folders: the output
    folder (the store, the working files) and the sources."""
    from dpo.errors import ConfigError

    target = out.expanduser().resolve()
    if target.is_dir():
        raise ConfigError(f"--out {out} is a folder: give a file name")
    mine = {"the store's folder (default_dir)": paths.default_dir,
            "the source folder (dynamic_db_source_dir)": paths.source_dir}
    files = {"the annotations file": paths.annotation_path, "the schema": paths.schema_path}
    for what, folder in mine.items():
        if target.is_relative_to(folder.resolve()):
            raise ConfigError(f"--out {out} is inside {what} {folder}: dpo does not write "
                              "exports there; choose a file outside the plant's folders")
    for what, path in files.items():
        if target == path.resolve():
            raise ConfigError(f"--out {out} is {what}; choose another file")


def _encode(data: pa.Table, fmt: str) -> bytes:
    import pyarrow as pa

    if fmt == "csv":
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(_whole_seconds(data), sink)
        return bytes(sink.getvalue().to_pybytes())
    if fmt == "parquet":
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(data, sink, compression="zstd")
        return bytes(sink.getvalue().to_pybytes())
    rows = (json.dumps(row, default=_json_value, ensure_ascii=False) for row in data.to_pylist())
    return ("[" + ",\n".join(rows) + "]\n").encode()


def _without_version_hash(data: pa.Table) -> pa.Table:
    """A part of a version is not the version: its recorded hash and row count go (the pandas
    metadata, which gives the schema's dtypes, stays)."""
    from dpo.tables.meta import META_HASH, META_ROWS

    meta = {k: v for k, v in (data.schema.metadata or {}).items()
            if k not in (META_HASH, META_ROWS)}
    return data.replace_schema_metadata(meta)


def _whole_seconds(data: pa.Table) -> pa.Table:
    """Timestamps that are whole seconds (every date from Excel) written as Excel and people
    read them, 2024-05-02 06:00:00, not with nine zero decimals; others stay exact."""
    import pyarrow as pa

    for index, field in enumerate(data.schema):
        if pa.types.is_timestamp(field.type):
            try:
                data = data.set_column(index, field.name,
                                       data[field.name].cast(pa.timestamp("s", field.type.tz)))
            except pa.ArrowInvalid:  # a value with a fraction of a second: kept as it is
                continue
    return data


def _json_value(value: object) -> object:
    """What JSON has no type for: dates and times as ISO 8601, decimals as numbers."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _print_table(version: Any, data: pa.Table, total: int) -> None:
    """A grid when the columns fit the terminal; else one block per row, a line per column
    (as psql's expanded display), so that no value is cut into slivers."""
    from rich.markup import escape
    from rich.table import Table

    from dpo.cli.console import stdout

    console = stdout()
    console.print(escape(f"{version.table} {version.stamp} (hash verified): "
                         f"{data.num_rows:,} of {total:,} rows"), highlight=False)
    cells = [[_cell(v) for v in row.values()] for row in data.to_pylist()]
    names = data.column_names
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]
    if sum(widths) + 3 * len(names) + 1 <= console.width:
        grid = Table(*(escape(n) for n in names))
        for row in cells:
            grid.add_row(*(escape(v) for v in row))
        console.print(grid)
        return
    for number, row in enumerate(cells, 1):
        block = Table(show_header=False, title=f"row {number}", title_justify="left",
                      box=None, padding=(0, 1))
        block.add_column(style="bold", no_wrap=True)
        block.add_column(overflow="fold")
        for name, value in zip(names, row, strict=True):
            block.add_row(escape(name), escape(value))
        console.print(block)


def _cell(value: object) -> str:
    if value is None:
        return "NA"
    if isinstance(value, datetime) and value.time() == time(0):
        return value.date().isoformat()
    return str(value)
