"""Phase 2's data checks (dpo.checks): which tables are checked, against what, and what each
severity makes of the publish (docs/behaviour.md, "Data checks").

A table is checked when its content changed, when a table it `references` changed, or when
the checks file changed since the last Phase 2; a `references` check sees the referenced
table as this run publishes it (its current version when it does not publish). Tables with
no `references` check are checked first, so that what they publish is what others see.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from dpo.checks.origins import Provenance
from dpo.checks.rules import without
from dpo.checks.run import Sources, check_table, published
from dpo.checks.spec import Checks
from dpo.config import Paths, RowPolicy
from dpo.errors import DpoError, ErrorInfo, ErrorType
from dpo.excel.discover import discover
from dpo.fsio import Fingerprint
from dpo.quality import DataWarning, WarningKind, note
from dpo.results import CheckResult, Status, TableResult
from dpo.schema import Schema, TableSpec
from dpo.store.api import Hold, Store
from dpo.tables.cache import TableCache
from dpo.tables.contenthash import content_hash, older_hash_if_same
from dpo.tables.meta import META_TABLE
from dpo.tables.parquet import write_parquet
from dpo.transform.arrowtypes import arrow_schema

if TYPE_CHECKING:
    from dpo.load.loader import DataLoaderAgent, _Loaded


class TableChecker:
    def __init__(self, loader: DataLoaderAgent, loaded: list[_Loaded], held: dict[str, Hold]
                 ) -> None:
        self.loader, self.held = loader, held
        self.order = [item.spec.name for item in loaded]
        self.items = {item.spec.name: item for item in loaded}
        self.refused: dict[str, TableResult] = {}
        self.results: list[CheckResult] = []
        self.published: dict[str, pa.Table | None] = {}  # as this run publishes them

    def run(self) -> tuple[list[_Loaded], dict[str, TableResult], tuple[CheckResult, ...]]:
        checks, store = self.loader.checks, self.loader.store
        changed = {name for name, item in self.items.items()
                   if name not in self.held and item.digest != store.current_hash(name)}
        todo = changed | {t for name in changed for t in checks.referencing(name)}
        state = self.loader.state
        if state is None or state.checks != checks.fingerprint:
            todo |= {c.table for c in checks.checks}
        todo = {t for t in todo if t in self.items and t not in self.held and checks.for_table(t)}
        for name in sorted(todo, key=lambda t: (
                any(c.rule == "references" for c in checks.for_table(t)), self.order.index(t))):
            self._check(name)
        index = {(c.table, c.name): c.index for c in checks.checks}
        self.results.sort(key=lambda r: index[(r.table, r.name)])
        return [self.items[n] for n in self.order], self.refused, tuple(self.results)

    def _check(self, name: str) -> None:
        loader, item = self.loader, self.items[name]
        if item.table is None and item.copy_from is None:
            try:  # unchanged, but a table it references changed (or the rules did)
                item = loader.reload(item.spec)
            except DpoError as exc:  # it loaded a moment ago: said, and not checked
                self.results += [CheckResult(c.name, c.table, c.rule, c.severity, "skipped",
                                             reason=exc.message)
                                 for c in loader.checks.for_table(name)]
                return
        table = item.table if item.table is not None else self._read_input(item)
        sources = Sources(self._as_published, lambda: self._rows_before(name),
                          self._provenance(item.spec))
        verdict = check_table(loader.checks.for_table(name), table, sources)
        self.results += verdict.results
        if verdict.failed:
            self.refused[name] = refused_result(item, verdict.failed, loader.store.location(name),
                                                verdict.warnings)
            self.published[name] = None
            return
        path = loader.paths.checks_quarantine_path(name)
        warnings = (*item.warnings, *verdict.warnings)
        if verdict.quarantine is not None:
            write_parquet(path, verdict.quarantine, {META_TABLE: name.encode()},
                          point=f"checks-quarantine:{name}")
            table = without(table, verdict.quarantined)
            warnings += (note(WarningKind.QUARANTINE, f"{verdict.quarantine.num_rows} row(s) "
                              f"left out by checks, in {loader.paths.relative(path)}"),)
            digest = older_hash_if_same(loader.store.current_hash(name), table,
                                        content_hash(table))
            item = replace(item, table=table, copy_from=None, digest=digest,
                           rows=table.num_rows)
        elif path.exists():
            path.unlink()
        self.items[name] = replace(item, warnings=warnings)
        self.published[name] = table

    def _read_input(self, item: _Loaded) -> pa.Table:
        """Phase 1's output this run proved (published by copying): read for its checks."""
        assert item.copy_from is not None
        columns = list(item.spec.columns)
        # ParquetFile.read, not pq.read_table: that imports pyarrow.dataset, which asks for
        # pandas (BENCHMARKS.md, "Python API vs CLI")
        return pq.ParquetFile(item.copy_from).read(columns=columns).replace_schema_metadata(
            arrow_schema(item.spec).metadata)

    def _as_published(self, name: str) -> pa.Table | None:
        """`name` as this run publishes it, else its current version (None: never published)."""
        if name in self.published and self.published[name] is not None:
            return self.published[name]
        item = self.items.get(name)
        if item is not None and name not in self.refused and name not in self.held and (
                item.table is not None or item.copy_from is not None):
            table = item.table if item.table is not None else self._read_input(item)
        else:
            table = published(self.loader.store, name)
        self.published[name] = table
        return table

    def _rows_before(self, name: str) -> int | None:
        current = next((v for v in self.loader.store.list_versions(name) if v.current), None)
        return current.rows if current is not None else None

    def _provenance(self, spec: TableSpec) -> Provenance:
        return provenance(spec, self.loader.paths, self.loader.policy,
                          self.loader.schema.fingerprint)


def provenance(spec: TableSpec, paths: Paths, policy: RowPolicy, schema_fingerprint: str
               ) -> Provenance:
    """Where `spec`'s rows come from: its workbook, or its source files in the order Phase 1
    reads them (row counts from Phase 1's cache where it has them)."""
    if spec.kind != "dynamic":
        return Provenance(spec, [spec.path], policy)
    try:
        files = discover(spec, paths.source_dir / spec.path.name)
    except DpoError:
        files = []
    cache = TableCache(paths.cache_dir, spec.name, schema_fingerprint)

    def cached_rows(path: Path) -> int | None:
        try:
            record = cache.lookup(path, Fingerprint.of(path))
        except OSError:
            return None
        return int(record["rows"]) if record is not None else None

    return Provenance(spec, files, policy, cached_rows)


def check_published(store: Store, paths: Paths, schema: Schema, checks: Checks,
                    tables: list[str], policy: RowPolicy) -> list[CheckResult]:
    """`dpo check`: the checks of `tables` (all with checks when empty) on the current
    published versions, with no run. Nothing is written."""
    read: dict[str, pa.Table | None] = {}

    def current(name: str) -> pa.Table | None:
        if name not in read:
            read[name] = published(store, name)
        return read[name]

    results: list[CheckResult] = []
    for spec in schema:
        todo = checks.for_table(spec.name)
        if not todo or (tables and spec.name not in tables):
            continue
        table = current(spec.name)
        if table is None:
            results += [CheckResult(c.name, c.table, c.rule, c.severity, "skipped",
                                    reason=f"{spec.name} has no published version yet")
                        for c in todo]
            continue
        row_level = tuple(c for c in todo if c.rule != "row_count_change")
        verdict = check_table(row_level, table, Sources(
            current, lambda: None, provenance(spec, paths, policy, schema.fingerprint)))
        results += verdict.results
        results += [CheckResult(c.name, c.table, c.rule, c.severity, "skipped",
                                reason="compares a run's rows with the published version: "
                                "checked by `dpo run` only")
                    for c in todo if c.rule == "row_count_change"]
    index = {(c.table, c.name): c.index for c in checks.checks}
    return sorted(results, key=lambda r: index[(r.table, r.name)])


def refused_result(item: _Loaded, failed: tuple[CheckResult, ...], output: str | None,
                   warnings: tuple[DataWarning, ...]) -> TableResult:
    """A table a fail-severity check keeps from publishing: its current version stays."""
    first = failed[0]
    example = next((e for e in first.examples if e.get("file")), None)
    where = (f"; first: {example['file']} [{example['sheet']}] row {example['row']}"
             if example else "")
    kept = (f"current version {output.rsplit('/', 1)[-1]} kept" if output
            else "never published")
    names = ", ".join(repr(c.name) for c in failed)
    message = (f"check {names} failed ({first.failing_rows} row(s){where}): "
               f"{item.spec.name} not published, {kept}")
    error = ErrorInfo(ErrorType.CHECK_FAILED, message, table=item.spec.name,
                      file=example["file"] if example else None,
                      sheet=example["sheet"] if example else None,
                      row=example["row"] if example else None)
    return TableResult(table=item.spec.name, status=Status.ERROR, rows=item.rows,
                       files=(item.source,), changed=False, content_hash=item.digest,
                       output=output, warnings=(*item.warnings, *warnings), error=error)
