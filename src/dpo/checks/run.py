"""A table's checks run: which rows fail each, named by file, sheet and Excel row, and what the
severities make of it (docs/behaviour.md, "Data checks").

    warn        the table publishes; each failing check is a `check` warning
    fail        the table does not publish (its current version stays)
    quarantine  the failing rows are left out, with the check's name, into
                dynamicDatabase/quarantine/<table>.checks.parquet; the rest publishes
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpo.arrays import from_numpy, numbers, strings
from dpo.checks.origins import Provenance, Where
from dpo.checks.rules import failing_rows, row_counts_fail, short_files
from dpo.checks.spec import Check
from dpo.quality import DataWarning, WarningKind
from dpo.results import CheckResult
from dpo.tables.parquet import read_verified

if TYPE_CHECKING:
    from dpo.store.api import Store

MAX_EXAMPLES = 20


def published(store: Store, table: str) -> pa.Table | None:
    """The current published version of `table`, read and proven (None: never published)."""
    stored = store.annotations().get(table)
    return read_verified(store.local_file(stored)) if stored else None


@dataclass(frozen=True)
class Sources:
    """What checks on one table may look at besides the table."""

    referenced: Callable[[str], pa.Table | None]  # a table as this run publishes it
    rows_before: Callable[[], int | None]  # the current version's rows (None: none yet)
    provenance: Provenance


@dataclass(frozen=True)
class Verdict:
    """The checks of one table, and what they make of its publish."""

    results: tuple[CheckResult, ...]
    warnings: tuple[DataWarning, ...]
    quarantined: np.ndarray  # positions left out by quarantine-severity checks
    quarantine: pa.Table | None  # those rows, with _check, _source_file, _sheet, _excel_row

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        """Fail-severity checks that failed: the table must not publish."""
        return tuple(r for r in self.results if r.failed and r.severity == "fail")


@dataclass(frozen=True)
class _Outcome:
    status: str
    rows: np.ndarray
    reason: str | None = None
    counts: tuple[int, int] | None = None  # row_count_change: (before, after)
    detail: str = ""


def check_table(checks: tuple[Check, ...], table: pa.Table, sources: Sources) -> Verdict:
    results: list[CheckResult] = []
    warnings: list[DataWarning] = []
    moved: dict[int, str] = {}  # quarantined position -> the first check that moved it
    for check in checks:
        outcome = _run(check, table, sources)
        shown = outcome.rows[:MAX_EXAMPLES]
        where = sources.provenance.locate(table, shown)
        result = CheckResult(
            name=check.name, table=check.table, rule=check.rule, severity=check.severity,
            status=outcome.status, failing_rows=len(outcome.rows),
            examples=tuple(_examples(table, shown, where, check.columns)),
            reason=outcome.reason,
            rows_before=outcome.counts[0] if outcome.counts else None,
            rows_after=outcome.counts[1] if outcome.counts else None)
        results.append(result)
        if result.failed:
            warnings.append(_warning(check, result, where, outcome.detail))
            if check.severity == "quarantine":
                for position in outcome.rows.tolist():
                    moved.setdefault(position, check.name)
    positions = np.array(sorted(moved), dtype=np.int64)
    quarantine = (_quarantine_table(table, positions, [moved[p] for p in positions.tolist()],
                                    sources.provenance) if len(positions) else None)
    return Verdict(tuple(results), tuple(warnings), positions, quarantine)


def _run(check: Check, table: pa.Table, sources: Sources) -> _Outcome:
    none = np.empty(0, dtype=np.int64)
    if check.rule == "row_count_change":
        before = sources.rows_before()
        if before is None:
            return _Outcome("skipped", none, "no published version to compare with")
        after = table.num_rows
        failed = row_counts_fail(before, after, float(check.params["row_count_change"]))
        return _Outcome("failed" if failed else "passed", none, counts=(before, after),
                        detail=f"{after} rows against {before} published")
    if check.rule == "min_file_rows_ratio":
        counts = sources.provenance.file_rows()
        ratio = float(check.params["min_file_rows_ratio"])
        short = short_files(counts, ratio)
        if not short:
            return _Outcome("passed", none)
        rows = np.unique(np.concatenate(
            [sources.provenance.rows_from(table, name) for name in short]))
        median = float(np.median([n for _, n in counts]))
        said = ", ".join(f"{name} ({dict(counts)[name]} rows)" for name in short)
        return _Outcome("failed", rows, detail=f"{said} below {ratio} x the median of "
                        f"{median:g} rows per file")
    referenced = None
    if check.rule == "references":
        target = str(check.params["references"]).split(".", 1)[0]
        referenced = sources.referenced(target)
        if referenced is None:
            return _Outcome("skipped", none, f"{target} has no published version yet")
    rows = failing_rows(check, table, referenced)
    return _Outcome("failed" if len(rows) else "passed", rows)


def _examples(table: pa.Table, positions: np.ndarray, where: list[Where | None],
              columns: tuple[str, ...]) -> list[dict[str, object]]:
    if not len(positions):
        return []
    picked = table.select(list(columns)).take(from_numpy(positions))
    values = {name: _plain(picked.column(name)) for name in columns}
    return [{"file": w[0] if w else None, "sheet": w[1] if w else None,
             "row": w[2] if w else None,
             "values": {name: values[name][i] for name in columns}}
            for i, w in enumerate(where)]


def _plain(column: pa.ChunkedArray) -> list[object]:
    """JSON-ready values: dates as ISO text (no pandas Timestamp)."""
    if pa.types.is_timestamp(column.type):
        return pc.strftime(column, "%Y-%m-%dT%H:%M:%S").to_pylist()  # type: ignore[no-any-return]
    return column.to_pylist()  # type: ignore[no-any-return]


def _warning(check: Check, result: CheckResult, where: list[Where | None], detail: str
             ) -> DataWarning:
    first = next((w for w in where if w is not None), None)
    rows = [f"{w[0]} [{w[1]}] row {w[2]}" for w in where if w is not None][:5]
    more = f" (first: {'; '.join(rows)})" if rows else ""
    counted = detail or f"{result.failing_rows} row(s) fail"
    return DataWarning(
        WarningKind.CHECK, f"check {check.name!r} ({check.rule}, {check.severity}) failed on "
        f"{check.table}: {counted}{more}", first[0] if first else None,
        first[1] if first else None, first[2] if first else None,
        check.column)


def _quarantine_table(table: pa.Table, positions: np.ndarray, names: list[str],
                      provenance: Provenance) -> pa.Table:
    where = provenance.locate(table, positions)
    rows = table.take(from_numpy(positions))
    extra = {
        "_check": strings(names, pa.large_string()),
        "_source_file": strings([w[0] if w else None for w in where], pa.large_string()),
        "_sheet": strings([w[1] if w else None for w in where], pa.large_string()),
        "_excel_row": numbers([w[2] if w else None for w in where], pa.int64()),
    }
    return pa.Table.from_arrays([*rows.columns, *extra.values()],
                                names=[*rows.column_names, *extra])
