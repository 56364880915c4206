"""Typed results of each phase and of the pipeline; `to_dict()` makes the seed's result dict.

Statuses are compared as enums everywhere in dpo; they become lower-case strings only here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dpo.errors import ErrorInfo
from dpo.quality import DataWarning, counts

# Live progress events ("table_started", "file_done", "table_done") for the CLI's display.
Progress = Callable[[str, dict[str, object]], None]


class Status(StrEnum):
    SUCCESS = "success"
    PARTIAL_SUCCESS = "partial_success"
    WARNING = "warning"
    ERROR = "error"
    FAILED = "failed"
    SKIPPED = "skipped"


def hms(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


@dataclass(frozen=True)
class HealingAction:
    """Something dpo did to recover, on which table, and whether it worked."""

    action: str  # e.g. "rollback", "retry", "repair"
    table: str
    success: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "table": self.table, "success": self.success,
                "detail": self.detail}


@dataclass(frozen=True)
class TableResult:
    """What happened to one table in one phase."""

    table: str
    status: Status
    rows: int = 0
    files: tuple[str, ...] = ()
    files_failed: tuple[str, ...] = ()
    files_read: int = 0  # source files actually parsed this run (the rest came from the cache)
    duplicates_removed: int = 0
    duplicates_by_file: tuple[tuple[str, int], ...] = ()
    rows_rejected: int = 0
    changed: bool = False
    content_hash: str | None = None
    output: str | None = None
    warnings: tuple[DataWarning, ...] = ()
    blank_rows: int = 0  # blank rows skipped (gaps in a sheet, not records)
    error: ErrorInfo | None = None
    # What a publish changed against the previous version (dpo.store.changes); Phase 2 only.
    changes: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "status": str(self.status),
            "rows": self.rows,
            "files": list(self.files),
            "files_failed": list(self.files_failed),
            "files_read": self.files_read,
            "duplicates_removed": self.duplicates_removed,
            "duplicates_by_file": dict(self.duplicates_by_file),
            "rows_rejected": self.rows_rejected,
            "changed": self.changed,
            "content_hash": self.content_hash,
            "output": self.output,
            "warnings": [w.to_dict() for w in self.warnings[:MAX_WARNINGS_IN_DICT]],
            "warnings_total": len(self.warnings),
            "warnings_by_kind": counts(self.warnings),
            "blank_rows_skipped": self.blank_rows,
            "error": self.error.to_dict() if self.error else None,
            "changes": self.changes,
        }


# A result dict stays readable when a whole column is #N/A: the first N warnings are listed,
# the totals count them all (and the reports list every one, grouped).
MAX_WARNINGS_IN_DICT = 200


def all_warnings(tables: tuple[TableResult, ...]) -> list[DataWarning]:
    return [w for t in tables for w in t.warnings]


def phase_status(tables: list[TableResult]) -> Status:
    if any(t.status is Status.ERROR for t in tables):
        return Status.ERROR
    if any(t.status is Status.WARNING for t in tables):
        return Status.WARNING
    return Status.SUCCESS


@dataclass(frozen=True)
class CollectorResult:
    status: Status
    tables: tuple[TableResult, ...]
    files_processed: int
    files_failed: int
    records_count: int
    duplicates_removed: int
    data_updated: bool
    seconds: float
    disk_usage_bytes: int
    healing_actions: tuple[HealingAction, ...] = ()
    errors: tuple[ErrorInfo, ...] = ()
    component: str = "DataCollector"

    def failed_tables(self) -> list[str]:
        return [t.table for t in self.tables if t.status is Status.ERROR]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "component": self.component,
            "files_processed": self.files_processed,
            "files_failed": self.files_failed,
            "records_count": self.records_count,
            "duplicates_removed": self.duplicates_removed,
            "data_updated": self.data_updated,
            "execution_time": hms(self.seconds),
            "execution_seconds": round(self.seconds, 3),
            "disk_usage_bytes": self.disk_usage_bytes,
            "healing_actions": [h.to_dict() for h in self.healing_actions],
            "errors": [e.to_dict() for e in self.errors],
            "warnings_total": len(all_warnings(self.tables)),
            "details": [t.to_dict() for t in self.tables],
        }


@dataclass(frozen=True)
class CheckResult:
    """One data check run on one table (docs/behaviour.md, "Data checks"): a contract, as
    `loader_result.checks`. `examples`: the first failing rows, each {file, sheet, row,
    values}."""

    name: str
    table: str
    rule: str
    severity: str
    status: str  # passed | failed | skipped
    failing_rows: int = 0
    examples: tuple[dict[str, Any], ...] = ()
    reason: str | None = None  # why it was skipped
    rows_before: int | None = None  # row_count_change only
    rows_after: int | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name, "table": self.table, "rule": self.rule,
            "severity": self.severity, "status": self.status,
            "failing_rows": self.failing_rows, "examples": list(self.examples)}
        if self.reason is not None:
            data["reason"] = self.reason
        if self.rule == "row_count_change":
            data["rows_before"], data["rows_after"] = self.rows_before, self.rows_after
        return data


@dataclass(frozen=True)
class LoaderResult:
    status: Status
    tables: tuple[TableResult, ...]
    tables_processed: int
    tables_changed: int
    tables_created: int  # new version files written in this run
    seconds: float
    peak_memory_bytes: int = 0
    disk_usage_bytes: int = 0
    files_moved: tuple[str, ...] = ()
    healing_actions: tuple[HealingAction, ...] = ()
    errors: tuple[ErrorInfo, ...] = ()
    component: str = "DataLoaderAgent"
    checks: tuple[CheckResult, ...] = ()  # the data checks run in this phase, in file order

    @property
    def data_validation(self) -> str:
        """"failed" when a fail-severity check failed, or a table could not load at all."""
        if any(c.failed and c.severity == "fail" for c in self.checks):
            return "failed"
        return "failed" if any(t.status is Status.ERROR for t in self.tables) else "passed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "component": self.component,
            "tables_processed": self.tables_processed,
            "tables_changed": self.tables_changed,
            "tables_created": self.tables_created,
            "data_validation": self.data_validation,
            "execution_time": hms(self.seconds),
            "execution_seconds": round(self.seconds, 3),
            "peak_memory_bytes": self.peak_memory_bytes,
            "disk_usage_bytes": self.disk_usage_bytes,
            "files_moved": list(self.files_moved),
            "healing_actions": [h.to_dict() for h in self.healing_actions],
            "errors": [e.to_dict() for e in self.errors],
            "warnings_total": len(all_warnings(self.tables)),
            "details": [t.to_dict() for t in self.tables],
            "checks": [c.to_dict() for c in self.checks],
        }


def skipped_phase(component: str, reason: str) -> dict[str, Any]:
    return {"status": str(Status.SKIPPED), "component": component, "reason": reason,
            "execution_time": hms(0), "details": []}


@dataclass(frozen=True)
class PipelineResult:
    overall_status: Status
    collector: CollectorResult
    loader: LoaderResult | None  # None: Phase 2 skipped
    started_at: datetime
    finished_at: datetime
    skip_reason: str = ""
    notifications: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    reports: tuple[str, ...] = field(default_factory=tuple)

    def warnings(self) -> list[DataWarning]:
        tables = self.collector.tables + (self.loader.tables if self.loader else ())
        return all_warnings(tables)

    def to_dict(self) -> dict[str, Any]:
        loader = (self.loader.to_dict() if self.loader is not None
                  else skipped_phase("DataLoaderAgent", self.skip_reason))
        warnings = self.warnings()
        return {
            "overall_status": str(self.overall_status),
            "warnings": {"total": len(warnings), "by_kind": counts(warnings)},
            "collector_result": self.collector.to_dict(),
            "loader_result": loader,
            "timestamp": self.finished_at.isoformat(),
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round((self.finished_at - self.started_at).total_seconds(), 3),
            "notifications": list(self.notifications),
            "reports": list(self.reports),
        }
