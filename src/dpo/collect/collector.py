"""Phase 1, the DataCollector: discover -> read -> normalise -> merge -> hash -> atomic write."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
from loguru import logger

from dpo.collect.batchtask import FileRead, screen_batch
from dpo.collect.cluster import remote_plan
from dpo.collect.early import EarlyPool, TablePlan, choose_executor, plan_table
from dpo.collect.executors import TaskAhead, open_executor
from dpo.collect.fanout import combine
from dpo.collect.finisher import Finish, Finisher, done, nothing, then
from dpo.collect.segments import Piece, cached_parts, merge_pieces, update_cache
from dpo.config import Paths, RowPolicy
from dpo.errors import CellError, DpoError
from dpo.excel.discover import discover_with_notes
from dpo.excel.pool import ReadAhead
from dpo.excel.retry import RetryReport
from dpo.fsio import Fingerprint, folder_size
from dpo.quality import DataWarning, WarningKind, needs_review, note
from dpo.results import (
    CollectorResult,
    HealingAction,
    Progress,
    Status,
    TableResult,
    phase_status,
)
from dpo.schema import Schema, TableSpec, load_schema
from dpo.tables.cache import TableCache, sha256_by_name
from dpo.tables.contenthash import older_hash_if_same
from dpo.tables.meta import META_HASH, META_ROWS, META_SOURCES, META_TABLE
from dpo.tables.parquet import parquet_meta, recorded_hash, write_parquet
from dpo.tables.rowhashes import RowHashes


@dataclass
class _TableRun:
    """Mutable scratch state while one table is collected."""

    spec: TableSpec
    files: list[Path] = field(default_factory=list)
    warnings: list[DataWarning] = field(default_factory=list)
    blank_rows: int = 0
    healing: list[HealingAction] = field(default_factory=list)
    rejected: int = 0
    files_read: int = 0
    emptied: list[str] = field(default_factory=list)  # files read this run with headers only


# From this many rows the cache segment is written beside the Parquet file (both encode in
# Arrow's C++, without the GIL), not before it.
SIDE_WRITE_ROWS = 50_000


@dataclass(frozen=True)
class _Merged:
    digest: str
    duplicates: int
    by_file: tuple[tuple[str, int], ...]
    hashes: np.ndarray  # the merged table's row hashes (kept for the per-publish diff)


class DataCollector:
    """Phase 1: the plant's dynamic Excel exports -> `<default_dir>/dynamicDatabase/*.parquet`."""

    def __init__(
        self,
        paths: Paths,
        *,
        schema: Schema | None = None,
        on_bad_rows: str = "fail",
        on_error_cells: str = "null",
        drop_total_rows: bool = False,
        max_retries: int = 3,
        workers: int = 1,
        retry_wait: float = 0.5,
        incremental: bool = True,
        progress: Progress | None = None,
        executor: str = "threads",
        scheduler: str | None = None,
        storage_options: dict[str, str] | None = None,
        plans: dict[str, TablePlan] | None = None,
        early: EarlyPool | None = None,
    ) -> None:
        self.paths = paths
        self.storage_options = storage_options or {}  # object storage, this process only
        self.schema = schema or load_schema(paths.schema_path, paths.root)
        self.policy = RowPolicy(on_bad_rows, on_error_cells, drop_total_rows)
        self.max_retries = max_retries
        self.workers = max(1, workers)
        self.retry_wait = retry_wait
        self.incremental = incremental
        self.progress = progress
        self.executor, self.scheduler = executor, scheduler  # collect.executors
        # What the orchestrator found to read and the pool it started for it (collect.early)
        self._plans, self._early = plans or {}, early
        self._reads = ReadAhead(workers=1, max_retries=max_retries, retry_wait=retry_wait)
        self._tasks: TaskAhead | None = None
        self._discovered: dict[str, tuple[list[Path], list[DataWarning]]] = {}

    def process_all_data(self) -> CollectorResult:
        started = time.perf_counter()
        todo = {spec.name: self._to_read(spec) for spec in self.schema.dynamic}
        kind = "processes" if self._early is not None else choose_executor(
            self.executor, self._plans, self.workers)
        executor = open_executor(kind, self.workers, self.scheduler, self._early)
        tasks = nullcontext(None) if executor is None else TaskAhead(
            executor, self.paths.cache_dir / "tasks", self.policy,
            max_retries=self.max_retries, retry_wait=self.retry_wait,
            remote=remote_plan(self.paths, kind, self.scheduler, self.storage_options))
        with tasks as self._tasks, ReadAhead(
                workers=self.workers if executor is None else 1,
                max_retries=self.max_retries, retry_wait=self.retry_wait) as self._reads, \
                Finisher(self._guarded, background=self._reads.pooled or executor is not None
                         ) as finisher:
            for spec in self.schema.dynamic:  # while one table is merged, the next is read
                (self._tasks or self._reads).prefetch(todo[spec.name], spec)
            runs = [_TableRun(spec) for spec in self.schema.dynamic]
            for run in runs:  # a table is written while the next one is merged
                finisher.add(run, self._collect_guarded(run))
            results = finisher.results()
        healing = [action for run in runs for action in run.healing]
        return self._summary(results, healing, time.perf_counter() - started)

    def _to_read(self, spec: TableSpec) -> list[Path]:
        """The files of `spec` that the cache does not hold (collect.early.plan_table); its
        plan is kept for `auto` to choose from, its discovery for the table's pass."""
        found = self._plans.get(spec.name) or plan_table(self.paths, self.schema, spec,
                                                         self.incremental)
        if found is None:
            return []  # reported when the table is collected
        self._plans[spec.name] = found
        self._discovered[spec.name] = (found.files, found.notes)  # one look per run
        return found.todo

    def _collect_guarded(self, run: _TableRun) -> Finish:
        """The table read, normalised and merged; what is left to do (writing) as a callable
        that gives its result. A failure is the table's error result, never the phase's."""
        logger.info("📊 collecting {}", run.spec.name)
        try:
            return self._collect(run)
        except DpoError as exc:
            return partial(self._failed, run, exc)

    def _guarded(self, run: _TableRun, finish: Finish) -> TableResult:
        try:
            result = finish()
        except DpoError as exc:
            result = self._failed(run, exc)
        if result.status is not Status.ERROR:
            self._emit("table_done", table=run.spec.name, status=str(result.status))
        return result

    def _failed(self, run: _TableRun, exc: DpoError) -> TableResult:
        self._emit("table_done", table=run.spec.name, status="error")
        logger.error("❌ {}: {}", run.spec.name, exc.message)
        return TableResult(
            table=run.spec.name, status=Status.ERROR, files=tuple(p.name for p in run.files),
            files_failed=(exc.file,) if exc.file else (), warnings=tuple(run.warnings),
            error=exc.info(run.spec.name),
        )

    def _collect(self, run: _TableRun) -> Finish:
        spec = run.spec
        run.files, notes = (self._discovered.pop(spec.name) if spec.name in self._discovered
                            else discover_with_notes(spec, self.paths.source_dir / spec.path.name))
        run.warnings.extend(notes)
        self._emit("table_started", table=spec.name, total=len(run.files))
        out = self.paths.phase1_output(spec.name)
        names = tuple(p.name for p in run.files)
        cache = (TableCache(self.paths.cache_dir, spec.name, self.schema.fingerprint)
                 if self.incremental else None)
        if cache is not None and (summary := cache.unchanged_output(run.files, out)):
            logger.info("✅ {}: sources unchanged ({} rows), nothing read", spec.name,
                        summary["rows"])
            self._emit("file_done", table=spec.name, count=len(run.files))
            return done(self._table_result(
                run, Status.SUCCESS, summary["rows"], names, changed=False, out=out,
                digest=summary["hash"], dups=(summary["duplicates"],
                                              tuple(summary["duplicates_by_file"].items()))))
        parts, cache_update = self._parts(run, cache)
        merged, digest, dup_total, dup_by_file, hashes = merge_pieces(spec, parts, names)
        if merged.num_rows == 0:
            run.warnings.append(note(WarningKind.HEADERS_ONLY, "no data rows in any file "
                                     "(headers only); existing output kept"))
            return then(cache_update, self._table_result(run, Status.WARNING, 0, names,
                                                          changed=False, out=out))
        if run.emptied and out.exists():
            # A file that lost its rows must not take them out of the table unnoticed.
            run.warnings.append(note(
                WarningKind.HEADERS_ONLY, f"{', '.join(run.emptied)}: headers only; existing "
                "output kept until the file has rows again or is removed"))
            kept = int((parquet_meta(out) or {}).get(META_ROWS, b"0"))
            return then(cache_update, self._table_result(run, Status.WARNING, kept, names,
                                                          changed=False, out=out))
        return partial(self._write, run, cache, cache_update, merged,
                       _Merged(digest, dup_total, dup_by_file, hashes))

    def _write(self, run: _TableRun, cache: TableCache | None, cache_update: Callable[[], None],
               merged: pa.Table, found: _Merged) -> TableResult:
        """Write the table if its content changed, then the cache (the last step: a cache
        never describes an output that is not on disk)."""
        out, names = self.paths.phase1_output(run.spec.name), tuple(p.name for p in run.files)
        with ThreadPoolExecutor(1) as side:  # the cache segment beside the Parquet encoding
            segment = side.submit(cache_update) if merged.num_rows >= SIDE_WRITE_ROWS else None
            if segment is None:
                cache_update()
            changed, digest = self._write_output(run, cache, merged, found.digest)
            if segment is not None:
                segment.result()
        if changed and digest == found.digest:
            RowHashes(self.paths.cache_dir).put(digest, found.hashes)
        if not run.rejected:
            self._drop_stale_quarantine(run)
        if cache is not None:
            if not run.rejected and not run.warnings:
                cache.record_output(list(names), out, {
                    "rows": merged.num_rows, "hash": digest, "duplicates": found.duplicates,
                    "duplicates_by_file": dict(found.by_file)})
            cache.save()
        status = Status.WARNING if run.rejected or needs_review(run.warnings) else Status.SUCCESS
        return self._table_result(run, status, merged.num_rows, names, changed=changed, out=out,
                                  digest=digest, dups=(found.duplicates, found.by_file))

    def _write_output(self, run: _TableRun, cache: TableCache | None, merged: pa.Table,
                      digest: str) -> tuple[bool, str]:
        """(changed, content hash): the table written only if its content changed."""
        spec, out, names = run.spec, self.paths.phase1_output(run.spec.name), tuple(p.name for p in run.files)
        recorded = (cache.output_hash(out) if cache is not None else None) or recorded_hash(out)
        digest = older_hash_if_same(recorded, merged, digest)
        changed = recorded != digest
        if changed:
            meta = {META_TABLE: spec.name.encode(), META_SOURCES: "\n".join(names).encode(),
                    META_HASH: digest.encode()}
            write_parquet(out, merged, meta, point=f"collect:{spec.name}")
            logger.info("✅ {}: {} rows written to {}", spec.name, merged.num_rows, out.name)
        else:
            logger.info("✅ {}: unchanged ({} rows), nothing written", spec.name, merged.num_rows)
        return changed, digest

    def _table_result(
        self, run: _TableRun, status: Status, rows: int, names: tuple[str, ...], *,
        changed: bool, out: Path, digest: str | None = None,
        dups: tuple[int, tuple[tuple[str, int], ...]] = (0, ()),
    ) -> TableResult:
        return TableResult(
            table=run.spec.name, status=status, rows=rows, files=names,
            duplicates_removed=dups[0], duplicates_by_file=dups[1], rows_rejected=run.rejected,
            changed=changed, content_hash=digest, output=self.paths.relative(out),
            warnings=tuple(run.warnings), files_read=run.files_read, blank_rows=run.blank_rows,
        )

    # -- reading, with the per-file cache -------------------------------------------------------
    def _parts(self, run: _TableRun, cache: TableCache | None
               ) -> tuple[list[Piece], Callable[[], None]]:
        """Each file's normalised rows, in file order: from the cache, or read and normalised;
        and the cache's update with this run's new files, for the writing step to make."""
        fingerprints = [Fingerprint.of(p) for p in run.files]
        parts: list[Piece | None] = (
            cached_parts(cache, run.files, fingerprints, run.spec) if cache is not None
            else [None] * len(run.files))
        self._emit("file_done", table=run.spec.name, count=sum(p is not None for p in parts))
        todo = [i for i, part in enumerate(parts) if part is None]
        run.files_read = len(todo)
        dirty: set[str] = set()
        # The content hash the cache records must be of the bytes that were read: taken before
        # the read, a file replaced after it is read again next time, never served stale.
        digests = sha256_by_name([run.files[i] for i in todo]) if cache is not None else {}
        if todo:
            new, cells = self._batched(run, [run.files[i] for i in todo])
            # A file with anything to say is read again next run, so it says it again.
            dirty = {cell.file for cell in cells} | {w.file for w in run.warnings if w.file}
            for i, piece in zip(todo, new, strict=True):
                parts[i] = piece
        pieces = [p for p in parts if p is not None]
        if cache is None:
            return pieces, nothing
        return pieces, partial(update_cache, cache, run.spec, run.files, fingerprints, pieces,
                               todo, dirty, digests)

    def _batched(self, run: _TableRun, files: list[Path]
                 ) -> tuple[list[Piece], tuple[CellError, ...]]:
        """Every executor's path: the new files normalised in batches (collect.batchtask),
        put together as one pass over all of them (fanout.combine). Worker processes and
        Dask run batches of files; threads read here, ahead of need, and the files are one
        batch (their reads, retries and progress said as each file is read)."""
        on_retry = self._on_retry(run)
        on_done: Callable[[int], None] = partial(self._files_done, run.spec.name)
        if self._tasks is not None:
            batches = self._tasks.run(files, run.spec)
        else:
            sheets = self._reads.read(files, run.spec, on_retry=on_retry, on_done=on_done)
            batches = [screen_batch(files, sheets, [FileRead(p.name) for p in files],
                                    run.spec, self.policy, scratch=None)]
            on_done = _said
        got = combine(batches, run.spec, run.warnings, on_retry=on_retry, on_done=on_done)
        run.emptied.extend(got.emptied)
        self._screened(run, got.warnings, got.blank, got.quarantine)
        return got.pieces, got.cells

    def _on_retry(self, run: _TableRun) -> RetryReport:
        return lambda msg, ok: run.healing.append(HealingAction("retry", run.spec.name, ok, msg))

    def _files_done(self, table: str, count: int) -> None:
        self._emit("file_done", table=table, count=count)

    def _screened(self, run: _TableRun, warnings: list[DataWarning], blank: int,
                  quarantine: pa.Table | None) -> None:
        run.warnings.extend(warnings)
        run.blank_rows += blank
        if blank:
            logger.info("{}: {} blank row(s) skipped", run.spec.name, blank)
        if quarantine is not None:
            self._quarantine(run, quarantine)

    def _quarantine(self, run: _TableRun, table: pa.Table) -> None:
        run.rejected = table.num_rows
        path = self.paths.quarantine_path(run.spec.name)
        write_parquet(path, table, {META_TABLE: run.spec.name.encode()},
                      point=f"quarantine:{run.spec.name}")
        run.warnings.append(note(WarningKind.QUARANTINE, f"{table.num_rows} row(s) quarantined "
                                 f"in {self.paths.relative(path)}"))
        logger.warning("⚠️ {}: {} bad row(s) quarantined", run.spec.name, table.num_rows)

    def _drop_stale_quarantine(self, run: _TableRun) -> None:
        path = self.paths.quarantine_path(run.spec.name)
        if path.exists():
            path.unlink()
            logger.info("✅ {}: sources clean again; old quarantine file removed", run.spec.name)

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
            disk_usage_bytes=folder_size(self.paths.collector_dir),
            healing_actions=tuple(healing),
            errors=errors,
        )


def _said(count: int) -> None:
    """Files the threads path read: their progress was said as each was read."""
