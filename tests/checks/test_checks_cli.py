"""`dpo check` as a real subprocess: exit 0 when everything passes or only warns, 1 when a
fail-severity check fails, 2 for a bad checks file or an unknown table; and a no-change run
with checks imports no data library."""

from __future__ import annotations

import json
from pathlib import Path

from checktools import records_plant, rows, write_checks
from pipelinetools import dpo, every_file
from test_import_weight import probe

A = "records_201811.xlsx"
WARN_AND_FAIL = """
[[check]]
table = "records"
name = "small"
rule = "quantity < {limit}"
severity = "{severity}"

[[check]]
table = "records"
column = "itemCode"
references = "codes.itemCode"
"""


def test_dpo_check_exit_codes_and_json(tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 5, quantity={2: 5000})})
    assert dpo("run", "--root", root, "--no-notify").returncode == 0  # no checks yet
    missing = dpo("check", "--root", root)
    assert missing.returncode == 2 and "no checks" in missing.stderr
    write_checks(root, WARN_AND_FAIL.format(limit=100000, severity="fail"))
    passed = dpo("check", "--root", root, "--json")
    assert passed.returncode == 0, passed.stderr
    assert [c["status"] for c in json.loads(passed.stdout)["checks"]] == ["passed", "passed"]
    write_checks(root, WARN_AND_FAIL.format(limit=1000, severity="warn"))
    warned = dpo("check", "--root", root, "--json")
    assert warned.returncode == 0
    data = json.loads(warned.stdout)
    assert data["status"] == "warning"
    (example,) = data["checks"][0]["examples"]
    assert example == {"file": A, "sheet": "Sheet1", "row": 4, "values": {"quantity": 5000}}
    write_checks(root, WARN_AND_FAIL.format(limit=1000, severity="fail"))
    before = {p: p.read_bytes() for p in every_file(root)}
    failed = dpo("check", "--root", root)
    assert {p: p.read_bytes() for p in every_file(root)} == before  # writes nothing
    assert failed.returncode == 1
    assert "FAILED records: small" in failed.stdout and f"{A} [Sheet1] row 4" in failed.stdout
    only = dpo("check", "codes", "--root", root, "--json")
    assert only.returncode == 0 and json.loads(only.stdout)["checks"] == []
    unknown = dpo("check", "recrods", "--root", root)
    assert unknown.returncode == 2 and "unknown table(s) recrods" in unknown.stderr


def test_a_no_change_run_with_checks_runs_none_and_imports_no_data_library(
        tmp_path: Path) -> None:
    root = records_plant(tmp_path, {A: rows(0, 5)})
    write_checks(root, WARN_AND_FAIL.format(limit=100000, severity="fail"))
    first = probe("run", "--root", root, "--no-notify")
    assert first["code"] == 0 and "pyarrow" in first["heavy"]
    assert probe("run", "--root", root, "--no-notify") == {"code": 0, "heavy": []}


def test_an_api_run_whose_checks_fail_imports_no_pandas(tmp_path: Path) -> None:
    """Checks that fail: rows located in the sources again, dates in the examples, a
    quarantine written; all without pandas (pyarrow asks for it on some calls)."""
    from test_import_weight import api_run

    from dpo.demo.plant import generate_plant

    plant = generate_plant(tmp_path / "plant", months=2, rows_per_month=40, po_files=2, seed=6)
    write_checks(plant.root, """
[[check]]
table = "productRecords"
rule = "recordDate >= '2018-11-15' AND itemGoodQuantity < itemTotalQuantity - 100"

[[check]]
table = "productRecords"
column = "workingShift"
accepted_values = ["1", "2"]
severity = "quarantine"

[[check]]
table = "productRecords"
column = "moldNo"
references = "moldInfo.moldNo"
""")
    found = api_run(plant.root, "alone")
    assert found["status"] == "success" and found["pandas_in_run"] is False
    assert (plant.root / "agents/shared_db/dynamicDatabase/quarantine/"
            "productRecords.checks.parquet").is_file()
