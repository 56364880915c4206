"""Which tables a run takes (`tables`, `dpo run --tables a,b`), and how a run that may not
publish says why, in the plant engineer's words (docs/behaviour.md, section 6)."""

from __future__ import annotations

import difflib
from dataclasses import replace

from dpo.config import Paths, Settings
from dpo.errors import ConfigError, DpoError, ErrorType
from dpo.results import CollectorResult
from dpo.schema import Schema


def select_tables(schema: Schema, wanted: tuple[str, ...]) -> Schema:
    """The schema's tables `wanted` names, in the schema's order (every table when it names
    none); ConfigError naming the tables there are for a name the schema lacks. The schema's
    fingerprint stays: the caches of the tables not run stay valid."""
    if not wanted:
        return schema
    known = [spec.name for spec in schema]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        close = [c for name in unknown for c in difflib.get_close_matches(name, known, n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"--tables: unknown table(s) {', '.join(unknown)}{hint}; tables: "
                          f"{', '.join(known)}")
    return replace(schema, tables=tuple(spec for spec in schema if spec.name in wanted))


def check_tables(paths: Paths, settings: Settings) -> None:
    """ConfigError (`dpo run` exit 2) for a name in `settings.tables` the schema lacks, before
    the run does anything. A schema that does not load is the run's to report, as always."""
    from loguru import logger

    from dpo.inputs.plant import mirror_schema
    from dpo.schema import load_schema

    try:
        mirror_schema(paths, settings)
        schema = load_schema(paths.schema_path, paths.root)
    except DpoError:
        return
    select_tables(schema, settings.tables)
    logger.info("🎯 running only {} (tables); the others keep their published versions",
                ", ".join(settings.tables))


def not_published_reason(collector: CollectorResult, schema: Schema, paths: Paths,
                         published: set[str]) -> str:
    """Why Phase 2 is skipped (the seed's rule: Phase 1 failed and a failed table could not be
    rolled back), what was held back with it, and how to publish the rest now. `published`:
    the tables the store has a version of."""
    unrestored = [h.table for h in collector.healing_actions
                  if h.action == "rollback" and not h.success]
    never = [t for t in unrestored if t not in published]
    broken = [t for t in unrestored if t in published]
    why = []
    if never:
        verb = "has" if len(never) == 1 else "have"
        why.append(f"{', '.join(never)} failed in Phase 1 and {verb} never been published "
                   "(first run?), so there is nothing to roll back to")
    if broken:
        why.append(f"{', '.join(broken)} failed in Phase 1 and could not be rolled back")
    why = why or ["Phase 1 failed and rollback did not restore every failed table"]
    failed = set(unrestored) | set(collector.failed_tables())
    others = [spec.name for spec in schema if spec.name not in failed]
    rule = ("by the seed's rule (Phase 1 failed and nothing to roll back to: Phase 2 skipped) "
            "this run published nothing")
    if others:
        what = ("master tables" if set(others) <= {s.name for s in schema.static}
                else "other tables")
        rule += f", not even the {len(others)} {what} ({', '.join(others)})"
    errors = {t.table: t.error for t in collector.tables if t.error is not None}
    missing = [_relative(errors[t].message, paths) for t in never
               if t in errors and errors[t].error_type is ErrorType.FILE_NOT_FOUND]
    fix = [f"{'; '.join(missing)}: put the exports there and run again"] if missing else []
    if others:
        fix.append(f"to publish the others now: dpo run --tables {','.join(others)}")
    said = "; ".join(fix)  # the command last, with no full stop to copy with it
    return f"{'; '.join(why)}; {rule}." + (f" {said[:1].upper()}{said[1:]}" if fix else "")


def _relative(message: str, paths: Paths) -> str:
    """A message naming a folder under the root by its absolute path, with the path as the
    plant's people know it (relative to the root)."""
    root = str(paths.root)
    return message.replace(root + "/", "").replace(root, ".") if root != "/" else message


__all__ = ["check_tables", "not_published_reason", "select_tables"]
