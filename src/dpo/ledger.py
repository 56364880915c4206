"""The run ledger: one row per pipeline run in an embedded SQLite database.

A run is inserted as `running` when it starts and updated when it ends. A run killed in
between stays `running` until the next run starts (holding the run lock, so no other run can
be alive) and marks it `interrupted`. WAL mode lets readers (`dpo history`, the dashboard)
read while a run writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
_MIGRATIONS = {
    1: [
        """CREATE TABLE IF NOT EXISTS runs (
               run_id TEXT PRIMARY KEY,
               started_at TEXT NOT NULL,
               finished_at TEXT,
               state TEXT NOT NULL,              -- running | finished | interrupted
               overall_status TEXT,              -- success | partial_success | failed | interrupted
               collector_status TEXT,
               loader_status TEXT,
               duration_s REAL,
               collector_s REAL,
               loader_s REAL,
               pid INTEGER,
               result_json TEXT
           )""",
        "CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at)",
    ],
}


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            self._migrate(conn)
            with conn:
                yield conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with conn:
                for statement in _MIGRATIONS[target]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={target}")

    def start(self, run_id: str, started_at: datetime) -> list[str]:
        """Record a new run; runs left `running` by a killed process become `interrupted`."""
        with self._connect() as conn:
            stale = [r[0] for r in conn.execute("SELECT run_id FROM runs WHERE state='running'")]
            conn.execute("UPDATE runs SET state='interrupted', overall_status='interrupted' "
                         "WHERE state='running'")
            conn.execute("INSERT INTO runs(run_id, started_at, state, pid) VALUES (?,?,?,?)",
                         (run_id, started_at.isoformat(), "running", os.getpid()))
        return stale

    def finish(self, run_id: str, result: dict[str, Any]) -> None:
        loader = result["loader_result"]
        with self._connect() as conn:
            conn.execute(
                """UPDATE runs SET finished_at=?, state='finished', overall_status=?,
                       collector_status=?, loader_status=?, duration_s=?, collector_s=?,
                       loader_s=?, result_json=? WHERE run_id=?""",
                (result["timestamp"], result["overall_status"],
                 result["collector_result"]["status"], loader["status"],
                 result["duration_seconds"], result["collector_result"]["execution_seconds"],
                 loader.get("execution_seconds"), json.dumps(result), run_id),
            )

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, newest first."""
        if not self.path.exists():
            return []
        query = "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC"
        with self._connect() as conn:
            rows = conn.execute(query + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [dict(row) for row in rows]

    def last_run(self) -> dict[str, Any] | None:
        runs = self.runs(limit=1)
        return runs[0] if runs else None
