"""The no-change run: prove from fingerprints alone that neither phase has anything to do.

Stdlib only. Every dynamic table's sources and Phase 1 output must match the collector's
manifest, every table's input must match what Phase 2 last published from, the annotations
must be as Phase 2 left them, and the store must hold nothing a crash left behind. Any doubt
and the orchestrator runs the phases in full (which are incremental themselves).
"""

from __future__ import annotations

import time

from dpo.config import Paths
from dpo.errors import DpoError
from dpo.excel.discover import discover_with_notes
from dpo.fsio import folder_size
from dpo.load.state import LoaderState, replayed
from dpo.quality import needs_review
from dpo.results import CollectorResult, LoaderResult, Status, TableResult, phase_status
from dpo.schema import Schema
from dpo.store.api import Store
from dpo.tables.cache import TableCache


def unchanged_run(paths: Paths, schema: Schema, store: Store, checks: str = ""
                  ) -> tuple[CollectorResult, LoaderResult] | None:
    """Both phases' results when nothing changed since the last run, else None. `checks`:
    the checks file's fingerprint (an edited checks file runs its checks)."""
    started = time.perf_counter()
    collected = _collector_unchanged(paths, schema)
    if collected is None:
        return None
    collect_s = time.perf_counter() - started
    loaded = _loader_unchanged(paths, schema, store, checks)
    if loaded is None:
        return None
    collector = CollectorResult(
        status=Status.SUCCESS, tables=tuple(collected),
        files_processed=sum(len(t.files) for t in collected), files_failed=0,
        records_count=sum(t.rows for t in collected),
        duplicates_removed=sum(t.duplicates_removed for t in collected), data_updated=False,
        seconds=collect_s, disk_usage_bytes=folder_size(paths.collector_dir))
    loader = LoaderResult(
        status=phase_status(loaded), tables=tuple(loaded), tables_processed=len(loaded),
        tables_changed=0, tables_created=0, seconds=time.perf_counter() - started - collect_s,
        disk_usage_bytes=folder_size(paths.loader_dir))
    return collector, loader


def _collector_unchanged(paths: Paths, schema: Schema) -> list[TableResult] | None:
    results = []
    for spec in schema.dynamic:
        try:
            files, notes = discover_with_notes(spec, paths.source_dir / spec.path.name)
        except DpoError:
            return None
        if notes:
            return None  # a full run says them
        output = paths.phase1_output(spec.name)
        summary = TableCache(paths.cache_dir, spec.name, schema.fingerprint).unchanged_output(
            files, output)
        if summary is None:
            return None
        results.append(TableResult(
            table=spec.name, status=Status.SUCCESS, rows=summary["rows"],
            files=tuple(p.name for p in files), duplicates_removed=summary["duplicates"],
            duplicates_by_file=tuple(summary["duplicates_by_file"].items()), changed=False,
            content_hash=summary["hash"], output=paths.relative(output)))
    return results


def _loader_unchanged(paths: Paths, schema: Schema, store: Store, checks: str
                      ) -> list[TableResult] | None:
    state = LoaderState(paths.cache_dir, schema.fingerprint)
    if state.checks != checks:
        return None
    if not state.annotations_unchanged(store.commit_token()) or store.leftovers():
        return None
    try:
        annotations = store.annotations()
    except DpoError:
        return None
    results = []
    for spec in schema:
        source = (paths.phase1_output(spec.name) if spec.kind == "dynamic"
                  else spec.path)
        record = state.unchanged(spec.name, source)
        stored = annotations.get(spec.name)
        if record is None or stored is None or not store.has(stored):
            return None
        warnings = replayed(record)
        results.append(TableResult(
            table=spec.name, status=Status.WARNING if needs_review(warnings) else Status.SUCCESS,
            rows=record["rows"], files=(paths.relative(source),), changed=False,
            content_hash=record["hash"], output=stored, warnings=warnings,
            blank_rows=record.get("blank_rows", 0)))
    return results
