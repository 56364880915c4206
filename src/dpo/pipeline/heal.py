"""Rollback of failed Phase 1 tables to their last good, hash-verified copy (behaviour.md §6)."""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from dpo.config import Paths
from dpo.errors import DpoError
from dpo.fsio import copy_durably
from dpo.results import HealingAction
from dpo.store.api import Store
from dpo.tables.parquet import is_intact, recorded_hash


def rollback_table(paths: Paths, store: Store, table: str) -> HealingAction:
    """Make `<collector_dir>/<table>.parquet` the last good copy, proven by its hash."""
    output = paths.phase1_output(table)
    logger.info("🔄 rolling back {}", table)
    if output.exists() and is_intact(output):
        return _done(table, f"kept previous verified output {paths.relative(output)} "
                            f"(hash {_short(output)})")
    try:
        stored = store.annotations().get(table)
        published = store.local_file(stored) if stored else None
    except DpoError as exc:
        return _failed(table, f"annotations unreadable: {exc.message}")
    if published is None or not published.exists():
        return _failed(table, "nothing to roll back to: no version of it has been published "
                              "yet (first run?)")
    if not is_intact(published):
        return _failed(table, f"published version {paths.relative(published)} fails its hash check")
    try:
        copy_durably(published, output, point=f"rollback:phase1:{table}")
    except DpoError as exc:
        return _failed(table, f"could not restore {paths.relative(published)}: {exc.message}")
    if not is_intact(output):
        return _failed(table, "restored copy fails its hash check")
    return _done(table, f"restored {paths.relative(output)} from published version "
                        f"{published.name} (hash {_short(output)})")


def _short(path: Path) -> str:
    return (recorded_hash(path) or "?")[:12]


def _done(table: str, detail: str) -> HealingAction:
    logger.info("🔄 rollback of {} succeeded: {}", table, detail)
    return HealingAction("rollback", table, True, detail)


def _failed(table: str, detail: str) -> HealingAction:
    logger.error("❌ rollback of {} failed: {}", table, detail)
    return HealingAction("rollback", table, False, detail)
