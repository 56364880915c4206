"""Plain-text reports a plant engineer can act on; rendering is pure, writing is at the end.

    <output_dir>/newest/YYYYMMDD_HHMM_DataCollector_<report_type>.txt
    <output_dir>/newest/YYYYMMDD_HHMM_DataLoader_<report_type>.txt
    <output_dir>/newest/YYYYMMDD_HHMM_DataPipelineOrchestrator_final_report.txt
    <output_dir>/historical_db/   the previous runs' reports
    <output_dir>/change_log.txt   one short block per run
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpo.fsio import append_line_block, atomic_write_text, fsync_dir, move_durably, next_stamp

RULE = "=" * 72
_REPORT_RE = re.compile(r"^(\d{8}_\d{4}(?:-\d+)?)_.+\.txt$")
SHORT_NAMES = {"DataCollector": "DataCollector", "DataLoaderAgent": "DataLoader"}


def render_phase_success(phase: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """The success report of one phase: what ran, counts, what changed."""
    lines = [RULE, f"{phase['component']} — SUCCESS REPORT", RULE,
             f"Run:            {context['run_id']}",
             f"Status:         {phase['status']}",
             f"Execution time: {phase['execution_time']}"]
    if phase["component"] == "DataCollector":
        lines += [f"Files processed: {phase['files_processed']}",
                  f"Records:         {phase['records_count']}",
                  f"Duplicates removed: {phase['duplicates_removed']}",
                  f"Data updated:    {'yes' if phase['data_updated'] else 'no (unchanged)'}"]
    else:
        lines += [f"Tables processed: {phase['tables_processed']}",
                  f"Tables changed:   {phase['tables_changed']}",
                  f"Versions written: {phase['tables_created']}",
                  f"Data validation:  {phase['data_validation']}"]
    lines += ["", "TABLES", "-" * 72]
    lines += [_table_line(t) for t in phase.get("details", [])]
    for action in phase.get("healing_actions", []):
        state = "succeeded" if action["success"] else "FAILED"
        lines.append(f"  {action['action']} {action['table']}: {state} — {action['detail']}")
    lines += warning_section(phase.get("details", []), context)
    return "\n".join(lines) + "\n"


def warning_lines(table: Mapping[str, Any], context: Mapping[str, Any]) -> list[str]:
    """Every warning of a table, grouped: from the run's full list when the context has it (a
    result dict lists only the first ones), else from the dict."""
    full = (context.get("warning_lines") or {}).get(table["table"])
    if full is not None:
        return list(full)
    return [w["message"] for w in table.get("warnings") or []]


def warning_section(tables: list[Mapping[str, Any]], context: Mapping[str, Any]) -> list[str]:
    """"DATA QUALITY WARNINGS": what was published differently from the sheet as written."""
    lines: list[str] = []
    for table in tables:
        found = warning_lines(table, context)
        if found:
            lines += [f"  {table['table']} ({table.get('warnings_total', len(found))} "
                      "warning(s)):", *(f"    - {line}" for line in found)]
    return ["", "DATA QUALITY WARNINGS", "-" * 72, *lines] if lines else []


def _table_line(table: Mapping[str, Any]) -> str:
    change = "changed" if table.get("changed") else "unchanged"
    extra = []
    if table.get("duplicates_removed"):
        extra.append(f"{table['duplicates_removed']} duplicates removed")
    if table.get("rows_rejected"):
        extra.append(f"{table['rows_rejected']} rows quarantined")
    if table.get("changes"):
        extra.append(change_summary(table["changes"]))
    if table.get("blank_rows_skipped"):
        extra.append(f"{table['blank_rows_skipped']} blank rows skipped")
    if table.get("warnings_total"):
        extra.append(f"{table['warnings_total']} warning(s), listed below")
    tail = f" ({'; '.join(extra)})" if extra else ""
    where = f" -> {table['output']}" if table.get("output") else ""
    return f"  {table['table']:<28} {table['status']:<8} {table['rows']:>9,} rows, {change}{where}{tail}"


def change_summary(change: Mapping[str, Any]) -> str:
    """'+12 / -3 rows vs 20240502_0600; values changed in itemQuantity' (dpo.store.changes)."""
    against = f" vs {change['previous']}" if change.get("previous") else " (first version)"
    text = f"+{change['rows_added']:,} / -{change['rows_removed']:,} rows{against}"
    for key, label in (("columns_changed", "values changed in"),
                       ("columns_added", "columns added"), ("columns_removed", "columns removed")):
        if change.get(key):
            text += f"; {label} {', '.join(change[key])}"
    return text


def render_final(result: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """The pipeline's final report: overall status, both phases, actions, what to do next."""
    collector, loader = result["collector_result"], result["loader_result"]
    lines = [RULE, "DataPipelineOrchestrator — FINAL REPORT", RULE,
             f"Run:             {context['run_id']}",
             f"Started:         {result['started_at']}",
             f"Finished:        {result['timestamp']}",
             f"Overall status:  {result['overall_status'].upper()}{_with_warnings(result)}",
             "",
             f"Phase 1 DataCollector:   {collector['status']:<8} ({collector['execution_time']}, "
             f"{collector['files_processed']} files, {collector['records_count']:,} records)"]
    if loader["status"] == "skipped":
        lines.append(f"Phase 2 DataLoaderAgent: skipped  ({loader.get('reason', '')})")
    else:
        lines.append(f"Phase 2 DataLoaderAgent: {loader['status']:<8} ({loader['execution_time']}, "
                     f"{loader['tables_created']} new versions, validation "
                     f"{loader['data_validation']})")
    changed = [d for d in loader.get("details", []) if d.get("changes")]
    if changed:
        lines += ["", "WHAT CHANGED (dpo diff TABLE shows the rows)"]
        lines += [f"  - {d['table']}: {change_summary(d['changes'])}" for d in changed]
    actions = collector.get("healing_actions", []) + loader.get("healing_actions", [])
    if actions:
        lines += ["", "ACTIONS TAKEN"]
        lines += [f"  - {a['action']} {a['table']}: {'succeeded' if a['success'] else 'FAILED'}"
                  f" — {a['detail']}" for a in actions]
    errors = collector.get("errors", []) + loader.get("errors", [])
    if errors:
        lines += ["", "ERRORS"]
        lines += [f"  - [{e['error_type']}] {e['message']}" for e in errors]
    tables = [*collector.get("details", []), *loader.get("details", [])]
    lines += warning_section(tables, context)
    lines += ["", "NEXT STEPS", f"  {next_step(result['overall_status'])}"]
    for note in result.get("notifications", []):
        state = "sent" if note.get("sent") else f"NOT sent ({note.get('error') or 'disabled'})"
        lines.append(f"  Notification for {note['component']} via {note['channel']}: {state}")
    return "\n".join(lines) + "\n"


def _with_warnings(result: Mapping[str, Any]) -> str:
    total = (result.get("warnings") or {}).get("total", 0)
    if not total or result["overall_status"] == "failed":
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
