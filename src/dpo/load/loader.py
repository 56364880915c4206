"""Phase 2, the DataLoaderAgent: load every table, compare hashes, publish changed versions."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from loguru import logger

from dpo.checks.spec import NO_CHECKS, Checks
from dpo.config import Paths, RowPolicy, Settings
from dpo.errors import DpoError, ErrorType
from dpo.excel.retry import with_retries
from dpo.fsio import folder_size
from dpo.load.state import LoaderState, replayed
from dpo.quality import DataWarning, WarningKind, needs_review, note, plural
from dpo.results import (
    CheckResult,
    HealingAction,
    LoaderResult,
    Progress,
    Status,
    TableResult,
    phase_status,
)
from dpo.schema import Schema, TableSpec, load_schema
from dpo.store.api import Hold, Store, keep_holds
from dpo.store.local.versions import VersionStore
from dpo.tables.cache import TableCache
from dpo.tables.contenthash import content_hash, older_hash_if_same
from dpo.tables.meta import META_HASH, META_SOURCES, META_TABLE
from dpo.tables.parquet import parquet_meta, read_verified, recorded_hash, write_parquet
from dpo.transform.arrowtypes import arrow_schema
from dpo.transform.rejects import Screened
from dpo.transform.table import read_table


@dataclass(frozen=True)
class _Loaded:
    spec: TableSpec
    table: pa.Table | None  # None: unchanged since last loaded, or published by copying
    digest: str
    source: str
    rows: int
    copy_from: Path | None = None  # Phase 1's file, proven by this run's collector: copy it
    warnings: tuple[DataWarning, ...] = ()
    blank_rows: int = 0


class DataLoaderAgent:
    """Phase 2: every schema table -> a new version in the store when its content changed.

    `store`: the store to publish to, held by the caller (the orchestrator's store_session).
    Without one, the loader opens the plant's own: on disk, the versioned store; on object
    storage (`paths.store_url`), the store held for this loader's runs as the `dpo` command
    holds it (the run lock and the store lease, dpo.store.session), with `settings`' storage
    options and lease (default: Settings(keep_history=keep_history)).
    """

    def __init__(
        self, paths: Paths, *, schema: Schema | None = None, keep_history: int = 30,
        max_retries: int = 3, retry_wait: float = 0.5, store: Store | None = None,
        progress: Progress | None = None, incremental: bool = True,
        policy: RowPolicy | None = None, settings: Settings | None = None,
        checks: Checks = NO_CHECKS,
    ) -> None:
        self.progress = progress
        self.checks = checks  # dpo.checks: run on the tables about to be published
        self.policy = policy or RowPolicy()
        self.paths = paths
        self.schema = schema or load_schema(paths.schema_path, paths.root)
        self.state = LoaderState(paths.cache_dir, self.schema.fingerprint) if incremental else None
        # On object storage without a store given: one is opened per run (process_all_data)
        self._session = settings or Settings(keep_history=keep_history) \
            if store is None and paths.store_url is not None else None
        self.store: Store = store or VersionStore(paths, keep_history=keep_history)
        self.max_retries = max_retries
        self.retry_wait = retry_wait

    def process_all_data(self) -> LoaderResult:
        if self._session is None:
            return self._process()
        from dpo.store.session import store_session

        with store_session(self.paths, self._session) as self.store:
            return self._process()

    def _process(self) -> LoaderResult:
        started = time.perf_counter()
        healing = [HealingAction("repair", "*", True, a) for a in self.store.recover()]
        loaded: list[_Loaded] = []
        results: list[TableResult] = []
        for spec in self.schema:
            self._emit("table_started", table=spec.name, total=1)
            try:
                item = self._load(spec)
                self._emit("table_done", table=spec.name, status="success")
            except DpoError as exc:
                logger.error("❌ {}: {}", spec.name, exc.message)
                results.append(TableResult(table=spec.name, status=Status.ERROR,
                                           files_failed=(exc.file,) if exc.file else (),
                                           error=exc.info(spec.name)))
                continue
            loaded.append(item)
        if any(r.status is Status.ERROR for r in results):
            logger.error("❌ Phase 2: {} table(s) failed; nothing published", len(results))
            failed = ", ".join(r.table for r in results)
            results += [self._not_published(item, failed) for item in loaded]
            return self._summary(results, 0, (), healing, started)
        held = self._holds(loaded)
        loaded, refused, checked = self._checked(loaded, held)
        healing += [HealingAction("rollback", name, True, r.error.message if r.error else "")
                    for name, r in refused.items()]
        changed = [item for item in loaded
                   if (item.table is not None or item.copy_from is not None)
                   and item.spec.name not in held and item.spec.name not in refused
                   and item.digest != self.store.current_hash(item.spec.name)]
        outcome = self.store.publish({
            item.spec.name: (item.copy_from or item.table,
                             {META_TABLE: item.spec.name.encode(),
                              META_SOURCES: item.source.encode(),
                              META_HASH: item.digest.encode()})
            for item in changed if item.copy_from is not None or item.table is not None
        })
        for item in loaded:
            path = outcome.written.get(item.spec.name)
            if item.spec.name in held:
                results.append(self._held(item, held[item.spec.name]))
                continue
            if item.spec.name in refused:
                results.append(refused[item.spec.name])
                continue
            results.append(self._unchanged(item, published=True) if path is None else TableResult(
                table=item.spec.name, status=_status(item), rows=item.rows,
                files=(item.source,), changed=True, content_hash=item.digest,
                output=self.paths.location(path), warnings=item.warnings,
                blank_rows=item.blank_rows))
        self._remember([i for i in loaded if i.spec.name not in refused], refused)
        if changed:
            logger.info("✅ Phase 2: published {} ({}) as {}", plural(len(changed), "new version"),
                        ", ".join(item.spec.name for item in changed), outcome.stamp)
        else:
            logger.info("✅ Phase 2: all {} tables unchanged, nothing written", len(loaded))
        moved = tuple(self.paths.relative(dst) for _, dst in outcome.moved)
        return self._summary(results, len(outcome.written), moved, healing, started, checked)

    def _checked(self, loaded: list[_Loaded], held: dict[str, Hold]
                 ) -> tuple[list[_Loaded], dict[str, TableResult], tuple[CheckResult, ...]]:
        """The checks run on every table about to be published, or whose referenced table is
        (all tables with checks when the checks file changed): the items as they publish
        (quarantined rows left out), the tables a fail-severity check keeps out, the checks."""
        if not self.checks.checks:
            return loaded, {}, ()
        from dpo.load.checking import TableChecker

        checker = TableChecker(self, loaded, held)
        return checker.run()

    def _not_published(self, item: _Loaded, failed: str) -> TableResult:
        """A table that loaded but is not published because another failed (all-or-nothing)."""
        current = self.store.location(item.spec.name)
        where = (f"the current version is still {current.rsplit('/', 1)[-1]}" if current
                 else "it has never been published")
        return replace(self._unchanged(item, published=False), status=Status.SKIPPED,
                       warnings=(note(WarningKind.NOT_PUBLISHED, "not published: Phase 2 "
                                      f"publishes every table or none, and {failed} failed; "
                                      f"{where}"),))

    def _holds(self, loaded: list[_Loaded]) -> dict[str, Hold]:
        """Tables a manual rollback holds (dpo.store.api): not republished while their sources
        give what they gave at the rollback."""
        return keep_holds(self.store, {i.spec.name: i.digest for i in loaded})

    def _held(self, item: _Loaded, hold: Hold) -> TableResult:
        result = self._unchanged(item, published=True)
        held = note(WarningKind.HELD, f"held at {hold.version} since {hold.since} by "
                    f"`{hold.command}`: not republished until a source changes or `dpo rollback "
                    f"{item.spec.name} --release`")
        version = next((v for v in self.store.list_versions(item.spec.name) if v.current), None)
        return replace(result, content_hash=version.content_hash if version else None,
                       rows=version.rows or 0 if version else 0,
                       warnings=(*result.warnings, held))

    def _remember(self, loaded: list[_Loaded], refused: dict[str, TableResult]) -> None:
        """Record what was published from, so an unchanged input is not read next time (a
        table a check refused is read and checked again next time)."""
        if self.state is None:
            return
        for item in loaded:
            self.state.record(item.spec.name, self.source_of(item.spec), item.digest, item.rows,
                              [w.to_dict() for w in item.warnings], item.blank_rows)
        for name in refused:
            self.state.forget(name)
        self.state.save(self.store.commit_token(), self.checks.fingerprint)

    def _emit(self, event: str, **data: object) -> None:
        if self.progress is not None:
            self.progress(event, {"phase": "load", **data})

    def _unchanged(self, item: _Loaded, *, published: bool) -> TableResult:
        current = self.store.location(item.spec.name) if published else None
        return TableResult(
            table=item.spec.name, status=_status(item), rows=item.rows,
            files=(item.source,), changed=False, content_hash=item.digest,
            output=current,
            warnings=item.warnings, blank_rows=item.blank_rows)

    def _named(self, spec: TableSpec, path: Path) -> str:
        """How results name a table's input: a master file on object storage by its URL."""
        return spec.url or self.paths.relative(path)

    def source_of(self, spec: TableSpec) -> Path:
        if spec.kind == "dynamic":
            return self.paths.phase1_output(spec.name)
        return spec.path

    def reload(self, spec: TableSpec) -> _Loaded:
        """`spec`'s input read even if it is unchanged: a table it references changed, or the
        checks file did, so its checks must run (dpo.load.checking)."""
        return self._load(spec, again=True)

    def _load(self, spec: TableSpec, *, again: bool = False) -> _Loaded:
        """`again`: read the input even if it is unchanged."""
        path = self.source_of(spec)
        known = self.state.unchanged(spec.name, path) if self.state and not again else None
        if known is not None and known["hash"] == self.store.current_hash(spec.name):
            return _Loaded(spec, None, known["hash"], self._named(spec, path), known["rows"],
                           warnings=replayed(known), blank_rows=known.get("blank_rows", 0))
        if spec.kind == "dynamic":
            trusted = self._written_this_run(spec, path)
            if trusted is not None:
                return trusted
            table = self._from_phase1(spec, path)
            digest = recorded_hash(path) or content_hash(table)  # read_verified proved it
        else:
            screened = with_retries(lambda: self._from_excel(spec), max_retries=self.max_retries,
                                    what=path.name, base_wait=self.retry_wait)
            table = screened.norm.table.replace_schema_metadata(arrow_schema(spec).metadata)
            digest = older_hash_if_same(self.store.current_hash(spec.name), table,
                                        content_hash(table))
            return _Loaded(spec, table, digest, self._named(spec, path), table.num_rows,
                           warnings=screened.warnings, blank_rows=screened.blank)
        table = table.replace_schema_metadata(arrow_schema(spec).metadata)
        return _Loaded(spec, table, digest, self._named(spec, path), table.num_rows)

    def _written_this_run(self, spec: TableSpec, path: Path) -> _Loaded | None:
        """Phase 1's output as the collector recorded it (same bytes, hash and schema): no need
        to read and re-hash 100,000 rows that were hashed seconds ago; publish a copy."""
        if self.state is None:
            return None
        cache = TableCache(self.paths.cache_dir, spec.name, self.schema.fingerprint)
        output = cache.recorded_output(path)
        if output is None:
            return None
        meta = parquet_meta(path) or {}
        schema = pq.read_schema(path)
        if (meta.get(META_HASH, b"").decode() != output.get("hash")
                or schema.names != list(spec.columns)
                or [f.type for f in schema] != [f.type for f in arrow_schema(spec)]):
            return None
        return _Loaded(spec, None, output["hash"], self.paths.relative(path), output["rows"],
                       copy_from=path)

    def _from_phase1(self, spec: TableSpec, path: Path) -> pa.Table:
        if not path.exists():
            raise DpoError(f"{path.name}: Phase 1 output not found", table=spec.name,
                           error_type=ErrorType.FILE_NOT_FOUND, file=self.paths.relative(path))
        table = read_verified(path)
        expected = arrow_schema(spec)
        for want in expected:
            if want.name not in table.column_names:
                raise DpoError(f"{path.name}: column {want.name} missing", table=spec.name,
                               error_type=ErrorType.SCHEMA_MISMATCH, file=path.name,
                               column=want.name)
            got = table.schema.field(want.name).type
            if got != want.type:
                raise DpoError(f"{path.name}: column {want.name} is {got}, schema says "
                               f"{spec.dtype_of(want.name)}", error_type=ErrorType.SCHEMA_MISMATCH,
                               table=spec.name, file=path.name, column=want.name)
        return table.select(expected.names)

    def _from_excel(self, spec: TableSpec) -> Screened:
        """A static table read, normalised and screened (rejects.screen_rows). Its column
        problems and bad values are SCHEMA_MISMATCH (docs/behaviour.md); error cells follow
        the on_error_cells policy, a quarantine going beside Phase 1's."""
        if not spec.path.is_file():
            raise DpoError(f"{spec.path.name}: static file not found at "
                           f"{self._named(spec, spec.path)}", table=spec.name,
                           error_type=ErrorType.FILE_NOT_FOUND, file=spec.path.name)
        try:
            screened = read_table(spec.path, spec, self.policy, bad_values_quarantine=False,
                                  error_type=ErrorType.SCHEMA_MISMATCH)
        except DpoError as exc:
            if exc.error_type is ErrorType.MISSING_FIELDS:
                raise DpoError(exc.message, error_type=ErrorType.SCHEMA_MISMATCH, table=spec.name,
                               file=exc.file, sheet=exc.sheet, column=exc.column) from exc
            raise
        warnings = screened.warnings
        quarantine = self.paths.quarantine_path(spec.name)
        if screened.quarantine is not None:
            write_parquet(quarantine, screened.quarantine, {META_TABLE: spec.name.encode()},
                          point=f"quarantine:{spec.name}")
            warnings += (note(WarningKind.QUARANTINE, f"{screened.quarantine.num_rows} row(s) "
                              f"quarantined in {self.paths.relative(quarantine)}"),)
        elif quarantine.exists():
            quarantine.unlink()
        return Screened(screened.norm, warnings, screened.blank, screened.quarantine)

    def _summary(
        self, results: list[TableResult], written: int, moved: tuple[str, ...],
        healing: list[HealingAction], started: float, checks: tuple[CheckResult, ...] = (),
    ) -> LoaderResult:
        order = {spec.name: i for i, spec in enumerate(self.schema)}
        results.sort(key=lambda r: order[r.table])
        errors = tuple(r.error for r in results if r.error is not None)
        return LoaderResult(
            status=phase_status(results), tables=tuple(results),
            tables_processed=len(results), tables_changed=sum(r.changed for r in results),
            tables_created=written, seconds=time.perf_counter() - started,
            peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            disk_usage_bytes=folder_size(self.paths.loader_dir), files_moved=moved,
            healing_actions=tuple(healing), errors=errors, checks=checks,
        )


def _status(item: _Loaded) -> Status:
    return Status.WARNING if needs_review(item.warnings) else Status.SUCCESS
