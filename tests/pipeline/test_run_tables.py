"""Issue #19.10: a first run with empty source folders keeps the seed's decision (Phase 1
failed, nothing to roll back to: Phase 2 skipped) and says it in the plant engineer's words;
`dpo run --tables a,b` (the `tables` setting) runs only some tables. Real plants, real
`dpo` subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipelinetools import (
    ANNOTATIONS,
    MONTHLY,
    NEWEST,
    ORDERS,
    STATIC_TABLES,
    dpo,
    make_plant,
    orchestrator,
    set_cell,
)
from storetools import edit_static

MASTERS = ",".join(sorted(STATIC_TABLES))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_plant(tmp_path / "plant").root


def _empty_sources(root: Path) -> None:
    for folder in (MONTHLY, ORDERS):
        for path in (root / folder).iterdir():
            path.unlink()


def _stamps(root: Path) -> dict[str, str]:
    stored = json.loads((root / ANNOTATIONS).read_text(encoding="utf-8"))
    return {t: Path(p).name.split(f"_{t}")[0] for t, p in stored.items()}


def test_a_first_run_with_empty_source_folders_says_why_and_how_to_run_anyway(
        root: Path) -> None:
    _empty_sources(root)
    done = dpo("run", "--root", root, "--no-notify")

    assert done.returncode == 1, done.stderr  # the seed's decision: failed, nothing published
    assert not (root / ANNOTATIONS).exists()
    said = done.stdout
    assert ("productRecords, purchaseOrders failed in Phase 1 and have never been published "
            "(first run?), so there is nothing to roll back to") in said
    assert ("by the seed's rule (Phase 1 failed and nothing to roll back to: Phase 2 skipped) "
            "this run published nothing, not even the 6 master tables") in said
    assert ("No monthlyReports_*.xlsb files in database/dynamicDatabase/monthlyReports_history; "
            "no purchaseOrder_*.xlsx files in database/dynamicDatabase/purchaseOrders_history: "
            "put the exports there and run again") in said
    assert f"to publish the others now: dpo run --tables {MASTERS}" in said
    assert "rollback productRecords: FAILED — nothing to roll back to: no version of it has " \
           "been published yet (first run?)" in said
    final = next((root / NEWEST).glob("*_final_report.txt")).read_text(encoding="utf-8")
    assert f"dpo run --tables {MASTERS}" in final

    # the command it gives, as given, publishes the master tables
    command = said[said.index("dpo run --tables"):].split()[:4]
    again = dpo(*command[1:], "--root", root, "--no-notify", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(_stamps(root)) == sorted(STATIC_TABLES)
    assert json.loads(again.stdout)["loader_result"]["tables_created"] == 6


def test_run_tables_publishes_only_those_and_the_others_keep_their_versions(root: Path) -> None:
    assert dpo("run", "--root", root, "--no-notify").returncode == 0
    first = _stamps(root)
    edit_static(root, "moldInfo", "moldName", 0, "MOLD-RENAMED")
    set_cell(sorted((root / ORDERS).iterdir())[-1], 2, "itemQuantity", 4242)

    done = dpo("run", "--root", root, "--no-notify", "--json", "--tables", "moldInfo,itemInfo")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [d["table"] for d in result["loader_result"]["details"]] == ["itemInfo", "moldInfo"]
    assert result["collector_result"]["details"] == []
    now = _stamps(root)
    assert now["moldInfo"] != first["moldInfo"]
    assert {t: s for t, s in now.items() if t != "moldInfo"} == {
        t: s for t, s in first.items() if t != "moldInfo"}

    full = json.loads(dpo("run", "--root", root, "--no-notify", "--json").stdout)
    assert full["loader_result"]["tables_created"] == 1  # the order change, held back till now
    assert _stamps(root)["purchaseOrders"] != first["purchaseOrders"]
    assert _stamps(root)["moldInfo"] == now["moldInfo"]


def test_unknown_tables_are_refused_naming_the_known_ones_and_nothing_is_written(
        root: Path) -> None:
    done = dpo("run", "--root", root, "--tables", "moldInfo,itemInf")
    assert done.returncode == 2
    said = done.stderr.replace("\n", "")
    assert "--tables: unknown table(s) itemInf (did you mean itemInfo?); tables: " \
           "productRecords, purchaseOrders, itemCompositionSummary" in said
    assert "Traceback" not in done.stderr
    assert not (root / "agents").exists()


def test_the_python_api_takes_tables_as_a_setting(root: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    result = orchestrator(root, tables=["machineInfo"]).run_pipeline()
    assert result["overall_status"] == "success"
    assert list(_stamps(root)) == ["machineInfo"]
    monkeypatch.setenv("DPO_TABLES", "resinInfo, moldInfo")  # and from the environment
    orchestrator(root).run_pipeline()
    assert sorted(_stamps(root)) == ["machineInfo", "moldInfo", "resinInfo"]
