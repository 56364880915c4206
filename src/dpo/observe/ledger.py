"""The run ledger: one record per pipeline run in an embedded SQLite database.

A run is inserted as `running` when it starts and completed when it ends. A run killed in
between stays `running` until the next run starts (holding the run lock, so no other run can
be alive) and marks it `interrupted`. WAL mode lets readers (`dpo history`, `dpo metrics`, the
dashboard) read a consistent snapshot while a run writes. Readers open it read-only
(`Ledger(path, read_only=True)`): no migration, no journal change, so an operator who may only
read the plant can read it (docs/behaviour.md, "Reading without writing").

Schema (PRAGMA user_version = SCHEMA_VERSION; each version's migration runs once, in order:
v1 the `runs` table; v2 the summary columns and child tables, backfilled from each run's result
JSON; v3 re-runs v2's idempotent migration, for ledgers of early v2 builds without table_stats;
v4 the per-table change counts of run_tables and the `manual_actions` table; v5 the data-quality
warning counts of each run, backfilled from its result; v6 the data checks of each run,
`checks_by_status` and `run_checks`, backfilled from its result):

    runs               one row per run: times, state, overall and per-phase status and seconds,
                       counts (records, rollbacks, notifications, errors), `table_stats` (the
                       per-table counts in compact JSON, for the dashboard), the result JSON
    run_tables         (run_id, table_name, phase): status, rows, duplicates, rejected, changed,
                       rows added / removed and columns changed against the previous version
    run_healing        (run_id, seq): healing actions (rollbacks...) and whether they worked
    run_notifications  (run_id, seq): component, outcome (sent | failed | disabled), channel
    run_errors         (run_id, seq): phase, error type, table, file, sheet, row, column
    run_checks         (run_id, seq): each data check run: table, name, rule, severity, status,
                       failing rows
    manual_actions     (seq): what an engineer did by hand outside a run: `rollback` (table,
                       from and to version) or `release` of a hold; when, the command, the user

Stdlib only (sqlite3, json): it runs after every pipeline run and must cost milliseconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from dpo.faults import checkpoint
from dpo.observe.ledgerschema import (
    ACTION_COLUMNS,
    CHILDREN,
    MIGRATIONS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    TableCounts,
    epoch_of,
    write_children,
)


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
    checks: list[dict[str, Any]] = field(default_factory=list)  # data checks run (dpo.checks)

    @staticmethod
    def by_run(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            grouped.setdefault(row["run_id"], []).append(row)
        return grouped


_BOOLEANS = {"success", "sent", "changed"}
# SQLite's answers when a WAL reader cannot create the -shm file (a folder it may not write).
_NO_SHM = {"SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN", "SQLITE_READONLY_CANTINIT"}


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor]
    for flag in _BOOLEANS.intersection(names):
        for row in rows:
            row[flag] = bool(row[flag])
    return rows


class LedgerOutdated(sqlite3.DatabaseError):
    """A read-only open found a ledger older than this dpo's schema (reads never migrate)."""


class Ledger:
    """The run ledger at `path`: written by the run holding the run lock, read by anyone.

    `read_only`: open it with SQLite's `mode=ro` and never migrate; a ledger of an older schema
    raises LedgerOutdated (a run upgrades it).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        # A run's connection, held from start() until close(): closing the last connection
        # checkpoints the WAL (two fsyncs), so a run pays that once, not per write or read.
        self._held: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self.read_only:
            return self._open_read_only()
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

    def _open_read_only(self) -> sqlite3.Connection:
        try:
            conn = self._uri_connect("mode=ro")
        except sqlite3.OperationalError as exc:
            # A WAL ledger in a folder this user may not write, whose last writer closed (so
            # no -wal/-shm file is left and everything is in the file itself): SQLite cannot
            # create the shared-memory file a WAL reader needs. Nothing is pending, so the
            # file is read as it is. A -wal file present means a writer is at work: no guess.
            if (getattr(exc, "sqlite_errorname", "") not in _NO_SHM
                    or Path(f"{self.path}-wal").exists()):
                raise
            conn = self._uri_connect("mode=ro&immutable=1")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version < SCHEMA_VERSION:
            conn.close()
            raise LedgerOutdated(
                f"run ledger {self.path} has schema v{version}, older than this dpo's "
                f"v{SCHEMA_VERSION}: the next `dpo run` upgrades it (read commands never write)")
        return conn

    def _uri_connect(self, query: str) -> sqlite3.Connection:
        """A connection opened with URI parameters; checked by reading, as SQLite opens lazily."""
        conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?{query}", uri=True, timeout=10,
                               isolation_level=None)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction (BEGIN IMMEDIATE to write), committed on exit."""
        if write and self.read_only:
            raise sqlite3.ProgrammingError(f"run ledger {self.path} was opened read-only")
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
                MIGRATIONS[target](conn)
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
                         (run_id, started, epoch_of(started), "running", os.getpid()))
            conn.execute("UPDATE runs SET state='finished', result_json=? WHERE run_id=?",
                         (json.dumps(result), run_id))
            write_children(conn, run_id, result)

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
                for name, cols in CHILDREN.items() if detail or name != "run_tables"}
        return Snapshot(runs=runs, table_stats=stats, tables=found.get("run_tables", []),
                        healing=found["run_healing"], notifications=found["run_notifications"],
                        errors=found["run_errors"], actions=actions,
                        checks=found["run_checks"])

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
