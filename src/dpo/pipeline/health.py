"""pipeline_health_check(): can the next run work? (the seed's health checklist).

Cheap: no pandas, no data read."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from dpo.config import Paths, Settings, load_settings, resolve_paths
from dpo.errors import ConfigError
from dpo.observe.ledger import Ledger, LedgerOutdated
from dpo.schema import load_schema


def pipeline_health_check(
    orchestrator: Any = None, *, paths: Paths | None = None, config: Settings | None = None,
    **settings: Any
) -> dict[str, Any]:
    """Paths, last run, disk space (>= 2x the inputs), write permission; healthy or degraded.

    Give an orchestrator, resolved `paths` (with their `config`), or settings (as for the
    orchestrator). A path on object storage is asked of the store (one request each).
    """
    if orchestrator is not None:
        paths, config = orchestrator.paths, orchestrator.settings
    elif paths is None:
        config = load_settings(**settings)
        paths = resolve_paths(config)
    reasons: list[str] = []
    checks = _locations(paths)
    missing = [f"{name} not found: {where}" for name, where in checks.items()
               if not _exists(where, config, folder=name == "dynamic_db_source_dir")]
    reasons += missing
    disk = _disk(paths)
    if not disk["enough_for_run"]:
        reasons.append(f"free space {disk['free_bytes']:,} B is less than twice the inputs "
                       f"({disk['input_bytes']:,} B)")
    writable = _writable(paths.default_dir)
    if not writable:
        reasons.append(f"no write permission on {paths.default_dir}")
    holds = _holds(paths, config, reasons)
    last = _last_run(paths, reasons)
    if last and last["status"] not in ("success", "running"):
        reasons.append(f"last run {last['run_id']} ended {last['status']}")
    return {
        "paths_accessible": not missing,
        "paths": {name: str(where) for name, where in checks.items()},
        "last_run": last,
        "disk_space": disk,
        "write_permission": writable,
        "holds": holds,
        "service_status": "healthy" if not reasons else "degraded",
        "reasons": reasons,
    }


def _locations(paths: Paths) -> dict[str, Path | str]:
    """What the check looks for, each where it lives: a local path, or a URL."""
    annotations = (f"{paths.store_url}/{paths.annotations_key}" if paths.store_url
                   else paths.annotation_path)
    return {"dynamic_db_source_dir": paths.source_url or paths.source_dir,
            "databaseSchemas_path": paths.schema_url or paths.schema_path,
            "annotation_path": annotations}


def _exists(where: Path | str, config: Settings | None, *, folder: bool) -> bool:
    """A local path exists; an object exists (one HEAD); a folder holds folders (one listing)."""
    if isinstance(where, Path):
        return where.exists()
    from dpo.errors import DpoError
    from dpo.store.objects.client import follow_settings, head, list_level, open_bucket

    if config is not None:
        follow_settings(config)
    store, key = open_bucket(where, config.storage_options if config else None)
    try:
        if folder:
            return bool(list_level(store, key)[1])
        head(store, key)
        return True
    except (DpoError, OSError):  # absent, or the store unreachable: either way not usable
        return False


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(folder: Path) -> bool:
    return os.access(_existing_parent(folder), os.W_OK | os.X_OK)


def _disk(paths: Paths) -> dict[str, Any]:
    free = shutil.disk_usage(_existing_parent(paths.default_dir)).free
    inputs = _size(paths.source_dir) + sum(_size(p) for p in _static_files(paths))
    return {"path": str(paths.default_dir), "free_bytes": free, "input_bytes": inputs,
            "enough_for_run": free >= 2 * inputs}


def _static_files(paths: Paths) -> list[Path]:
    try:
        schema = load_schema(paths.schema_path, paths.root)
    except ConfigError:
        return []
    return [spec.path for spec in schema.static]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _holds(paths: Paths, config: Settings | None, reasons: list[str]
           ) -> dict[str, dict[str, Any]]:
    """Tables a manual rollback holds: {table: {version, since, command}}."""
    from dpo.errors import DpoError
    from dpo.store.session import open_store_for

    try:
        holds = open_store_for(paths, config or Settings()).holds()
    except DpoError as exc:
        reasons.append(exc.message)
        return {}
    return {t: {"version": h.version, "since": h.since, "command": h.command}
            for t, h in sorted(holds.items())}


def _last_run(paths: Paths, reasons: list[str]) -> dict[str, Any] | None:
    """The newest recorded run, read-only (a health check never writes, nor migrates)."""
    ledger = Ledger(paths.output_dir / "runs.sqlite", read_only=True)
    try:
        run = ledger.last_run()
    except LedgerOutdated as exc:
        reasons.append(str(exc))
        return None
    except sqlite3.Error as exc:
        reasons.append(f"run ledger {ledger.path} is unreadable: {exc}")
        return None
    if run is None:
        return None
    status = run["overall_status"] or run["state"]
    return {"run_id": run["run_id"], "started_at": run["started_at"],
            "finished_at": run["finished_at"], "status": status}
