"""What Phase 2 last published from (stdlib only: the no-change run reads it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dpo import __version__
from dpo.fsio import Fingerprint, write_if_changed
from dpo.quality import DataWarning


def forget_loader_state(cache_dir: Path) -> None:
    """Make the next run load every table again (e.g. after a hold is released by hand: its
    inputs did not change, so the no-change run would otherwise keep the held version)."""
    (cache_dir / "loader.json").unlink(missing_ok=True)


class LoaderState:
    """What Phase 2 last published from: per table the input's fingerprint, hash and rows.

    `<cache_dir>/loader.json`, written after every successful Phase 2. A table whose input
    has the same fingerprint, and whose current version still carries the recorded hash, is
    unchanged without being read.
    """

    def __init__(self, cache_dir: Path, schema_fingerprint: str) -> None:
        self.path = cache_dir / "loader.json"
        self.key = f"{__version__}:{schema_fingerprint}"
        self.tables: dict[str, dict[str, Any]] = {}
        self.annotations: Any = None  # the store's commit token when Phase 2 last ended
        self.checks = ""  # the checks file's fingerprint when Phase 2 last ended (dpo.checks)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("key") == self.key:
            self.tables = data.get("tables", {})
            self.annotations = data.get("annotations")
            self.checks = str(data.get("checks", ""))

    def unchanged(self, table: str, source: Path) -> dict[str, Any] | None:
        """The recorded {hash, rows, ...} if `source` is as it was when it was last loaded."""
        record = self.tables.get(table)
        try:
            fp = Fingerprint.of(source)
        except OSError:
            return None
        if not record or (record["size"], record["mtime_ns"]) != (fp.size, fp.mtime_ns):
            return None
        return record

    def record(self, table: str, source: Path, digest: str, rows: int,
               warnings: list[dict[str, Any]] | None = None, blank_rows: int = 0) -> None:
        """What `table` was published from; its warnings are kept so that a run that does not
        read the unchanged file again still says them."""
        fp = Fingerprint.of(source)
        self.tables[table] = {"size": fp.size, "mtime_ns": fp.mtime_ns, "hash": digest,
                              "rows": rows, "warnings": warnings or [], "blank_rows": blank_rows}

    def forget(self, table: str) -> None:
        """Load `table` again next run (a fail-severity check kept it from publishing)."""
        self.tables.pop(table, None)

    def save(self, commit_token: str | None, checks: str = "") -> None:
        """`commit_token`: the store's (Store.commit_token), which any later commit changes;
        `checks`: the checks file's fingerprint the tables were checked with."""
        self.annotations, self.checks = commit_token, checks
        data = {"key": self.key, "tables": self.tables, "annotations": self.annotations,
                "checks": self.checks}
        write_if_changed(self.path, data, point="loader:state")

    def annotations_unchanged(self, commit_token: str | None) -> bool:
        return commit_token is not None and self.annotations == commit_token


def replayed(record: dict[str, Any]) -> tuple[DataWarning, ...]:
    """The warnings recorded with an input that is not read again (LoaderState.record)."""
    found = record.get("warnings")
    return tuple(DataWarning.from_dict(w) for w in found if isinstance(w, dict)) \
        if isinstance(found, list) else ()
