"""dpo's one exception tree, and the error records that results and reports carry.

    DpoError                      every failure dpo reports; carries an ErrorType and context
    ├── ConfigError               bad settings or paths (CLI exit code 2)
    │   └── SchemaError           databaseSchemas.json rejected; lists every problem at once
    ├── TransientError            worth retrying: file locked, still being copied, EAGAIN
    ├── CellErrors                row-level conversion errors (file, sheet, row, column, value)
    ├── PipelineLocked            another run holds the run lock (CLI exit code 4)
    └── IntegrityError            a stored file does not match its recorded content hash

Reader (fastexcel/calamine) and pyarrow errors are translated into these exactly once, in
`excel.py` and `store.py`; everything above those modules only sees DpoError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class ErrorType(StrEnum):
    FILE_NOT_FOUND = "FILE_NOT_FOUND"
    FILE_READ_ERROR = "FILE_READ_ERROR"
    MISSING_FIELDS = "MISSING_FIELDS"
    DATA_PROCESSING_ERROR = "DATA_PROCESSING_ERROR"
    SCHEMA_MISMATCH = "SCHEMA_MISMATCH"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    CONFIG_ERROR = "CONFIG_ERROR"
    WRITE_ERROR = "WRITE_ERROR"
    INTEGRITY_ERROR = "INTEGRITY_ERROR"
    ROLLBACK_ERROR = "ROLLBACK_ERROR"
    CHECK_FAILED = "CHECK_FAILED"  # a fail-severity data check failed: the table not published
    LOCKED = "LOCKED"
    UNEXPECTED_ERROR = "UNEXPECTED_ERROR"


# The "error code" of a formula cell that has no cached value (never calculated).
NOT_CALCULATED = "formula not calculated"


@dataclass(frozen=True)
class CellError:
    """One value that could not become its schema type, located as Excel shows it."""

    file: str
    sheet: str
    row: int  # Excel's 1-based row number
    column: str
    value: str
    reason: str
    # The Excel error the cell holds (#REF!, #N/A..., or NOT_CALCULATED); "" for a value that
    # is there but does not fit its type. Error cells follow the on_error_cells policy.
    excel_error: str = ""

    @property
    def not_calculated(self) -> bool:
        return self.excel_error == NOT_CALCULATED

    def describe(self) -> str:
        return (
            f"{self.file} [{self.sheet}] row {self.row}, column {self.column}: "
            f"{shown(self.value)} {self.reason}"
        )


def shown(value: object, limit: int = 100) -> str:
    """A value as a message quotes it: long text (a 100,000-character cell) cut in the middle,
    with its length, so that reports and notifications stay readable."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit // 2] + '…' + text[-limit // 2:]!r} ({len(text):,} characters)"


@dataclass(frozen=True)
class ErrorInfo:
    """A failure as plain data, for results, reports, notifications and the run ledger."""

    error_type: ErrorType
    message: str
    table: str | None = None
    file: str | None = None
    sheet: str | None = None
    row: int | None = None
    column: str | None = None
    cells: tuple[CellError, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_type"] = str(self.error_type)
        data["cells"] = [asdict(c) for c in self.cells[:MAX_CELLS_IN_DICT]]
        data["cells_total"] = len(self.cells)
        return data


# A result dict must stay readable when a whole column is bad: keep the first N cells there.
MAX_CELLS_IN_DICT = 50


class DpoError(Exception):
    """Base of every error dpo raises on purpose."""

    error_type: ErrorType = ErrorType.UNEXPECTED_ERROR

    def __init__(
        self,
        message: str,
        *,
        error_type: ErrorType | None = None,
        table: str | None = None,
        file: str | None = None,
        sheet: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if error_type is not None:
            self.error_type = error_type
        self.table = table
        self.file = file
        self.sheet = sheet
        self.row = row
        self.column = column

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its state, not by calling __init__ again with `args` (subclasses take
        # other arguments): a process or a Dask worker hands errors back as they were.
        return _restore, (type(self), self.args, dict(self.__dict__))

    def info(self, table: str | None = None) -> ErrorInfo:
        return ErrorInfo(
            error_type=self.error_type,
            message=self.message,
            table=self.table or table,
            file=self.file,
            sheet=self.sheet,
            row=self.row,
            column=self.column,
            cells=self.cells(),
        )

    def cells(self) -> tuple[CellError, ...]:
        return ()


def _restore(kind: type[DpoError], args: tuple[Any, ...], state: dict[str, Any]) -> DpoError:
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(DpoError):
    error_type = ErrorType.CONFIG_ERROR


class SchemaError(ConfigError):
    """The schema file is rejected; `problems` holds one line per problem, table and key named."""

    error_type = ErrorType.SCHEMA_INVALID

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"schema {path} rejected ({len(problems)} problem(s)):\n{lines}", file=path)


class TransientError(DpoError):
    """A failure that may go away by itself (lock, partial copy); retried with backoff."""


class PipelineLocked(DpoError):
    """Another run holds the run lock (CLI exit code 4)."""

    error_type = ErrorType.LOCKED


class IntegrityError(DpoError):
    error_type = ErrorType.INTEGRITY_ERROR


class CellErrors(DpoError):
    """Values that could not be converted; each one located by file, sheet, row and column."""

    error_type = ErrorType.DATA_PROCESSING_ERROR

    def __init__(self, cells: list[CellError], *, table: str | None = None,
                 error_type: ErrorType | None = None) -> None:
        self._cells = tuple(cells)
        first = cells[0]
        more = f" (and {len(cells) - 1} more)" if len(cells) > 1 else ""
        super().__init__(
            f"{len(cells)} bad value(s); first: {first.describe()}{more}",
            error_type=error_type,
            table=table,
            file=first.file,
            sheet=first.sheet,
            row=first.row,
            column=first.column,
        )

    def cells(self) -> tuple[CellError, ...]:
        return self._cells
