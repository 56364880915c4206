"""pipeline_health_check(): can the next run work? (the seed's health checklist).

Cheap: no pandas, no data read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from dpo.config import Paths, load_settings, resolve_paths
from dpo.errors import ConfigError
from dpo.observe.ledger import Ledger
from dpo.schema import load_schema


def pipeline_health_check(
    orchestrator: Any = None, *, paths: Paths | None = None, **settings: Any
) -> dict[str, Any]:
    """Paths, last run, disk space (>= 2x the inputs), write permission; healthy or degraded.

    Give an orchestrator, resolved `paths`, or settings (as for the orchestrator).
    """
    if paths is None:
        paths = (orchestrator.paths if orchestrator is not None
                 else resolve_paths(load_settings(**settings)))
    reasons: list[str] = []
    checks = {
        "dynamic_db_source_dir": paths.source_dir,
        "databaseSchemas_path": paths.schema_path,
        "annotation_path": paths.annotation_path,
    }
    missing = [f"{name} not found: {path}" for name, path in checks.items() if not path.exists()]
    reasons += missing
    disk = _disk(paths)
    if not disk["enough_for_run"]:
        reasons.append(f"free space {disk['free_bytes']:,} B is less than twice the inputs "
                       f"({disk['input_bytes']:,} B)")
    writable = _writable(paths.default_dir)
    if not writable:
        reasons.append(f"no write permission on {paths.default_dir}")
    holds = _holds(paths, reasons)
    last = _last_run(paths)
    if last and last["status"] not in ("success", "running"):
        reasons.append(f"last run {last['run_id']} ended {last['status']}")
    return {
        "paths_accessible": not missing,
        "paths": {name: str(path) for name, path in checks.items()},
        "last_run": last,
        "disk_space": disk,
        "write_permission": writable,
        "holds": holds,
        "service_status": "healthy" if not reasons else "degraded",
        "reasons": reasons,
    }


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


def _holds(paths: Paths, reasons: list[str]) -> dict[str, dict[str, Any]]:
    """Tables a manual rollback holds: {table: {version, since, command}}."""
    from dpo.errors import IntegrityError
    from dpo.store.holds import Holds

    try:
        holds = Holds(paths.loader_dir).read()
    except IntegrityError as exc:
        reasons.append(exc.message)
        return {}
    return {t: {"version": h.version, "since": h.since, "command": h.command}
            for t, h in sorted(holds.items())}


def _last_run(paths: Paths) -> dict[str, Any] | None:
    run = Ledger(paths.output_dir / "runs.sqlite").last_run()
    if run is None:
        return None
    status = run["overall_status"] or run["state"]
    return {"run_id": run["run_id"], "started_at": run["started_at"],
            "finished_at": run["finished_at"], "status": status}
