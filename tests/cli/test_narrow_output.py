"""Issue #19, item 7: `dpo validate` read by a machine or on 80 columns (a cron mail, a CI log):
file names are never cut (a long one wraps in its cell), and `--json` gives every row whole.

Real plants, real `dpo` subprocesses with stdout a pipe (not a terminal) and COLUMNS=80.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pipelinetools import ORDERS, make_plant

LONG = "purchaseOrder_181215_revised_by_the_planning_department_after_the_audit_v2.xlsx"
NOT_A_BOOK = "purchaseOrder_181230_exported_from_the_erp_as_csv_by_mistake_again.xlsx"


def piped(*args: str | Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """`dpo ARGS` with stdout a pipe, as cron or CI run it, on a COLUMNS-wide 'terminal'."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "dpo.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    root = tmp_path / "plant"
    make_plant(root, months=1, rows_per_month=20)
    shutil.copy(root / ORDERS / "purchaseOrder_181101.xlsx", root / ORDERS / LONG)
    (root / ORDERS / NOT_A_BOOK).write_text("poNo,itemCode\nPO-1,A-1\n", encoding="utf-8")
    return root


def file_column(table: str) -> str:
    """The `file` cells of a rich table, every line's piece in order, joined."""
    pieces = [line.split("│")[2].strip() for line in table.splitlines()
              if line.startswith("│")]
    return "".join(pieces)


def test_validate_never_cuts_a_file_name_on_80_columns(plant: Path) -> None:
    done = piped("validate", "--root", plant)
    as_json = piped("validate", "--root", plant, "--json")

    assert done.returncode == as_json.returncode == 1  # the CSV is an error
    rows = json.loads(as_json.stdout)
    names = [row["file"] for row in rows]
    assert LONG in names and NOT_A_BOOK in names
    assert {row["file"]: row["status"] for row in rows}[NOT_A_BOOK] == "error"
    assert rows[names.index(NOT_A_BOOK)]["message"].endswith(
        "not an Excel workbook (it starts like text, a CSV file?); export it again as .xlsx "
        "or .xlsb")
    assert "…" not in done.stdout  # nothing cut to fit
    assert all(len(line) <= 80 for line in done.stdout.splitlines()[:-1])  # but the last
    assert file_column(done.stdout) == "".join(names)  # every name whole, wrapped in its cell
    problem = done.stdout.splitlines()[-1]
    assert problem == f"ERROR purchaseOrders {NOT_A_BOOK}: {rows[names.index(NOT_A_BOOK)]['message']}"


def test_validate_json_of_a_clean_plant(tmp_path: Path) -> None:
    make_plant(tmp_path / "plant", months=1, rows_per_month=20)
    done = piped("validate", "--root", tmp_path / "plant", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {row["status"] for row in rows} == {"ok"}
    assert set(rows[0]) == {"table", "file", "status", "rows", "message"}
    assert {row["table"] for row in rows} >= {"productRecords", "purchaseOrders", "moldInfo"}
