"""Data-quality warnings: what dpo loaded differently from the sheet as written, and why.

A run that meets a cell it cannot know (an Excel error, a formula never calculated), a header
spelled loosely, a merged range or a totals row still publishes (docs/behaviour.md, "Real
exports"), but never silently: each such thing is a DataWarning naming the file, sheet, Excel
row and column. Results carry them per table, and reports, the ledger, the dashboard and the
metrics count them by kind. Stdlib only: the no-change run replays recorded warnings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dpo.errors import CellError


class WarningKind(StrEnum):
    ERROR_CELL = "error_cell"  # #REF!, #N/A...: loaded as NA
    NOT_CALCULATED = "formula_not_calculated"  # a formula with no cached value: loaded as NA
    HEADER = "header"  # a header matched after trimming spaces or ignoring case
    HEADER_ROW = "header_row"  # the header row was not the sheet's first row
    MERGED = "merged_cells"  # merged cells took their top-left cell's value
    TOTALS = "totals_row"  # a row that looks like a totals row (kept, or dropped by setting)
    SOURCE_FILE = "source_file"  # a file named like a source that was not read as one
    QUARANTINE = "quarantine"  # rows moved to the quarantine file
    HEADERS_ONLY = "headers_only"  # a file with no data rows
    NOT_PUBLISHED = "not_published"  # loaded, but another table failed (all-or-nothing)
    HELD = "held"  # a manual rollback holds the table at its version
    CHECK = "check"  # a data check failed (dpo.checks; docs/behaviour.md, "Data checks")
    OTHER = "other"


@dataclass(frozen=True)
class DataWarning:
    """One thing a person should know about the published data, located as Excel shows it."""

    kind: WarningKind
    message: str
    file: str | None = None
    sheet: str | None = None
    row: int | None = None  # Excel's 1-based row number
    column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "message": self.message, "file": self.file,
                "sheet": self.sheet, "row": self.row, "column": self.column}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> DataWarning:
        kind = data.get("kind", "other")
        return DataWarning(
            kind=WarningKind(kind) if kind in WarningKind._value2member_map_ else WarningKind.OTHER,
            message=str(data.get("message", "")), file=data.get("file"), sheet=data.get("sheet"),
            row=data.get("row"), column=data.get("column"))


def from_cell(cell: CellError) -> DataWarning:
    """A cell loaded as NA because its value cannot be known."""
    kind = WarningKind.NOT_CALCULATED if cell.not_calculated else WarningKind.ERROR_CELL
    what = "formula never calculated (no cached value)" if cell.not_calculated else cell.value
    return DataWarning(kind, f"{cell.file} [{cell.sheet}] row {cell.row}, column {cell.column}: "
                             f"{what}; loaded as NA", cell.file, cell.sheet, cell.row, cell.column)


# Kinds that make a table's status "warning" (someone must act: rows held back, a file emptied).
# The others describe data that was published as a person reads the sheet: status stays success.
_NEEDS_REVIEW = frozenset({WarningKind.QUARANTINE, WarningKind.HEADERS_ONLY})


def needs_review(warnings: Iterable[DataWarning]) -> bool:
    return any(w.kind in _NEEDS_REVIEW for w in warnings)


def note(kind: WarningKind, message: str, file: str | None = None, sheet: str | None = None,
         column: str | None = None) -> DataWarning:
    return DataWarning(kind, message, file, sheet, None, column)


def counts(warnings: Iterable[DataWarning]) -> dict[str, int]:
    """Warnings per kind, kinds in a stable order."""
    found: dict[str, int] = {}
    for warning in warnings:
        found[str(warning.kind)] = found.get(str(warning.kind), 0) + 1
    return dict(sorted(found.items()))


def grouped_lines(warnings: Iterable[DataWarning]) -> list[str]:
    """Every warning, grouped so that 3,000 #N/A cells in one column read as one line:
    cell warnings by (kind, file, sheet, column, what) with their rows; others as written."""
    cells: dict[tuple[str, str, str, str, str], list[int]] = {}
    lines: list[str] = []
    for warning in warnings:
        if warning.row is not None and warning.kind in (WarningKind.ERROR_CELL,
                                                        WarningKind.NOT_CALCULATED):
            what = warning.message.rsplit(": ", 1)[-1]
            key = (str(warning.kind), warning.file or "", warning.sheet or "",
                   warning.column or "", what)
            cells.setdefault(key, []).append(warning.row)
        else:
            lines.append(warning.message)
    for (_kind, file, sheet, column, what), rows in cells.items():
        shown = ", ".join(str(r) for r in rows)
        lines.append(f"{file} [{sheet}] column {column}, row{'s' if len(rows) > 1 else ''} "
                     f"{shown}: {what}")
    return lines


# What a count of each kind reads as: (one, several). Kinds not listed read as their name.
_KIND_WORDS: dict[str, tuple[str, str]] = {
    WarningKind.ERROR_CELL: ("error cell", "error cells"),
    WarningKind.NOT_CALCULATED: ("formula not calculated", "formulas not calculated"),
    WarningKind.HEADER: ("loose header", "loose headers"),
    WarningKind.HEADER_ROW: ("header row moved", "header rows moved"),
    WarningKind.MERGED: ("merged range", "merged ranges"),
    WarningKind.TOTALS: ("totals row", "totals rows"),
    WarningKind.SOURCE_FILE: ("source file not read", "source files not read"),
    WarningKind.QUARANTINE: ("quarantine", "quarantines"),
    WarningKind.HEADERS_ONLY: ("file with headers only", "files with headers only"),
    WarningKind.NOT_PUBLISHED: ("table not published", "tables not published"),
    WarningKind.HELD: ("held table", "held tables"),
    WarningKind.OTHER: ("other", "other"),
}


def plural(count: int, one: str, several: str | None = None) -> str:
    """'1 file', '3 files', '0 files' ('several' when adding an s is not the plural)."""
    return f"{count:,} {one if count == 1 else several or one + 's'}"


def kind_words(kind: str) -> tuple[str, str]:
    """What one warning of `kind` and several read as: ('error cell', 'error cells')."""
    return _KIND_WORDS.get(kind, (kind.replace("_", " "),) * 2)


def kind_count(kind: str, count: int) -> str:
    """'1 error cell', '3 error cells', '2 totals rows': a count of warnings of one kind."""
    return plural(count, *kind_words(kind))
