"""Rich terminal output for the CLI: live progress per table and file, and summaries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dpo.quality import kind_count, plural
from dpo.results import Progress as Progress_

STYLE = {"success": "green", "partial_success": "yellow", "warning": "yellow",
         "failed": "red", "error": "red", "skipped": "dim"}


@cache
def stdout() -> Console:
    """The console for results (made when first needed: importing this module prints nothing
    and reads no terminal)."""
    return Console()


@cache
def stderr() -> Console:
    return Console(stderr=True)


@contextmanager
def progress_display(*, enabled: bool) -> Iterator[Progress_ | None]:
    """A bar per table while a run runs: yields the progress hook to hand to run_pipeline
    (None when there is nothing to draw on)."""
    console = stderr()
    if not enabled or not console.is_terminal:
        yield None
        return
    # Only a run on a terminal draws bars (not cron, not --json): only it imports them.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    bars: dict[str, TaskID] = {}
    with Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        def on_event(event: str, data: dict[str, Any]) -> None:
            key = f"{data.get('phase')}:{data['table']}"
            if event == "table_started":
                bars[key] = progress.add_task(f"{data['phase']} {data['table']}",
                                              total=data.get("total") or 1)
            elif event == "file_done" and key in bars:
                progress.advance(bars[key], int(data.get("count", 1)))
            elif event == "table_done" and key in bars:
                progress.update(bars[key], completed=progress.tasks[bars[key]].total)

        yield on_event


def print_summary(result: dict[str, Any]) -> None:
    """The run's summary: one short line per table (fits 80 columns, a cron mail's width),
    then the notes (errors, warnings) in full below it, one line each, never wrapped."""
    overall = result["overall_status"]
    table = Table(title=f"dpo run: [bold {STYLE.get(overall, 'white')}]{overall}[/]",
                  title_justify="left")
    for column in ("phase", "table", "status", "rows", "changes"):
        table.add_column(column, justify="right" if column == "rows" else "left", no_wrap=True)
    notes: dict[tuple[str, str], list[str]] = {}  # (phase, note) -> tables: said once
    for key, phase in (("collector_result", "collect"), ("loader_result", "load")):
        part = result[key]
        if part["status"] == "skipped":
            table.add_row(phase, "-", _styled("skipped"), "", "")
            notes[(phase, f"skipped: {part.get('reason', '')}")] = []
        for row in part.get("details", []):
            table.add_row(phase, row["table"], _styled(row["status"]), f"{row['rows']:,}",
                          change_text(row))
            said = [row["error"]["message"]] if row.get("error") else _warning_notes(row)
            columns = (row.get("changes") or {}).get("columns_changed")
            said += [f"values changed in {', '.join(columns)}"] if columns else []
            for note in said:
                notes.setdefault((phase, note), []).append(row["table"])
    stdout().print(table)
    for (phase, note), tables in notes.items():
        stdout().print(escape(f"{phase} {', '.join(tables)}: {note}" if tables else f"{phase}: {note}"),
                  soft_wrap=True, highlight=False)
    collector, loader = result["collector_result"], result["loader_result"]
    stdout().print(f"collect {seconds(collector.get('execution_seconds'))} · "
                   f"{plural(collector['files_processed'], 'file')} · "
                   f"{plural(collector['records_count'], 'record')} · "
                   f"load {seconds(loader.get('execution_seconds'))} · "
                   f"{plural(loader.get('tables_created', 0), 'new version')}", highlight=False)
    for action in collector.get("healing_actions", []):
        stdout().print(escape(f"  {action['action']} {action['table']}: "
                         f"{'ok' if action['success'] else 'FAILED'} — {action['detail']}"),
                  soft_wrap=True, highlight=False)
    for line in check_lines(loader.get("checks") or []):
        stdout().print(escape(line), soft_wrap=True, highlight=False)
    for path in result.get("reports", []):
        stdout().print(f"  report: {path}", soft_wrap=True, highlight=False)


def check_lines(checks: list[dict[str, Any]]) -> list[str]:
    """Data checks: passed/failed per table, then each failed one (fail severity first)."""
    tables: dict[str, list[str]] = {}
    for check in checks:
        tables.setdefault(check["table"], []).append(check["status"])
    lines = [f"checks {name}: " + ", ".join(f"{found.count(s)} {s}" for s in
                                            ("passed", "failed", "skipped") if s in found)
             for name, found in tables.items()]
    for check in sorted((c for c in checks if c["status"] == "failed"),
                        key=lambda c: c["severity"] != "fail"):
        first = next((e for e in check["examples"] if e.get("file")), None)
        where = f"; first {first['file']} [{first['sheet']}] row {first['row']}" if first else ""
        lines.append(f"  FAILED [{check['severity']}] {check['table']}: {check['name']} "
                     f"({check['failing_rows']} row(s){where})")
    return lines


def seconds(value: float | None) -> str:
    """A duration as people read it: '4.2 s' under a minute, else H:MM:SS."""
    if value is None:
        return "–"
    if value < 59.95:
        return f"{value:.1f} s"
    whole = round(value)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def change_text(row: dict[str, Any]) -> str:
    """What changed in a table: '+12 −3' rows against the previous version when Phase 2
    published it; yes/no otherwise."""
    change = row.get("changes")
    if change:  # the columns it edited are said below the table
        return f"+{change['rows_added']:,} −{change['rows_removed']:,}"
    if row.get("status") == "skipped":
        return "not published"
    return "yes" if row.get("changed") else "no"


# Notes about the table's state are said as written; data-quality warnings are counted (the
# reports list every one, grouped).
_SAID_AS_WRITTEN = ("not_published", "held", "quarantine", "headers_only", "other")


def _warning_notes(row: dict[str, Any]) -> list[str]:
    said = [w["message"] for w in row.get("warnings") or [] if w["kind"] in _SAID_AS_WRITTEN]
    counted = {k: n for k, n in (row.get("warnings_by_kind") or {}).items()
               if k not in _SAID_AS_WRITTEN}
    total = sum(counted.values())
    if total:
        kinds = ", ".join(kind_count(kind, n) for kind, n in counted.items())
        said.append(f"{plural(total, 'warning')} ({kinds}); see the final report")
    return said


def _styled(status: str) -> str:
    return f"[{STYLE.get(status, 'white')}]{status}[/]"


# The width a validate column keeps before its long values wrap (they fit 80 columns together).
_NAME_WIDTH = {"table": 24, "file": 30, "status": 7, "rows": 6, "message": 30}
_WIDE = 120


def print_validation(rows: list[dict[str, Any]]) -> None:
    table = Table(title="dpo validate", title_justify="left")
    # Messages go in the table when it is wide enough; every one is said in full below anyway.
    wide = stdout().width >= _WIDE
    columns = ("table", "file", "status", "rows", *(("message",) if wide and any(
        row["message"] for row in rows) else ()))
    widest = {c: max((len(str(row[c])) for row in rows), default=0) for c in columns}
    for column in columns:
        # Names are never cut to the terminal (80 columns in a pipe or a cron mail): a long
        # one wraps inside its cell (fold); most names fit on one line.
        table.add_column(column, overflow="fold", no_wrap=column in ("status", "rows"),
                         min_width=min(widest[column], _NAME_WIDTH[column]))
    for row in rows:
        table.add_row(*(_styled(row[c]) if c == "status" else escape(str(row[c]))
                        for c in columns))
    stdout().print(table)
    # Each problem in full, one line each (a pipe wraps it, never cuts it), so file, sheet,
    # row and column are always readable.
    for row in rows:
        if row["status"] != "ok":
            stdout().print(escape(f"{row['status'].upper()} {row['table']} {row['file']}: "
                             f"{row['message']}"), soft_wrap=True, highlight=False)


def print_health(report: dict[str, Any]) -> None:
    status = report["service_status"]
    stdout().print(f"service status: [bold {'green' if status == 'healthy' else 'red'}]{status}[/]")
    for name, path in report["paths"].items():
        stdout().print(f"  {name}: {escape(str(path))}", soft_wrap=True, highlight=False)
    disk = report["disk_space"]
    writable = "true" if report["write_permission"] else "false"  # as `--json` says it
    stdout().print(f"  free space: {disk['free_bytes'] / 1e9:.1f} GB (inputs "
                   f"{disk['input_bytes'] / 1e6:.1f} MB) · writable: {writable}")
    last = report["last_run"]
    stdout().print(f"  last run: {last['run_id']} {last['status']} at {last['started_at']}"
              if last else "  last run: none yet")
    for table, hold in (report.get("holds") or {}).items():
        stdout().print(f"  held: {table} at {hold['version']} since {hold['since']} (dpo rollback; "
                  f"`dpo rollback {table} --release` ends it)", soft_wrap=True)
    for reason in report["reasons"]:
        stdout().print(f"  [red]- {reason}[/]")


def print_versions(name: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"versions of {name}", title_justify="left")
    for column in ("version", "rows", "hash", "current"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["version"], str(row["rows"]), str(row["content_hash"])[:12],
                      "*" if row["current"] else "")
    stdout().print(table)
    if not rows:
        stdout().print(f"no versions of {name} yet: no run has published it")
    for row in rows:
        if row.get("held_since"):
            stdout().print(f"held at {row['version']} since {row['held_since']} (dpo rollback): runs "
                      f"keep it until one of its sources changes or `dpo rollback {name} "
                      "--release`", soft_wrap=True)
