"""Phase 1, the DataCollector: discover -> read -> normalise -> merge -> hash -> atomic write."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from loguru import logger

from dpo.config import Paths
from dpo.errors import CellError, CellErrors, DpoError, ErrorType
from dpo.excel import RawSheet, first_data_row, read_sheet
from dpo.fsio import recorded_hash, write_parquet
from dpo.frames import META_SOURCES, META_TABLE, content_hash, empty_table
from dpo.normalize import Normalized, Source, normalize_table, quarantine_table
from dpo.results import CollectorResult, HealingAction, Status, TableResult, phase_status
from dpo.retry import with_retries
from dpo.schema import RENAMES, Schema, TableSpec, load_schema

Progress = Callable[[str, dict[str, object]], None]
_DATE_IN_NAME = re.compile(r"^[^_]*_(\d{6,8})")


def discover(spec: TableSpec, folder: Path) -> list[Path]:
    """Source files of a dynamic table, oldest first (by the date in the name, then name)."""
    if not folder.is_dir():
        raise DpoError(f"source folder not found: {folder}", error_type=ErrorType.FILE_NOT_FOUND,
                       table=spec.name, file=str(folder))
    files = [
        p for p in folder.iterdir()
        if p.name.startswith(spec.name_start) and p.name.endswith(spec.extension)
        and not p.name.startswith(("~$", ".")) and p.is_file()
    ]
    if not files:
        raise DpoError(
            f"no {spec.name_start}*{spec.extension} files in {folder}",
            error_type=ErrorType.FILE_NOT_FOUND, table=spec.name, file=str(folder),
        )
    _refuse_escaping_links(files, folder, spec.name)
    return sorted(files, key=_date_key)


def _date_key(path: Path) -> tuple[int, str, str]:
    # YYYYMM and YYMMDD both sort chronologically as digit strings of equal length.
    match = _DATE_IN_NAME.match(path.name)
    return (0, match.group(1), path.name) if match else (1, "", path.name)


def _refuse_escaping_links(files: list[Path], folder: Path, table: str) -> None:
    root = folder.resolve()
    for path in files:
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise DpoError(f"{path.name}: symlink points outside the source folder; refused",
                           error_type=ErrorType.FILE_READ_ERROR, table=table, file=path.name)


@dataclass
class _TableRun:
    """Mutable scratch state while one table is collected."""

    spec: TableSpec
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    healing: list[HealingAction] = field(default_factory=list)
    rejected: int = 0


class DataCollector:
    """Phase 1: the plant's dynamic Excel exports -> `<default_dir>/dynamicDatabase/*.parquet`."""

    def __init__(
        self,
        paths: Paths,
        *,
        schema: Schema | None = None,
        on_bad_rows: str = "fail",
        max_retries: int = 3,
        workers: int = 1,
        retry_wait: float = 0.5,
        progress: Progress | None = None,
    ) -> None:
        self.paths = paths
        self.progress = progress
        self.schema = schema or load_schema(paths.schema_path, paths.root)
        self.on_bad_rows = on_bad_rows
        self.max_retries = max_retries
        self.workers = max(1, workers)
        self.retry_wait = retry_wait

    def output_path(self, table: str) -> Path:
        return self.paths.collector_dir / f"{table}.parquet"

    def quarantine_path(self, table: str) -> Path:
        return self.paths.collector_dir / "quarantine" / f"{table}.parquet"

    def process_all_data(self) -> CollectorResult:
        started = time.perf_counter()
        results: list[TableResult] = []
        healing: list[HealingAction] = []
        for spec in self.schema.dynamic:
            run = _TableRun(spec)
            results.append(self._collect_guarded(run))
            healing.extend(run.healing)
        return self._summary(results, healing, time.perf_counter() - started)

    def _collect_guarded(self, run: _TableRun) -> TableResult:
        spec = run.spec
        logger.info("📊 collecting {}", spec.name)
        try:
            result = self._collect(run)
            self._emit("table_done", table=spec.name, status=str(result.status))
            return result
        except DpoError as exc:
            self._emit("table_done", table=spec.name, status="error")
            logger.error("❌ {}: {}", spec.name, exc.message)
            return TableResult(
                table=spec.name, status=Status.ERROR, files=tuple(p.name for p in run.files),
                files_failed=(exc.file,) if exc.file else (), warnings=tuple(run.warnings),
                error=exc.info(spec.name),
            )

    def _collect(self, run: _TableRun) -> TableResult:
        spec = run.spec
        run.files = discover(spec, self.paths.source_dir / spec.path.name)
        self._emit("table_started", table=spec.name, total=len(run.files))
        sheets = self._read_all(run)
        merged, dup_total, dup_by_file = _merge(spec, [n for _, n in sheets])
        out = self.output_path(spec.name)
        names = tuple(p.name for p in run.files)
        if merged.num_rows == 0:
            run.warnings.append("no data rows in any file (headers only); existing output kept")
            return self._table_result(run, Status.WARNING, 0, names, changed=False, out=out)
        digest = content_hash(merged)
        changed = recorded_hash(out) != digest
        if changed:
            meta = {META_TABLE: spec.name.encode(), META_SOURCES: "\n".join(names).encode()}
            write_parquet(out, merged, meta, point=f"collect:{spec.name}")
            logger.info("✅ {}: {} rows written to {}", spec.name, merged.num_rows, out.name)
        else:
            logger.info("✅ {}: unchanged ({} rows), nothing written", spec.name, merged.num_rows)
        status = Status.WARNING if run.rejected or run.warnings else Status.SUCCESS
        return self._table_result(run, status, merged.num_rows, names, changed=changed, out=out,
                                  digest=digest, dups=(dup_total, dup_by_file))

    def _table_result(
        self, run: _TableRun, status: Status, rows: int, names: tuple[str, ...], *,
        changed: bool, out: Path, digest: str | None = None,
        dups: tuple[int, tuple[tuple[str, int], ...]] = (0, ()),
    ) -> TableResult:
        return TableResult(
            table=run.spec.name, status=status, rows=rows, files=names,
            duplicates_removed=dups[0], duplicates_by_file=dups[1], rows_rejected=run.rejected,
            changed=changed, content_hash=digest, output=self.paths.relative(out),
            warnings=tuple(run.warnings),
        )

    def _read_all(self, run: _TableRun) -> list[tuple[RawSheet, Normalized]]:
        """Read and normalise every file (in parallel when allowed), keeping file order."""
        def one(path: Path) -> tuple[RawSheet, Normalized]:
            sheet = with_retries(
                lambda: _read_one(path, run.spec), max_retries=self.max_retries,
                what=path.name, base_wait=self.retry_wait,
                on_retry=lambda msg: run.healing.append(
                    HealingAction("retry", run.spec.name, True, msg)),
            )
            self._emit("file_done", table=run.spec.name, file=path.name)
            return sheet

        if self.workers > 1 and len(run.files) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                sheets = list(pool.map(one, run.files))
        else:
            sheets = [one(p) for p in run.files]
        return self._apply_policy(run, sheets)

    def _apply_policy(
        self, run: _TableRun, sheets: list[tuple[RawSheet, Normalized]]
    ) -> list[tuple[RawSheet, Normalized]]:
        for raw, norm in sheets:
            if raw.table.num_rows == 0:
                run.warnings.append(f"{raw.source.file}: headers only, no data rows")
        cells = [cell for _, norm in sheets for cell in norm.cells]
        if cells and self.on_bad_rows != "quarantine":
            raise CellErrors(cells, table=run.spec.name)
        if cells:
            self._quarantine(run, sheets)
            sheets = [(raw, _drop_bad(norm)) for raw, norm in sheets]
        return sheets

    def _quarantine(self, run: _TableRun, sheets: list[tuple[RawSheet, Normalized]]) -> None:
        parts = [quarantine_table(raw.table, norm)
                 for raw, norm in sheets if len(norm.bad_rows)]
        table = pa.concat_tables(parts, promote_options="permissive")
        run.rejected = table.num_rows
        path = self.quarantine_path(run.spec.name)
        write_parquet(path, table, {META_TABLE: run.spec.name.encode()},
                      point=f"quarantine:{run.spec.name}")
        run.warnings.append(f"{table.num_rows} row(s) quarantined in {self.paths.relative(path)}")
        logger.warning("⚠️ {}: {} bad row(s) quarantined", run.spec.name, table.num_rows)

    def _emit(self, event: str, **data: object) -> None:
        if self.progress is not None:
            self.progress(event, {"phase": "collect", **data})

    def _summary(
        self, tables: list[TableResult], healing: list[HealingAction], seconds: float
    ) -> CollectorResult:
        errors = tuple(t.error for t in tables if t.error is not None)
        return CollectorResult(
            status=phase_status(tables),
            tables=tuple(tables),
            files_processed=sum(len(t.files) for t in tables if t.status is not Status.ERROR),
            files_failed=sum(max(1, len(t.files_failed)) for t in tables
                             if t.status is Status.ERROR),
            records_count=sum(t.rows for t in tables),
            duplicates_removed=sum(t.duplicates_removed for t in tables),
            data_updated=any(t.changed for t in tables),
            seconds=seconds,
            disk_usage_bytes=_folder_size(self.paths.collector_dir),
            healing_actions=tuple(healing),
            errors=errors,
        )


def _read_one(path: Path, spec: TableSpec) -> tuple[RawSheet, Normalized]:
    raw = read_sheet(path, spec.sheet_name, spec.columns, RENAMES)
    norm = normalize_table(raw.table, spec, raw.source)
    if norm.cells:
        # Locate the rows exactly only when something is wrong: the used range may not start
        # at row 1, and finding that out costs a second parse.
        start = first_data_row(path, raw.source.sheet)
        if start != raw.source.first_row:
            source = Source(raw.source.file, raw.source.sheet, start)
            raw = RawSheet(raw.table, source)
            norm = normalize_table(raw.table, spec, source)
    return raw, norm


def _drop_bad(norm: Normalized) -> Normalized:
    keep = np.ones(norm.table.num_rows, dtype=bool)
    keep[norm.bad_rows] = False
    return Normalized(norm.table.filter(pa.array(keep)), (), np.array([], dtype=np.int64),
                      norm.source)


def _merge(
    spec: TableSpec, parts: list[Normalized]
) -> tuple[pa.Table, int, tuple[tuple[str, int], ...]]:
    """Concatenate in file order; drop exact duplicate rows, counted by the file they were in."""
    tables = [p.table for p in parts if p.table.num_rows]
    if not tables:
        return empty_table(spec), 0, ()
    merged = pa.concat_tables(tables)
    frame = merged.to_pandas()
    duplicated = frame.duplicated(keep="first").to_numpy()
    if not duplicated.any():
        return merged, 0, ()
    owner = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    files = [p for p in parts if p.table.num_rows]
    counts = np.bincount(owner[duplicated], minlength=len(tables))
    by_file = tuple((files[i].source.file, int(n)) for i, n in enumerate(counts) if n)
    return merged.filter(pa.array(~duplicated)), int(duplicated.sum()), by_file


def _folder_size(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
