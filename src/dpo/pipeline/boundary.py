"""The run's failure boundaries: whatever escapes a phase becomes that phase's failed result,
and a configuration dpo refuses (or inputs it could not fetch) becomes a failed Phase 1 with
Phase 2 skipped, never a crash (docs/behaviour.md, section 6)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from loguru import logger

from dpo.errors import ConfigError, DpoError, ErrorInfo, ErrorType
from dpo.results import CollectorResult, Status

R = TypeVar("R")


def phase_boundary(name: str, run: Callable[[], R], failed: Callable[[float, ErrorInfo], R]) -> R:
    """Run a phase; whatever escapes it becomes a failed phase result, never a crash."""
    started = time.perf_counter()
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - the phase boundary: any failure becomes data
        if isinstance(exc, DpoError):  # a failure dpo names (e.g. a write error): no traceback
            logger.error("❌ {} failed: {}", name, exc.message)
        else:
            logger.exception("❌ {} crashed", name)
        return failed(time.perf_counter() - started, _unexpected(exc))


def config_failure(exc: DpoError) -> tuple[CollectorResult, None, str]:
    """A run refused for its configuration (or inputs it could not fetch from object storage),
    as results: Phase 1 failed, Phase 2 skipped."""
    found = re.search(r"\b(?:dynamicDB|staticDB)\.([^.:\s]+)(?:\.(\w+))?", exc.message)
    key = re.search(r"key '([^']+)'", exc.message)
    problems = getattr(exc, "problems", None)
    what = getattr(exc, "what", "schema")  # the schema or the checks file (dpo.checks)
    message = (f"{what} {exc.file} rejected: {problems[0]}" if problems and len(problems) == 1
               else exc.message)
    kind = ErrorType.CONFIG_ERROR if isinstance(exc, ConfigError) else exc.error_type
    info = ErrorInfo(kind, message, table=found.group(1) if found else None,
                     file=exc.file, column=key.group(1) if key else (
                         found.group(2) if found else None))
    collector = CollectorResult(status=Status.ERROR, tables=(), files_processed=0,
                                files_failed=0, records_count=0, duplicates_removed=0,
                                data_updated=False, seconds=0.0, disk_usage_bytes=0,
                                errors=(info,))
    what = "configuration error" if isinstance(exc, ConfigError) else "inputs not fetched"
    return collector, None, f"{what}: nothing was read or written"


def _unexpected(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, DpoError):
        return exc.info()
    return ErrorInfo(ErrorType.UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}")
