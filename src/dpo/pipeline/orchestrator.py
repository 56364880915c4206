"""The DataPipelineOrchestrator: phase 1 -> decide (rollback? proceed?) -> phase 2 -> tell people.

Decision matrix (docs/behaviour.md, section 6; the seed's five Error Handling Scenarios):

    Phase 1   rollback   Phase 2    overall
    ok        -          ok         success
    failed    ok         ok         partial_success
    failed    failed     skipped    failed
    ok        -          failed     failed
    failed    ok/failed  failed     failed
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from dpo.checks.spec import NO_CHECKS, Checks, load_checks
from dpo.config import (
    ERROR_CELL_POLICIES,
    POLICIES,
    Paths,
    RowPolicy,
    Settings,
    load_settings,
    resolve_paths,
)
from dpo.errors import ConfigError, DpoError, PipelineLocked
from dpo.fsio import remove_temp_files
from dpo.inputs.plant import mirror_schema, mirror_sources
from dpo.notify.channels import (
    AppriseNotificationHandler,
    FileNotificationHandler,
    NotificationHandler,
)
from dpo.observe.ledger import Ledger
from dpo.pipeline.boundary import config_failure, phase_boundary
from dpo.pipeline.nochange import unchanged_run
from dpo.pipeline.scope import check_tables, select_tables
from dpo.pipeline.telling import Teller
from dpo.results import (
    CollectorResult,
    LoaderResult,
    PipelineResult,
    Progress,
    Status,
    TableResult,
)
from dpo.schema import Schema, load_schema
from dpo.store.api import Store
from dpo.store.session import store_session

if TYPE_CHECKING:
    from dpo.collect.collector import DataCollector
    from dpo.collect.early import EarlyPool, TablePlan
    from dpo.load.loader import DataLoaderAgent


class DataPipelineOrchestrator:
    """Runs Phase 1 (DataCollector) and Phase 2 (DataLoaderAgent) with healing and reporting."""

    def __init__(
        self,
        dynamic_db_source_dir: str = "database/dynamicDatabase",
        databaseSchemas_path: str = "database/databaseSchemas.json",
        annotation_path: str = "agents/shared_db/DataLoaderAgent/newest/path_annotations.json",
        default_dir: str = "agents/shared_db",
        *,
        root_dir: str | Path | None = None,
        config_file: str | Path | None = None,
        notification_handler: NotificationHandler | None = None,
        clock: Callable[[], datetime] = datetime.now,
        **options: Any,
    ) -> None:
        explicit = _explicit_paths(dynamic_db_source_dir, databaseSchemas_path, annotation_path,
                                   default_dir)
        self.settings: Settings = load_settings(
            config_file, root_dir=str(root_dir) if root_dir is not None else None,
            **explicit, **options,
        )
        self.dynamic_db_source_dir = self.settings.dynamic_db_source_dir
        self.databaseSchemas_path = self.settings.databaseSchemas_path
        self.annotation_path = self.settings.annotation_path
        self.default_dir = self.settings.default_dir
        self.paths: Paths = resolve_paths(self.settings)
        self.output_dir = self.paths.output_dir
        self.clock = clock
        self.notification_handler: NotificationHandler = (
            notification_handler or self._default_handler())

    def _default_handler(self) -> NotificationHandler:
        if self.settings.notify_urls:
            return AppriseNotificationHandler(self.settings.notify_urls)
        return FileNotificationHandler(self.output_dir / "notifications")

    # -- the run -----------------------------------------------------------------------------
    def run_pipeline(
        self, max_retries: int | None = None, enable_notifications: bool = True,
        on_bad_rows: str | None = None, on_error_cells: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Run both phases and return the seed's result dict (JSON-serialisable). Bad input
        or configuration (a schema edited into nonsense) is a failed result, not an exception;
        another run holding the lock raises PipelineLocked."""
        # An explicit value is checked as the config file's is (ConfigError: 0..20).
        retries = (self.settings.max_retries if max_retries is None
                   else replace(self.settings, max_retries=max_retries).max_retries)
        policy = self.settings.row_policy(on_bad_rows, on_error_cells)
        if policy.on_error_cells not in ERROR_CELL_POLICIES or policy.on_bad_rows not in POLICIES:
            raise ConfigError(f"unknown policy: on_bad_rows={policy.on_bad_rows!r}, "
                              f"on_error_cells={policy.on_error_cells!r}")
        if self.settings.tables:  # a name the schema lacks: refused before anything is done
            check_tables(self.paths, self.settings)
        if not self.output_dir.exists():
            # A plant that never ran has no ledger to record a refusal in: dpo creates nothing
            # for a configuration it refuses (an edit between two runs is recorded, see _phases).
            try:
                mirror_schema(self.paths, self.settings)  # a remote schema: fetched first
                self._checks(load_schema(self.paths.schema_path, self.paths.root))
            except DpoError as exc:  # the result says it (and `dpo run` prints it)
                now = self.clock()
                collector, _, reason = config_failure(exc)
                return PipelineResult(Status.FAILED, collector, None, now, now, reason).to_dict()
        done: list[PipelineResult] = []
        try:
            with store_session(self.paths, self.settings, clock=self.clock) as store:
                done.append(self._run_locked(store, retries, enable_notifications, policy,
                                             progress))
        except DpoError as exc:
            if done:  # the run is over and recorded; only giving the store back failed
                logger.warning("⚠️ after the run: {}", exc.message)
                return done[0].to_dict()
            if isinstance(exc, PipelineLocked) or self.paths.store_url is None:
                raise  # another run holds it (exit 4), or the local lock cannot be taken
            # The store on object storage could not be held (unreachable, no such bucket, a
            # read failing past its retries): a failed run, recorded like any other when the
            # plant has run.
            return self._failed_before_start(exc).to_dict()
        return done[0].to_dict()

    def _failed_before_start(self, exc: DpoError) -> PipelineResult:
        logger.error("❌ {}", exc.message)
        now = self.clock()
        collector, _, reason = config_failure(exc)
        result = PipelineResult(Status.FAILED, collector, None, now, now, reason)
        if (self.output_dir / "runs.sqlite").exists():
            ledger = Ledger(self.output_dir / "runs.sqlite")
            run_id = f"{now:%Y%m%d_%H%M%S}-{uuid.uuid4().hex[:6]}"
            ledger.start(run_id, now)  # the ledger logs, never raises, what it cannot record
            ledger.finish(run_id, result.to_dict())
            ledger.close()
        return result

    def _run_locked(self, store: Store, retries: int, notify: bool, policy: RowPolicy,
                    progress: Progress | None = None) -> PipelineResult:
        started = self.clock()
        run_id = f"{started:%Y%m%d_%H%M%S}-{uuid.uuid4().hex[:6]}"
        logger.info("🚀 pipeline run {} started (root {})", run_id, self.paths.root)
        for leftover in remove_temp_files(self.output_dir):  # reports a killed run left half-done
            logger.info("🔧 removed temp file {} left by an interrupted run",
                        self.paths.relative(leftover))
        ledger = Ledger(self.output_dir / "runs.sqlite")
        try:
            ledger.start(run_id, started)
            return self._run_recorded(ledger, store, run_id, started, retries, notify,
                                      (policy, progress))
        except KeyboardInterrupt:
            # Ctrl-C: every step before was atomic, so the store is as it was before the
            # step that was stopped; record the run as interrupted now (kill -9 is left to
            # the next run's repair).
            logger.debug("pipeline run {} interrupted", run_id)
            ledger.interrupt(run_id, self.clock())
            raise
        except DpoError as exc:
            # A failure outside both phases' boundaries (the reports' folder, the store at
            # the very end): the run is recorded as failed, never left `running`.
            logger.error("❌ pipeline run {} failed: {}", run_id, exc.message)
            collector, _, reason = config_failure(exc)
            failed = PipelineResult(Status.FAILED, collector, None, started, self.clock(),
                                    reason)
            ledger.finish(run_id, failed.to_dict())
            ledger.close()
            return failed

    def _run_recorded(self, ledger: Ledger, store: Store, run_id: str, started: datetime,
                      retries: int, notify: bool, how: tuple[RowPolicy, Progress | None]
                      ) -> PipelineResult:
        collector, loader, skip_reason = self._phases(store, retries, *how)
        overall = decide(collector, loader)
        result = PipelineResult(overall, collector, loader, started, self.clock(), skip_reason)
        result = Teller(self.notification_handler, self.settings, self.paths).finish(
            result, run_id, notify, store)
        ledger.finish(run_id, result.to_dict())
        from dpo.observe.dashboard import publish_observability  # .prom + dashboard; never raises

        publish_observability(self.paths, self.settings, ledger)
        icon = {"success": "✅", "partial_success": "⚠️"}.get(str(overall), "❌")
        logger.info("{} pipeline run {} finished: {}", icon, run_id, overall)
        return result

    def _phases(self, store: Store, retries: int, policy: RowPolicy, progress: Progress | None
                ) -> tuple[CollectorResult, LoaderResult | None, str]:
        """Both phases' results: a refused configuration, the no-change run, or the phases."""
        try:
            mirror_schema(self.paths, self.settings)  # inputs on object storage: what changed
            schema = load_schema(self.paths.schema_path, self.paths.root)
            checks = self._checks(schema)  # against every table: a check may name another
            schema = select_tables(schema, self.settings.tables)
            mirror_sources(self.paths, schema, self.settings)
        except DpoError as exc:  # edited between two runs, or the inputs' store unreachable
            logger.error("❌ {}: {}", "configuration" if isinstance(exc, ConfigError)
                         else "inputs", exc.message)
            return config_failure(exc)
        try:
            unchanged = (unchanged_run(self.paths, schema, store, checks.fingerprint)
                         if self.settings.incremental else None)
            if unchanged is None:
                # Before the data stack's import: worker processes start while it is imported.
                planned = self._plan_phase1(schema)
                try:
                    from dpo.arrays import run_memory_pool  # the data stack: pyarrow, numpy

                    with run_memory_pool():  # jemalloc unless the process chose its Arrow pool
                        return self._run_phases(schema, store, retries, policy, progress,
                                                checks, planned)
                finally:
                    if planned[1] is not None:  # normally closed by Phase 1 already
                        planned[1].pool.shutdown(wait=True, cancel_futures=True)
        except DpoError as exc:  # the store failing outside both phases, before any commit
            logger.error("❌ the store: {}", exc.message)
            return config_failure(exc)
        logger.info("✅ sources, outputs and store unchanged since the last run: nothing to do")
        return unchanged[0], unchanged[1], ""

    def _checks(self, schema: Schema) -> Checks:
        """The data checks file, validated against the schema (ChecksError: refused)."""
        path = self.paths.checks_file
        return load_checks(path, schema, self.paths.relative(path))

    def _plan_phase1(self, schema: Schema) -> tuple[dict[str, TablePlan], EarlyPool | None]:
        """What Phase 1 will read, and, if it will read it in worker processes (`auto` chose
        them, or the setting), those workers being started (collect.early)."""
        from dpo.collect.early import EarlyPool, choose_executor, plan

        plans = plan(self.paths, schema, self.settings.incremental)
        workers = self.settings.workers or default_workers()
        load = os.getloadavg()[0]
        kind = choose_executor(self.settings.executor, plans, workers, load=load)
        logger.debug("Phase 1 executor: {} ({} file(s) to read, load {:.1f})", kind,
                     sum(len(p.todo) for p in plans.values()), load)
        return plans, EarlyPool(workers) if kind == "processes" else None

    def _run_phases(
        self, schema: Schema, store: Store, retries: int, policy: RowPolicy,
        progress: Progress | None, checks: Checks = NO_CHECKS,
        planned: tuple[dict[str, TablePlan], EarlyPool | None] = ({}, None),
    ) -> tuple[CollectorResult, LoaderResult | None, str]:
        """Phase 1, healing, then Phase 2 if allowed. Imports the data stack (pyarrow...)."""
        from dpo.collect.collector import DataCollector
        from dpo.load.loader import DataLoaderAgent

        workers = self.settings.workers or default_workers()
        logger.info("📊 Phase 1: DataCollector")
        collector = self._phase1(DataCollector(
            self.paths, schema=schema, on_bad_rows=policy.on_bad_rows,
            on_error_cells=policy.on_error_cells, drop_total_rows=policy.drop_total_rows,
            max_retries=retries, workers=workers, incremental=self.settings.incremental,
            progress=progress, executor=self.settings.executor,
            scheduler=self.settings.scheduler, storage_options=self.settings.storage_options,
            plans=planned[0], early=planned[1]))
        collector = self._heal(collector, store, [spec.name for spec in schema.dynamic])
        if collector.status is Status.ERROR and not _all_rolled_back(collector):
            from dpo.pipeline.scope import not_published_reason

            reason = not_published_reason(collector, schema, self.paths,
                                          set(_annotations_or_empty(store)))
            logger.error("❌ Phase 2 skipped: {}", reason)
            return collector, None, reason
        logger.info("📊 Phase 2: DataLoaderAgent")
        before = _annotations_or_empty(store)
        loader = self._phase2(DataLoaderAgent(
            self.paths, schema=schema, store=store, max_retries=retries,
            incremental=self.settings.incremental, progress=progress, policy=policy,
            checks=checks))
        if loader.tables_created:
            from dpo.store.changes import describe_publish

            try:
                loader = describe_publish(store, before, loader)
            except DpoError as exc:  # after the commit: it stands, only the diff is missing
                logger.warning("⚠️ published, but what changed cannot be said: {}",
                               exc.message)
        return collector, loader, ""

    def _phase1(self, collector: DataCollector) -> CollectorResult:
        return phase_boundary("Phase 1", collector.process_all_data, lambda seconds, error:
                               CollectorResult(
                                   status=Status.ERROR, tables=(), files_processed=0,
                                   files_failed=0, records_count=0, duplicates_removed=0,
                                   data_updated=False, seconds=seconds, disk_usage_bytes=0,
                                   errors=(error,)))

    def _phase2(self, loader: DataLoaderAgent) -> LoaderResult:
        return phase_boundary("Phase 2", loader.process_all_data, lambda seconds, error:
                               LoaderResult(
                                   status=Status.ERROR, tables=(), tables_processed=0,
                                   tables_changed=0, tables_created=0, seconds=seconds,
                                   errors=(error,)))

    def _heal(
        self, collector: CollectorResult, store: Store, dynamic: list[str]
    ) -> CollectorResult:
        # A phase that crashed before naming its tables failed for all of them.
        failed = collector.failed_tables() or (dynamic if collector.status is Status.ERROR else [])
        if not failed:
            return collector
        logger.warning("⚠️ Phase 1 failed for {}; rolling back", ", ".join(failed))
        from dpo.pipeline.heal import rollback_table

        actions = tuple(rollback_table(self.paths, store, table) for table in failed)
        return replace(collector, healing_actions=collector.healing_actions + actions)

def default_workers() -> int:
    """Reader threads when the setting is 0: one per CPU, at most 4 (a plant's reports are
    small files; beyond 4 threads the serial part of a run dominates)."""
    return min(4, os.cpu_count() or 1)


def decide(collector: CollectorResult, loader: LoaderResult | None) -> Status:
    """The overall status of the seed's five scenarios (module docstring)."""
    if loader is None or loader.status is Status.ERROR:
        return Status.FAILED
    if collector.status is Status.ERROR:
        return Status.PARTIAL_SUCCESS
    return Status.SUCCESS


def _all_rolled_back(collector: CollectorResult) -> bool:
    rollbacks = [h for h in collector.healing_actions if h.action == "rollback"]
    return bool(rollbacks) and all(h.success for h in rollbacks)


def _annotations_or_empty(store: Store) -> dict[str, str]:
    """What is published before Phase 2 (to say what its publish changed); Phase 2 itself
    reports unreadable annotations."""
    from dpo.errors import IntegrityError

    try:
        return store.annotations()
    except IntegrityError:
        return {}


def _explicit_paths(*values: str) -> dict[str, str]:
    """Constructor paths that differ from the seed's defaults count as explicit arguments."""
    from dpo.config import DEFAULTS

    names = ("dynamic_db_source_dir", "databaseSchemas_path", "annotation_path", "default_dir")
    return {n: v for n, v in zip(names, values, strict=True) if v != DEFAULTS[n]}


__all__ = ["DataPipelineOrchestrator", "TableResult", "decide"]
