"""Every dpo error and result survives a pickle round trip (issue #14, item 5): a process pool
or a Dask worker hands them back to the run as they were raised or made."""

from __future__ import annotations

import pickle
from datetime import datetime
from pathlib import Path

import pytest
from conftest import collect, good_row, table_result, write_source

from dpo import errors
from dpo.checks.spec import ChecksError
from dpo.errors import CellError, CellErrors, DpoError, ErrorType, SchemaError
from dpo.quality import DataWarning, WarningKind
from dpo.results import LoaderResult, PipelineResult, Status

CELL = CellError("records_201811.xlsx", "Sheet1", 7, "quantity", "abc", "is not a whole number",
                 excel_error="")


def _every_error_class() -> list[type[DpoError]]:
    found, todo = [], [DpoError]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(kind.__subclasses__())
    return found


EXAMPLES: dict[type[DpoError], DpoError] = {
    DpoError: DpoError("boom", error_type=ErrorType.WRITE_ERROR, table="t", file="f.xlsx",
                       sheet="S", row=3, column="c"),
    errors.ConfigError: errors.ConfigError("bad setting", file="dpo.toml"),
    SchemaError: SchemaError("databaseSchemas.json", ["records: no path", "po: bad dtype"]),
    errors.TransientError: errors.TransientError("locked", file="f.xlsx"),
    CellErrors: CellErrors([CELL, CellError("b.xlsx", "S", 9, "weight", "#N/A", "is an Excel "
                                            "error value", excel_error="#N/A")],
                           table="records", error_type=ErrorType.SCHEMA_MISMATCH),
    errors.PipelineLocked: errors.PipelineLocked("another run holds the lock"),
    errors.IntegrityError: errors.IntegrityError("hash mismatch", file="x.parquet"),
    ChecksError: ChecksError("database/dataChecks.toml", ["check #1: severity: 'error' must be "
                                                         "one of warn, fail, quarantine"]),
}


def test_every_error_class_has_an_example() -> None:
    """A new exception class must be added to EXAMPLES (and so to the round trip below)."""
    assert set(_every_error_class()) == set(EXAMPLES)


@pytest.mark.parametrize("kind", list(EXAMPLES), ids=lambda k: k.__name__)
def test_errors_survive_a_pickle_round_trip(kind: type[DpoError]) -> None:
    error = EXAMPLES[kind]
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is kind
    assert back.args == error.args
    assert str(back) == str(error)
    assert back.__dict__ == error.__dict__
    assert back.info("t") == error.info("t")
    assert back.cells() == error.cells()
    assert back.error_type is error.error_type


def test_schema_error_keeps_its_problems() -> None:
    back = pickle.loads(pickle.dumps(EXAMPLES[SchemaError]))
    assert isinstance(back, SchemaError)
    assert back.problems == ["records: no path", "po: bad dtype"]


def test_results_of_a_real_run_survive_a_pickle_round_trip(records_root: Path) -> None:
    """A collector result holding a failed table (CellErrors as ErrorInfo with its cells) and
    data warnings, inside a PipelineResult."""
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(4)])
    bad = [good_row(i) for i in range(4)]
    bad[2][3] = "abc"
    write_source(records_root, "records_201812.xlsx", bad)
    collector = collect(records_root)
    assert table_result(collector, "records").error is not None  # the case that matters
    warning = DataWarning(WarningKind.TOTALS, "row 9 looks like totals", "f.xlsx", "S", 9, "c")
    loader = LoaderResult(Status.SUCCESS, (), 0, 0, 0, 0.5)
    result = PipelineResult(Status.PARTIAL_SUCCESS, collector, loader, datetime(2024, 1, 1),
                            datetime(2024, 1, 1, 0, 1), notifications=({"channel": "mock"},),
                            reports=("r.txt",))
    for thing in (result, collector, loader, warning, CELL):
        back = pickle.loads(pickle.dumps(thing))
        assert back == thing
    assert pickle.loads(pickle.dumps(result)).to_dict() == result.to_dict()
