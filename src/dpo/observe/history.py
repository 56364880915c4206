"""The run ledger's history as plain records: what `dpo history --json` prints and what
`dpo serve` answers at /runs."""

from __future__ import annotations

import json
from typing import Any

_RENAME = {"table_name": "table", "n_rows": "rows", "excel_row": "row", "column_name": "column"}


def history_records(snap: Any) -> list[dict[str, Any]]:
    """The runs of a ledger snapshot as plain dicts, newest first, with their child rows."""
    children = {name: snap.by_run(getattr(snap, name))
                for name in ("tables", "healing", "notifications", "errors", "checks")}

    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Without run_id, with the result dict's key names (`table`, `rows`, `column`...)."""
        return [{_RENAME.get(k, k): v for k, v in row.items() if k not in ("run_id", "seq")}
                for row in rows]

    records = []
    for run in snap.runs:
        rid = run["run_id"]
        records.append({
            "kind": "run",
            **run,
            # Kept in the ledger as compact JSON text: a JSON object here, as in the result.
            "warnings_by_kind": json.loads(run.get("warnings_by_kind") or "{}"),
            "phases": {"collector": {"status": run["collector_status"],
                                     "seconds": run["collector_s"]},
                       "loader": {"status": run["loader_status"], "seconds": run["loader_s"]}},
            "tables": strip(children["tables"].get(rid, [])),
            "healing_actions": strip(children["healing"].get(rid, [])),
            "notifications": strip(children["notifications"].get(rid, [])),
            "errors": strip(children["errors"].get(rid, [])),
            "checks": [{"name": c.pop("check_name"), **c}
                       for c in strip(children["checks"].get(rid, []))],
        })
    records += [{"kind": f"manual_{a['action']}", "started_at": a["at"], "table": a["table_name"],
                 "from": a["from_version"], "to": a["to_version"], "command": a["command"],
                 "user": a["user"]} for a in snap.actions]
    # Newest first; ISO times of one machine sort as text.
    return sorted(records, key=lambda r: str(r["started_at"]), reverse=True)
