"""Plain-text reports a plant engineer can act on; rendering is pure, writing is at the end.

    <output_dir>/newest/YYYYMMDD_HHMM_DataCollector_<report_type>.txt
    <output_dir>/newest/YYYYMMDD_HHMM_DataLoader_<report_type>.txt
    <output_dir>/newest/YYYYMMDD_HHMM_DataPipelineOrchestrator_final_report.txt
    <output_dir>/historical_db/   the previous runs' reports
    <output_dir>/change_log.txt   one short block per run
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dpo.fsio import append_line_block, atomic_write_text, fsync_dir, move_durably, next_stamp
from dpo.quality import grouped_lines, plural
from dpo.results import (
    CheckResult,
    CollectorResult,
    LoaderResult,
    PipelineResult,
    Status,
    TableResult,
    hms,
)

RULE = "=" * 72
_REPORT_RE = re.compile(r"^(\d{8}_\d{4}(?:-\d+)?)_.+\.txt$")
SHORT_NAMES = {"DataCollector": "DataCollector", "DataLoaderAgent": "DataLoader"}


def render_phase_success(phase: CollectorResult | LoaderResult, context: Mapping[str, Any]) -> str:
    """The success report of one phase: what ran, counts, what changed."""
    lines = [RULE, f"{phase.component} — SUCCESS REPORT", RULE,
             f"Run:            {context['run_id']}",
             f"Status:         {phase.status}",
             f"Execution time: {hms(phase.seconds)}"]
    if isinstance(phase, CollectorResult):
        lines += [f"Files processed: {phase.files_processed}",
                  f"Records:         {phase.records_count}",
                  f"Duplicates removed: {phase.duplicates_removed}",
                  f"Data updated:    {'yes' if phase.data_updated else 'no (unchanged)'}"]
    else:
        lines += [f"Tables processed: {phase.tables_processed}",
                  f"Tables changed:   {phase.tables_changed}",
                  f"Versions written: {phase.tables_created}",
                  f"Data validation:  {phase.data_validation}"]
    lines += ["", "TABLES", "-" * 72]
    lines += [_table_line(t) for t in phase.tables]
    for action in phase.healing_actions:
        state = "succeeded" if action.success else "FAILED"
        lines.append(f"  {action.action} {action.table}: {state} — {action.detail}")
    lines += warning_section(phase.tables)
    if isinstance(phase, LoaderResult):
        lines += check_section(phase.checks)
    return "\n".join(lines) + "\n"


def check_section(checks: Sequence[CheckResult]) -> list[str]:
    """"DATA CHECKS": passed/failed per table, then every failed check (fail severity first)
    with its first examples (file, sheet, Excel row and values)."""
    if not checks:
        return []
    lines = ["", "DATA CHECKS", "-" * 72]
    tables: dict[str, list[CheckResult]] = {}
    for check in checks:
        tables.setdefault(check.table, []).append(check)
    for table, found in tables.items():
        counts = {s: sum(c.status == s for c in found) for s in ("passed", "failed", "skipped")}
        lines.append(f"  {table:<28} " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    failed = sorted((c for c in checks if c.failed), key=lambda c: c.severity != "fail")
    for check in failed:
        rows = (f"{check.rows_after} rows against {check.rows_before} published"
                if check.rule == "row_count_change" else f"{check.failing_rows} row(s)")
        lines.append(f"  FAILED [{check.severity}] {check.table}: {check.name!r} "
                     f"({check.rule}) on {rows}")
        lines += [f"    - {e['file']} [{e['sheet']}] row {e['row']}: {e['values']}"
                  for e in check.examples]
        if check.failing_rows > len(check.examples) and check.examples:
            lines.append(f"    ... and {check.failing_rows - len(check.examples)} more row(s)")
    return lines


def warning_section(tables: Sequence[TableResult]) -> list[str]:
    """"DATA QUALITY WARNINGS": every warning, grouped (what was published differently from the
    sheet as written, and the notes about tables)."""
    lines: list[str] = []
    for table in tables:
        if table.warnings:
            lines += [f"  {table.table} ({plural(len(table.warnings), 'warning')}):",
                      *(f"    - {line}" for line in grouped_lines(table.warnings))]
    return ["", "DATA QUALITY WARNINGS", "-" * 72, *lines] if lines else []


def _table_line(table: TableResult) -> str:
    change = "changed" if table.changed else "unchanged"
    extra = []
    if table.duplicates_removed:
        extra.append(f"{plural(table.duplicates_removed, 'duplicate')} removed")
    if table.rows_rejected:
        extra.append(f"{plural(table.rows_rejected, 'row')} quarantined")
    if table.changes:
        extra.append(change_summary(table.changes))
    if table.blank_rows:
        extra.append(f"{plural(table.blank_rows, 'blank row')} skipped")
    if table.warnings:
        extra.append(f"{plural(len(table.warnings), 'warning')}, listed below")
    tail = f" ({'; '.join(extra)})" if extra else ""
    where = f" -> {table.output}" if table.output else ""
    return f"  {table.table:<28} {table.status:<8} {table.rows:>9,} rows, {change}{where}{tail}"


def change_summary(change: Mapping[str, Any]) -> str:
    """'+12 / -3 rows vs 20240502_0600; values changed in itemQuantity' (dpo.store.changes)."""
    against = f" vs {change['previous']}" if change.get("previous") else " (first version)"
    text = f"+{change['rows_added']:,} / -{change['rows_removed']:,} rows{against}"
    for key, label in (("columns_changed", "values changed in"),
                       ("columns_added", "columns added"), ("columns_removed", "columns removed")):
        if change.get(key):
            text += f"; {label} {', '.join(change[key])}"
    return text


def render_final(result: PipelineResult, context: Mapping[str, Any]) -> str:
    """The pipeline's final report: overall status, both phases, actions, what to do next."""
    collector, loader = result.collector, result.loader
    overall = str(result.overall_status)
    lines = [RULE, "DataPipelineOrchestrator — FINAL REPORT", RULE,
             f"Run:             {context['run_id']}",
             f"Started:         {result.started_at.isoformat()}",
             f"Finished:        {result.finished_at.isoformat()}",
             f"Overall status:  {overall.upper()}{_with_warnings(result)}",
             "",
             f"Phase 1 DataCollector:   {collector.status:<8} ({hms(collector.seconds)}, "
             f"{plural(collector.files_processed, 'file')}, "
             f"{plural(collector.records_count, 'record')})"]
    if loader is None:
        lines.append(f"Phase 2 DataLoaderAgent: skipped  ({result.skip_reason})")
    else:
        lines.append(f"Phase 2 DataLoaderAgent: {loader.status:<8} ({hms(loader.seconds)}, "
                     f"{plural(loader.tables_created, 'new version')}, validation "
                     f"{loader.data_validation})")
    loaded = loader.tables if loader is not None else ()
    changed = [t for t in loaded if t.changes]
    if changed:
        lines += ["", "WHAT CHANGED (dpo diff TABLE shows the rows)"]
        lines += [f"  - {t.table}: {change_summary(t.changes or {})}" for t in changed]
    actions = [*collector.healing_actions, *(loader.healing_actions if loader else ())]
    if actions:
        lines += ["", "ACTIONS TAKEN"]
        lines += [f"  - {a.action} {a.table}: {'succeeded' if a.success else 'FAILED'}"
                  f" — {a.detail}" for a in actions]
    errors = [*collector.errors, *(loader.errors if loader else ())]
    if errors:
        lines += ["", "ERRORS"]
        lines += [f"  - [{e.error_type}] {e.message}" for e in errors]
    lines += warning_section([*collector.tables, *loaded])
    lines += check_section(loader.checks if loader is not None else ())
    lines += ["", "NEXT STEPS", f"  {next_step(overall)}"]
    for note in result.notifications:
        state = "sent" if note.get("sent") else f"NOT sent ({note.get('error') or 'disabled'})"
        lines.append(f"  Notification for {note['component']} via {note['channel']}: {state}")
    return "\n".join(lines) + "\n"


def _with_warnings(result: PipelineResult) -> str:
    total = len(result.warnings())
    if not total or result.overall_status is Status.FAILED:
        return ""
    return f" (published with {total} warning{'s' if total != 1 else ''})"


def next_step(overall: str) -> str:
    return {
        "success": "Nothing to do.",
        "partial_success": "Published data is the last good state; fix the source named under "
                           "ERRORS and run again.",
        "failed": "Published data is unchanged (last good state). Fix the errors above, then run "
                  "again; see the manual-review report(s) beside this one.",
    }.get(overall, "Check the logs.")


class ReportWriter:
    """Archives the previous run's reports, then writes this run's, under one stamp."""

    def __init__(self, output_dir: Path) -> None:
        self.newest = output_dir / "newest"
        self.history = output_dir / "historical_db"
        self.change_log = output_dir / "change_log.txt"

    def archive_previous(self) -> list[Path]:
        moved = []
        for path in sorted(self.newest.glob("*.txt")) if self.newest.is_dir() else ():
            dst = self.history / path.name
            move_durably(path, dst, point="report:archive", sync=False)
            moved.append(dst)
        if moved:  # one fsync per folder for the whole batch
            fsync_dir(self.history)
            fsync_dir(self.newest)
        return moved

    def stamp(self, base: str) -> str:
        used = {m.group(1) for folder in (self.newest, self.history) if folder.is_dir()
                for p in folder.iterdir() if (m := _REPORT_RE.match(p.name))}
        return next_stamp(base, used)

    def write(self, stamp: str, reports: Mapping[str, str]) -> list[Path]:
        """`reports` maps '<Component>_<report_type>' to text."""
        written = []
        for name, text in reports.items():
            path = self.newest / f"{stamp}_{name}.txt"
            atomic_write_text(path, text, point=f"report:{name}", sync_dir=False)
            written.append(path)
        fsync_dir(self.newest)
        return written

    def log(self, block: str) -> None:
        append_line_block(self.change_log, block, point="report:log")


def change_block(result: PipelineResult, run_id: str, reports: list[Path]) -> str:
    """The run's block in the reports' log: one line per phase, healing action and report."""
    collector = result.collector
    loader = result.loader
    lines = [f"[{result.finished_at:%Y-%m-%d %H:%M:%S}] run {run_id}: {result.overall_status}",
             f"  Phase 1: {collector.status}, {collector.records_count} records, "
             f"{'data updated' if collector.data_updated else 'no change'}",
             f"  Phase 2: {loader.status if loader else 'skipped'}"
             + (f", {plural(loader.tables_created, 'new version')}" if loader else "")]
    lines += [f"  {h.action} {h.table}: {'ok' if h.success else 'FAILED'}"
              for h in collector.healing_actions]
    lines += [f"  report {p.name}" for p in reports]
    return "\n".join(lines) + "\n\n"
