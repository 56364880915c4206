"""The run ledger: one record per pipeline run in an embedded SQLite database.

A run is inserted as `running` when it starts and completed when it ends. A run killed in
between stays `running` until the next run starts (holding the run lock, so no other run can
be alive) and marks it `interrupted`. WAL mode lets readers (`dpo history`, `dpo metrics`, the
dashboard) read a consistent snapshot while a run writes.

Schema (PRAGMA user_version = SCHEMA_VERSION; each version's migration runs once, in order:
v1 the `runs` table; v2 the summary columns and child tables, backfilled from each run's result
JSON; v3 re-runs v2's idempotent migration, for ledgers of early v2 builds without table_stats;
v4 the per-table change counts of run_tables and the `manual_actions` table; v5 the data-quality
warning counts of each run, backfilled from its result):

    runs               one row per run: times, state, overall and per-phase status and seconds,
                       counts (records, rollbacks, notifications, errors), `table_stats` (the
                       per-table counts in compact JSON, for the dashboard), the result JSON
    run_tables         (run_id, table_name, phase): status, rows, duplicates, rejected, changed,
                       rows added / removed and columns changed against the previous version
    run_healing        (run_id, seq): healing actions (rollbacks...) and whether they worked
    run_notifications  (run_id, seq): component, outcome (sent | failed | disabled), channel
    run_errors         (run_id, seq): phase, error type, table, file, sheet, row, column
    manual_actions     (seq): what an engineer did by hand outside a run: `rollback` (table,
                       from and to version) or `release` of a hold; when, the command, the user

Stdlib only (sqlite3, json): it runs after every pipeline run and must cost milliseconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from dpo.faults import checkpoint

SCHEMA_VERSION = 5
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
               "pid", *(name for name, _ in (*_V2_COLUMNS, *_V5_COLUMNS)))
_CHILDREN = {
    "run_tables": ("phase", "table_name", "status", "n_rows", "duplicates_removed",
                   "rows_rejected", "changed", "rows_added", "rows_removed", "columns_changed"),
    "run_healing": ("seq", "phase", "action", "table_name", "success", "detail"),
    "run_notifications": ("seq", "component", "outcome", "sent", "channel", "error"),
    "run_errors": ("seq", "phase", "error_type", "table_name", "file", "sheet", "excel_row",
                   "column_name", "message"),
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
                     (_epoch(started_at), run_id))
        if result_json:
            try:
                result = json.loads(result_json)
            except ValueError:
                logger.warning("⚠️ run ledger: run {} has unreadable result JSON", run_id)
                continue
            _write_children(conn, run_id, result)


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


def _migrate_v5(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in _V5_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    for run_id, result_json in conn.execute(
            "SELECT run_id, result_json FROM runs WHERE result_json IS NOT NULL").fetchall():
        try:
            warnings = _warnings(json.loads(result_json))
        except ValueError:
            continue  # reported by the v2 backfill
        conn.execute("UPDATE runs SET warnings_count=?, warnings_by_kind=? WHERE run_id=?",
                     (*warnings, run_id))


def _warnings(result: dict[str, Any]) -> tuple[int, str]:
    found = result.get("warnings") or {}
    return (int(found.get("total") or 0),
            json.dumps(found.get("by_kind") or {}, separators=(",", ":"), sort_keys=True))


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_v1, 2: _migrate_v2, 3: _migrate_v2, 4: _migrate_v4, 5: _migrate_v5}


def _epoch(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


def _summary(result: dict[str, Any]) -> dict[str, Any]:
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
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _CHILDREN}
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
    for i, n in enumerate(result.get("notifications") or []):
        rows["run_notifications"].append((i, n.get("component"), _outcome(n),
                                          int(bool(n.get("sent"))), n.get("channel"),
                                          n.get("error")))
    return rows


def _write_children(conn: sqlite3.Connection, run_id: str, result: dict[str, Any]) -> None:
    # An older schema's migration backfills only the columns it has (v5 adds its own later).
    present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    summary = {k: v for k, v in _summary(result).items() if k in present}
    conn.execute(f"UPDATE runs SET {', '.join(f'{k}=?' for k in summary)} WHERE run_id=?",
                 (*summary.values(), run_id))
    for table, rows in _child_rows(result).items():
        columns = ("run_id", *_CHILDREN[table])
        conn.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
        conn.executemany(
            f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [(run_id, *row) for row in rows])


@dataclass(frozen=True)
class Snapshot:
    """A consistent read of the newest runs (newest first) and their child rows."""

    runs: list[dict[str, Any]]
    table_stats: dict[str, dict[str, TableCounts]] = field(default_factory=dict)  # by run_id
    tables: list[dict[str, Any]] = field(default_factory=list)  # per phase; `detail=True` only
    healing: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)  # manual ones, newest first

    @staticmethod
    def by_run(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            grouped.setdefault(row["run_id"], []).append(row)
        return grouped


_BOOLEANS = {"success", "sent", "changed"}


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor]
    for flag in _BOOLEANS.intersection(names):
        for row in rows:
            row[flag] = bool(row[flag])
    return rows


class Ledger:
    """The run ledger at `path`: written by the run holding the run lock, read by anyone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # A run's connection, held from start() until close(): closing the last connection
        # checkpoints the WAL (two fsyncs), so a run pays that once, not per write or read.
        self._held: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: safe from killed processes
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction (BEGIN IMMEDIATE to write), committed on exit."""
        conn = self._held or self._open()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if conn is not self._held:
                conn.close()

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")  # one migrator at a time; re-read under the lock
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[target](conn)
                logger.debug("run ledger {} migrated to schema v{}", self.path, target)
            conn.execute(f"PRAGMA user_version={max(version, SCHEMA_VERSION)}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def version(self) -> int:
        with closing(sqlite3.connect(self.path)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # -- writing (the run path: a ledger problem is logged, it never fails the run) ----------
    def start(self, run_id: str, started_at: datetime) -> list[str]:
        """Record a new run; runs left `running` by a killed process become `interrupted`."""
        try:
            self.close()
            self._held = self._open()
            stale = self._start(run_id, started_at)
            checkpoint("ledger:start")
            return stale
        except (sqlite3.Error, OSError) as exc:
            self.close()
            logger.error("❌ run ledger {}: cannot record the start of run {}: {}",
                         self.path, run_id, exc)
            return []

    def _start(self, run_id: str, started_at: datetime) -> list[str]:
        with self._connect(write=True) as conn:
            stale = [r[0] for r in conn.execute("SELECT run_id FROM runs WHERE state='running'")]
            conn.execute("UPDATE runs SET state='interrupted', overall_status='interrupted' "
                         "WHERE state='running'")
            conn.execute("INSERT INTO runs(run_id, started_at, started_epoch, state, pid) "
                         "VALUES (?,?,?,?,?)", (run_id, started_at.isoformat(),
                                                started_at.timestamp(), "running", os.getpid()))
        for old in stale:
            logger.warning("⚠️ run {} never finished (killed?): recorded as interrupted", old)
        return stale

    def interrupt(self, run_id: str, when: datetime) -> None:
        """Record a run stopped by Ctrl-C (SIGINT/SIGTERM) as `interrupted`, on its way out."""
        try:
            with self._connect(write=True) as conn:
                conn.execute("UPDATE runs SET state='interrupted', overall_status='interrupted', "
                             "finished_at=?, duration_s=? - started_epoch "
                             "WHERE run_id=? AND state='running'",
                             (when.isoformat(), when.timestamp(), run_id))
        except (sqlite3.Error, OSError) as exc:
            logger.error("❌ run ledger {}: cannot record run {} as interrupted: {}",
                         self.path, run_id, exc)
        finally:
            self.close()

    def record_action(self, action: str, table: str, from_version: str | None,
                      to_version: str | None, *, command: str, user: str,
                      when: datetime) -> None:
        """Record what an engineer did by hand (a rollback, a release), under the run lock."""
        with self._connect(write=True) as conn:
            conn.execute("INSERT INTO manual_actions(at, epoch, action, table_name, "
                         "from_version, to_version, command, user) VALUES (?,?,?,?,?,?,?,?)",
                         (when.isoformat(timespec="seconds"), when.timestamp(), action, table,
                          from_version, to_version, command, user))

    def finish(self, run_id: str, result: dict[str, Any]) -> None:
        """Complete the run's record from its result dict (inserting it if start failed).

        The run's connection stays open for the after-run reads (publish_observability
        closes it); `close()` it when done.
        """
        try:
            self._finish(run_id, result)
            checkpoint("ledger:finish")
        except (sqlite3.Error, OSError, TypeError, ValueError) as exc:
            self.close()
            logger.error("❌ run ledger {}: cannot record the end of run {}: {}",
                         self.path, run_id, exc)

    def _finish(self, run_id: str, result: dict[str, Any]) -> None:
        with self._connect(write=True) as conn:
            started = result.get("started_at") or result.get("timestamp")
            conn.execute("INSERT OR IGNORE INTO runs(run_id, started_at, started_epoch, state, "
                         "pid) VALUES (?,?,?,?,?)",
                         (run_id, started, _epoch(started), "running", os.getpid()))
            conn.execute("UPDATE runs SET state='finished', result_json=? WHERE run_id=?",
                         (json.dumps(result), run_id))
            _write_children(conn, run_id, result)

    # -- reading -----------------------------------------------------------------------------
    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, newest first (without the result JSON; see `result`)."""
        return self.snapshot(limit=limit, children=False).runs

    def last_run(self) -> dict[str, Any] | None:
        runs = self.runs(limit=1)
        return runs[0] if runs else None

    def result(self, run_id: str) -> dict[str, Any] | None:
        """The full result dict a finished run returned."""
        if not self.path.exists():
            return None
        with self._connect(write=False) as conn:
            row = conn.execute("SELECT result_json FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def snapshot(self, *, limit: int | None = None, since_epoch: float | None = None,
                 children: bool = True, detail: bool = False) -> Snapshot:
        """The newest `limit` runs started at or after `since_epoch`, with their child rows
        (`detail`: also the per-phase table rows)."""
        if not self.path.exists():
            return Snapshot(runs=[])
        where = "WHERE started_epoch >= :since" if since_epoch is not None else ""
        window = (f"SELECT {', '.join(RUN_COLUMNS)} FROM runs {where} "
                  "ORDER BY started_at DESC, rowid DESC LIMIT :limit")
        params = {"since": since_epoch, "limit": -1 if limit is None else int(limit)}
        ids = f"SELECT run_id FROM ({window})"
        with self._connect(write=False) as conn:
            runs = _dicts(conn.execute(window, params))
            packed = [run.pop("table_stats") for run in runs]
            actions = self._actions(conn, runs, since_epoch, limit)
            if not children or not runs:
                return Snapshot(runs=runs, actions=actions)
            unpacked = json.loads("[" + ",".join(text or "{}" for text in packed) + "]")
            stats = {run["run_id"]: tables for run, tables in zip(runs, unpacked, strict=True)}
            found = {name: _dicts(conn.execute(
                f"SELECT run_id, {', '.join(cols)} FROM {name} WHERE run_id IN ({ids}) "
                f"ORDER BY run_id, {cols[0]}", params))
                for name, cols in _CHILDREN.items() if detail or name != "run_tables"}
        return Snapshot(runs=runs, table_stats=stats, tables=found.get("run_tables", []),
                        healing=found["run_healing"], notifications=found["run_notifications"],
                        errors=found["run_errors"], actions=actions)

    @staticmethod
    def _actions(conn: sqlite3.Connection, runs: list[dict[str, Any]],
                 since_epoch: float | None, limit: int | None) -> list[dict[str, Any]]:
        """Manual actions in the window: since `since_epoch`, and when the newest `limit` runs
        are asked for, since the oldest of them (all of them if there are fewer)."""
        start = since_epoch
        if limit is not None and runs and len(runs) >= limit:
            oldest = runs[-1]["started_epoch"]
            start = oldest if start is None or oldest is None else max(start, oldest)
        return _dicts(conn.execute(
            f"SELECT {', '.join(ACTION_COLUMNS)} FROM manual_actions "
            "WHERE ? IS NULL OR epoch >= ? ORDER BY seq DESC", (start, start)))
