"""Worker processes normalise batches of files, each in one pass; `fanout.combine` puts the
batches together as one pass over all files (threads) makes them. Here the batches disagree:
a column the reader typed as numbers in every file of the first batch and as text in the
second (one pass makes it text), bad cells and Excel error cells in both batches (column
by column across them), quarantined rows from both (their raw values as one table types them),
totals rows and a file with headers only. Threads and two worker processes must give the same
Phase 1 Parquet bytes, quarantine file, result and warnings in the same order."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import dynamic_entry, good_row, make_paths, source_dir, write_schema, write_source
from pipelinetools import PHASE1, plain
from pipelinetools import phase1_outputs as outputs

from dpo.collect.collector import DataCollector
from dpo.collect.executors import batches
from dpo.demo.writers import ExcelError

BIG = 123456789012345678.0  # its text differs as a typed number and as one pass's text


def months(extension: str) -> list[str]:
    return [f"records_2019{m:02d}{extension}" for m in range(1, 10)]


def split_plant(root: Path, extension: str) -> None:
    """Nine monthly files: two workers get batches of 5 and 4 (asserted below). The first
    five hold only numbers and dates where the spec wants them, so the reader types those
    columns (Excel error cells included); the next three hold bad values, so the reader
    reads them as text: one pass over all makes these columns text."""
    write_schema(root, {"records": dynamic_entry(extension=extension)})
    names = months(extension)
    for i, name in enumerate(names[:5]):  # the first batch: typed
        rows = [[dt.datetime(2019, 1 + i, 1 + j), 1, f"CODE-{10 * i + j:05d}", 10 + j,
                 BIG + 1000 * (10 * i + j), "PP"] for j in range(4)]
        if i == 1:
            rows[3][4] = ExcelError("#DIV/0!")  # weight
        if i == 3:
            rows[0][3] = ExcelError("#N/A")  # quantity
        write_source(root, name, rows)
    for i, name in enumerate(names[5:8]):  # the second batch: read as text
        rows = [good_row(100 * i + j) for j in range(4)]
        if i == 0:
            rows[1][3] = 12.5  # quantity: not whole
            rows[2][4] = ExcelError("#N/A")
            rows.insert(3, [None] * 6)  # a blank row
        if i == 1:
            rows[0][3] = ExcelError("#REF!")  # quantity
        if i == 2:
            rows[0][4] = "light"  # weight: a bad value
            rows[1][3] = "abc"  # quantity: a bad value
            rows.append([None, None, "TOTAL", 600, 75.0, None])  # a totals row
        write_source(root, name, rows)
    write_source(root, names[8], [])  # headers only


def collected(root: Path, **options: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    result = DataCollector(make_paths(root), max_retries=0, retry_wait=0.01, **options
                           ).process_all_data()
    return plain(result.to_dict()), outputs(root)


@pytest.mark.parametrize("extension", [".xlsx", ".xlsb"])
@pytest.mark.parametrize(("on_bad_rows", "on_error_cells"), [
    ("quarantine", "null"), ("quarantine", "quarantine"), ("fail", "fail"),
])
def test_batches_typed_differently_give_what_one_pass_gives(
        tmp_path: Path, extension: str, on_bad_rows: str, on_error_cells: str) -> None:
    split_plant(tmp_path / "plant", extension)
    names = months(extension)
    files = [source_dir(tmp_path / "plant") / n for n in names]
    assert [len(b) for b in batches(files, 2)] == [5, 4]  # typed | text (and headers only)
    threads, processes = (shutil.copytree(tmp_path / "plant", tmp_path / k)
                          for k in ("threads", "processes"))
    policy = {"on_bad_rows": on_bad_rows, "on_error_cells": on_error_cells}
    expected = collected(threads, executor="threads", workers=2, **policy)
    (table,) = expected[0]["details"]
    if on_bad_rows == "fail":  # column by column, files in order, across the batches
        assert [(c["file"], c["column"]) for c in table["error"]["cells"]] == [
            (names[3], "quantity"), (names[5], "quantity"), (names[6], "quantity"),
            (names[7], "quantity"),
            (names[1], "weight"), (names[5], "weight"), (names[7], "weight")]
    else:
        quarantined = 7 if on_error_cells == "quarantine" else 3
        assert table["rows_rejected"] == quarantined
        assert {"quarantine", "totals_row", "headers_only"} <= set(table["warnings_by_kind"])
        assert (PHASE1 / "quarantine/records.parquet").as_posix() in expected[1]
        assert table["rows"] == 5 * 4 + 3 * 4 + 1 - quarantined  # the totals row is kept
    if on_error_cells == "null":  # NA'd error cells: column by column across the batches
        nulled = [w for w in table["warnings"] if w["kind"] == "error_cell"]
        assert [w["file"] for w in nulled] == [names[3], names[6], names[1], names[5]]
    assert collected(processes, executor="processes", workers=2, **policy) == expected


def test_a_file_that_cannot_be_read_fails_the_table_as_in_one_pass(tmp_path: Path) -> None:
    """A broken file in the first batch and one in the second: the first one's error is the
    table's, as when all files are read in this process, and the other tables are not held up."""
    split_plant(tmp_path / "plant", ".xlsx")
    names = months(".xlsx")
    folder = source_dir(tmp_path / "plant")
    (folder / names[2]).write_bytes(b"not a workbook at all")
    (folder / names[6]).write_bytes(b"PK\x03\x04 truncated")
    threads, processes = (shutil.copytree(tmp_path / "plant", tmp_path / k)
                          for k in ("threads", "processes"))
    expected = collected(threads, executor="threads", workers=2, on_bad_rows="quarantine")
    (table,) = expected[0]["details"]
    assert table["status"] == "error" and table["files_failed"] == [names[2]]
    assert collected(processes, executor="processes", workers=2, on_bad_rows="quarantine"
                     ) == expected
