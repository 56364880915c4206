"""A small real plant for the data checks: the focused `records` table (real .xlsx files) and
a master table `codes`, and running it through the real orchestrator."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conftest import dynamic_entry, good_row, write_schema, write_source
from pipelinetools import Clock, run

from dpo.demo.plant import write_xlsx

CODES = Path("database") / "staticDatabase" / "codes.xlsx"
CHECKS = Path("database") / "dataChecks.toml"


def records_plant(root: Path, files: dict[str, Sequence[Sequence[object]]],
                  codes: Sequence[str] | None = None) -> Path:
    """`records` from `files` ({name: rows}, rows as conftest.good_row makes them) and
    `codes` (itemCode, itemName), by default every code the files use."""
    write_schema(root, tables={"records": dynamic_entry()}, static={
        "codes": {"path": str(CODES), "dtypes": {"itemCode": "string", "itemName": "string"}}})
    for name, rows in files.items():
        write_source(root, name, rows)
    if codes is None:
        codes = sorted({str(r[2]) for rows in files.values() for r in rows if r[2] is not None})
    write_codes(root, codes)
    return root


def write_codes(root: Path, codes: Sequence[str]) -> None:
    (root / CODES).parent.mkdir(parents=True, exist_ok=True)
    write_xlsx(root / CODES, "Sheet1", ["itemCode", "itemName"],
               [[c, f"name of {c}"] for c in codes])


def rows(start: int, count: int, **changes: dict[int, Any]) -> list[list[object]]:
    """good_row(start) .. good_row(start + count - 1); `changes[column][i]` sets a cell of the
    i-th row (columns by SOURCE_HEADER index name: date, shift, code, quantity, weight,
    resin)."""
    index = {"date": 0, "shift": 1, "code": 2, "quantity": 3, "weight": 4, "resin": 5}
    made = [good_row(start + i) for i in range(count)]
    for column, cells in changes.items():
        for i, value in cells.items():
            made[i][index[column]] = value
    return made


def write_checks(root: Path, text: str) -> Path:
    path = root / CHECKS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run_plant(root: Path, clock: Clock | None = None, **settings: Any) -> dict[str, Any]:
    return run(root, clock=clock or Clock(), **settings)


def checks_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["loader_result"]["checks"]}


def failing(check: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(file, sheet, Excel row) of a check's examples."""
    return [(e["file"], e["sheet"], e["row"]) for e in check["examples"]]
