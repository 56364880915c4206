"""The run ledger's SQLite schema, its migrations, and how a run's result dict becomes rows.

Schema (PRAGMA user_version = SCHEMA_VERSION; each version's migration runs once, in order):
see the docstring of dpo.observe.ledger. Stdlib only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from loguru import logger

SCHEMA_VERSION = 6
PHASES = (("collector", "collector_result"), ("loader", "loader_result"))
# A table in a run, both phases merged (see `_table_stats`): a JSON list, indexed by these.
ROWS, DUPLICATES, REJECTED, CHANGED, FAILED = range(5)
ADDED, REMOVED = 5, 6  # rows added / removed by the run's publish; absent in older runs
TableCounts = list[Any]  # [rows | None, duplicates removed, rows rejected, changed, failed,
#                           rows added | None, rows removed | None]

_V1 = [
    """CREATE TABLE IF NOT EXISTS runs (
           run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
           state TEXT NOT NULL,              -- running | finished | interrupted
           overall_status TEXT,              -- success | partial_success | failed | interrupted
           collector_status TEXT, loader_status TEXT,
           duration_s REAL, collector_s REAL, loader_s REAL, pid INTEGER, result_json TEXT
       )""",
    "CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at)",
]
# Summary columns v2 adds to `runs` (name, SQL type), filled from the result dict.
_V2_COLUMNS = [
    ("started_epoch", "REAL"), ("records_count", "INTEGER"), ("files_processed", "INTEGER"),
    ("tables_created", "INTEGER"), ("rollbacks", "INTEGER"), ("rollbacks_failed", "INTEGER"),
    ("notifications_sent", "INTEGER"), ("notifications_failed", "INTEGER"),
    ("errors_count", "INTEGER"), ("table_stats", "TEXT"),
]
# v5: data-quality warnings of the run: their number, and per kind (compact JSON).
_V5_COLUMNS = [("warnings_count", "INTEGER"), ("warnings_by_kind", "TEXT")]
# v6: the run's data checks (dpo.checks): how many per status (compact JSON) on the run's row,
# and one row per check in run_checks.
_V6_COLUMNS = [("checks_by_status", "TEXT")]
_V6_CHECKS = """CREATE TABLE IF NOT EXISTS run_checks (
           run_id TEXT NOT NULL, seq INTEGER NOT NULL, table_name TEXT, check_name TEXT,
           rule TEXT, severity TEXT, status TEXT, failing_rows INTEGER,
           PRIMARY KEY (run_id, seq)) WITHOUT ROWID"""
_V2 = [
    """CREATE TABLE IF NOT EXISTS run_tables (
           run_id TEXT NOT NULL, phase TEXT NOT NULL, table_name TEXT NOT NULL,
           status TEXT, n_rows INTEGER, duplicates_removed INTEGER, rows_rejected INTEGER,
           changed INTEGER, rows_added INTEGER, rows_removed INTEGER, columns_changed TEXT,
           PRIMARY KEY (run_id, table_name, phase)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS run_healing (
           run_id TEXT NOT NULL, seq INTEGER NOT NULL, phase TEXT, action TEXT,
           table_name TEXT, success INTEGER, detail TEXT,
           PRIMARY KEY (run_id, seq)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS run_notifications (
           run_id TEXT NOT NULL, seq INTEGER NOT NULL, component TEXT, outcome TEXT,
           sent INTEGER, channel TEXT, error TEXT,
           PRIMARY KEY (run_id, seq)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS run_errors (
           run_id TEXT NOT NULL, seq INTEGER NOT NULL, phase TEXT, error_type TEXT,
           table_name TEXT, file TEXT, sheet TEXT, excel_row INTEGER, column_name TEXT,
           message TEXT,
           PRIMARY KEY (run_id, seq)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS runs_epoch ON runs(started_epoch)",
]
# The columns `runs()` returns (everything but the bulky result JSON).
RUN_COLUMNS = ("run_id", "started_at", "finished_at", "state", "overall_status",
               "collector_status", "loader_status", "duration_s", "collector_s", "loader_s",
               "pid", *(name for name, _ in (*_V2_COLUMNS, *_V5_COLUMNS, *_V6_COLUMNS)))
CHILDREN = {
    "run_tables": ("phase", "table_name", "status", "n_rows", "duplicates_removed",
                   "rows_rejected", "changed", "rows_added", "rows_removed", "columns_changed"),
    "run_healing": ("seq", "phase", "action", "table_name", "success", "detail"),
    "run_notifications": ("seq", "component", "outcome", "sent", "channel", "error"),
    "run_errors": ("seq", "phase", "error_type", "table_name", "file", "sheet", "excel_row",
                   "column_name", "message"),
    "run_checks": ("seq", "table_name", "check_name", "rule", "severity", "status",
                   "failing_rows"),
}


def _migrate_v1(conn: sqlite3.Connection) -> None:
    for statement in _V1:
        conn.execute(statement)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in _V2_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    for statement in _V2:
        conn.execute(statement)
    # Runs recorded by v1 carry their whole result: derive the v2 columns and rows from it.
    for run_id, started_at, result_json in conn.execute(
            "SELECT run_id, started_at, result_json FROM runs").fetchall():
        conn.execute("UPDATE runs SET started_epoch=? WHERE run_id=?",
                     (epoch_of(started_at), run_id))
        if result_json:
            try:
                result = json.loads(result_json)
            except ValueError:
                logger.warning("⚠️ run ledger: run {} has unreadable result JSON", run_id)
                continue
            write_children(conn, run_id, result)


_V4_CHANGES = (("rows_added", "INTEGER"), ("rows_removed", "INTEGER"),
               ("columns_changed", "TEXT"))
ACTION_COLUMNS = ("seq", "at", "epoch", "action", "table_name", "from_version", "to_version",
                  "command", "user")


def _migrate_v4(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(run_tables)")}
    for name, kind in _V4_CHANGES:
        if name not in present:
            conn.execute(f"ALTER TABLE run_tables ADD COLUMN {name} {kind}")
    conn.execute("""CREATE TABLE IF NOT EXISTS manual_actions (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, epoch REAL,
                        action TEXT NOT NULL, table_name TEXT, from_version TEXT,
                        to_version TEXT, command TEXT, user TEXT)""")


def _add_columns(conn: sqlite3.Connection, columns: list[tuple[str, str]]) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in columns:
        if name not in present:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")


def _stored_results(conn: sqlite3.Connection) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each run's stored result, for a migration's backfill (one that does not parse is
    reported by the v2 backfill, and skipped here)."""
    for run_id, result_json in conn.execute(
            "SELECT run_id, result_json FROM runs WHERE result_json IS NOT NULL").fetchall():
        try:
            yield run_id, json.loads(result_json)
        except ValueError:
            continue


def _migrate_v5(conn: sqlite3.Connection) -> None:
    _add_columns(conn, _V5_COLUMNS)
    for run_id, result in _stored_results(conn):
        conn.execute("UPDATE runs SET warnings_count=?, warnings_by_kind=? WHERE run_id=?",
                     (*_warnings(result), run_id))


def _warnings(result: dict[str, Any]) -> tuple[int, str]:
    found = result.get("warnings") or {}
    return (int(found.get("total") or 0),
            json.dumps(found.get("by_kind") or {}, separators=(",", ":"), sort_keys=True))


def _migrate_v6(conn: sqlite3.Connection) -> None:
    _add_columns(conn, _V6_COLUMNS)
    conn.execute(_V6_CHECKS)
    for run_id, result in _stored_results(conn):
        checks = _checks(result)
        conn.execute("UPDATE runs SET checks_by_status=? WHERE run_id=?",
                     (_by_status(checks), run_id))
        conn.executemany(f"INSERT OR REPLACE INTO run_checks(run_id, "
                         f"{', '.join(CHILDREN['run_checks'])}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         [(run_id, *row) for row in _check_rows(checks)])


def _checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    return list((result.get("loader_result") or {}).get("checks") or [])


def _by_status(checks: list[dict[str, Any]]) -> str:
    found: dict[str, int] = {}
    for check in checks:
        found[str(check.get("status"))] = found.get(str(check.get("status")), 0) + 1
    return json.dumps(found, separators=(",", ":"), sort_keys=True)


def _check_rows(checks: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(i, c.get("table"), c.get("name"), c.get("rule"), c.get("severity"),
             c.get("status"), c.get("failing_rows")) for i, c in enumerate(checks)]


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_v1, 2: _migrate_v2, 3: _migrate_v2, 4: _migrate_v4, 5: _migrate_v5,
    6: _migrate_v6}


def epoch_of(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


def summary_columns(result: dict[str, Any]) -> dict[str, Any]:
    """The `runs` columns of a finished run, from its result dict."""
    collector = result.get("collector_result") or {}
    loader = result.get("loader_result") or {}
    healing = [h for _, key in PHASES for h in (result.get(key) or {}).get("healing_actions") or []]
    rollbacks = [h for h in healing if h.get("action") == "rollback"]
    notes = result.get("notifications") or []
    return {
        "finished_at": result.get("timestamp"), "overall_status": result.get("overall_status"),
        "collector_status": collector.get("status"), "loader_status": loader.get("status"),
        "duration_s": result.get("duration_seconds"),
        "collector_s": collector.get("execution_seconds"),
        "loader_s": loader.get("execution_seconds"),
        "records_count": collector.get("records_count"),
        "files_processed": collector.get("files_processed"),
        "tables_created": loader.get("tables_created"),
        "rollbacks": len(rollbacks),
        "rollbacks_failed": sum(1 for h in rollbacks if not h.get("success")),
        "notifications_sent": sum(1 for n in notes if _outcome(n) == "sent"),
        "notifications_failed": sum(1 for n in notes if _outcome(n) == "failed"),
        "errors_count": sum(len((result.get(key) or {}).get("errors") or []) for _, key in PHASES),
        "table_stats": json.dumps(_table_stats(result), separators=(",", ":")),
        **dict(zip(("warnings_count", "warnings_by_kind"), _warnings(result), strict=True)),
        "checks_by_status": _by_status(_checks(result)),
    }


def _table_stats(result: dict[str, Any]) -> dict[str, TableCounts]:
    """table -> [rows, duplicates removed, rows rejected, changed, failed], both phases merged:
    rows are the published rows: the loader's where it published (or kept) the table, None
    where nothing was published (the table or Phase 2 failed, or Phase 2 did not run).

    A compact copy of what run_tables holds, kept on the run's row so that the dashboard and
    the metrics read one row per run instead of aggregating ten per run after every run.
    """
    stats: dict[str, TableCounts] = {}
    for phase, key in PHASES:
        for d in (result.get(key) or {}).get("details") or []:
            s = stats.setdefault(str(d.get("table")), [None, 0, 0, 0, 0])
            if d.get("status") == "error":
                s[4] = 1
            elif phase == "loader" and d.get("status") in ("success", "warning"):
                s[0] = d.get("rows")
            s[1] += d.get("duplicates_removed") or 0
            s[2] += d.get("rows_rejected") or 0
            s[3] = int(s[3] or bool(d.get("changed")))
            change = d.get("changes") if phase == "loader" else None
            if change:
                s[5:7] = [change.get("rows_added"), change.get("rows_removed")]
    return stats


def _outcome(note: dict[str, Any]) -> str:
    if note.get("sent"):
        return "sent"
    return "disabled" if note.get("channel") == "disabled" else "failed"


def _child_rows(result: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in CHILDREN}
    for phase, key in PHASES:
        part = result.get(key) or {}
        for d in part.get("details") or []:
            change = d.get("changes") or {}
            columns = change.get("columns_changed")
            rows["run_tables"].append((
                phase, d.get("table"), d.get("status"), d.get("rows"),
                d.get("duplicates_removed", 0), d.get("rows_rejected", 0),
                int(bool(d.get("changed"))), change.get("rows_added"),
                change.get("rows_removed"),
                None if columns is None else json.dumps(columns, separators=(",", ":"))))
        for h in part.get("healing_actions") or []:
            rows["run_healing"].append((len(rows["run_healing"]), phase, h.get("action"),
                                        h.get("table"), int(bool(h.get("success"))),
                                        h.get("detail")))
        for e in part.get("errors") or []:
            rows["run_errors"].append((len(rows["run_errors"]), phase, e.get("error_type"),
                                       e.get("table"), e.get("file"), e.get("sheet"),
                                       e.get("row"), e.get("column"), e.get("message")))
    rows["run_checks"] = _check_rows(_checks(result))
    for i, n in enumerate(result.get("notifications") or []):
        rows["run_notifications"].append((i, n.get("component"), _outcome(n),
                                          int(bool(n.get("sent"))), n.get("channel"),
                                          n.get("error")))
    return rows


def write_children(conn: sqlite3.Connection, run_id: str, result: dict[str, Any]) -> None:
    # An older schema's migration backfills only the columns it has (v5 adds its own later).
    present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    summary = {k: v for k, v in summary_columns(result).items() if k in present}
    conn.execute(f"UPDATE runs SET {', '.join(f'{k}=?' for k in summary)} WHERE run_id=?",
                 (*summary.values(), run_id))
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table, rows in _child_rows(result).items():
        if table not in tables:
            continue  # a later migration creates it, and fills it
        columns = ("run_id", *CHILDREN[table])
        conn.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
        conn.executemany(
            f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [(run_id, *row) for row in rows])


