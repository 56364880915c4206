"""The real sample plant with EVERY path on a real S3 server (moto's, 127.0.0.1): sources,
schema, master files and the store. It publishes what a local run of the same files publishes;
the next run is the no-change run (the mirror kept dpo's fingerprints); a new export on the
bucket is the one file downloaded and read."""

from __future__ import annotations

import shutil
from pathlib import Path

import obstore
from conftest import SAMPLES, skip_or_fail
from pipelinetools import Clock, run
from uploadtools import upload_plant_inputs

from dpo.store.objects.client import open_store


def hashes(result: dict[str, object]) -> dict[str, str]:
    details = result["loader_result"]["details"]  # type: ignore[index]
    return {t["table"]: t["content_hash"] for t in details}


def test_the_sample_plant_with_every_path_on_s3_publishes_what_a_local_run_publishes(
        s3_url: str, tmp_path: Path) -> None:
    if not SAMPLES.is_dir():
        skip_or_fail(f"the sample plant is not at {SAMPLES}")
    local = tmp_path / "local"
    shutil.copytree(SAMPLES, local / "database")
    clock = Clock()
    expected = run(local, clock=clock)
    assert expected["overall_status"] == "success"

    inputs = upload_plant_inputs(local / "database", f"{s3_url}/inputs")
    remote = tmp_path / "machine"  # a machine with nothing of the plant on its disk
    remote.mkdir()
    settings = {**inputs, "default_dir": f"{s3_url}/plant"}
    first = run(remote, clock=clock, **settings)
    assert first["overall_status"] == "success", first
    assert hashes(first) == hashes(expected)
    # the same warnings (the #REF! cells of moldInfo), naming the master file by its URL
    assert first["warnings"] == expected["warnings"]
    mold = next(t for t in first["loader_result"]["details"] if t["table"] == "moldInfo")
    assert mold["files"] == [f"{s3_url}/inputs/static/moldInfo.xlsx"]

    again = run(remote, clock=clock.at(6, 5), **settings)
    assert again["overall_status"] == "success"
    assert again["collector_result"]["data_updated"] is False
    assert again["loader_result"]["tables_created"] == 0

    store = open_store(f"{s3_url}/inputs")
    orders = local / "database/dynamicDatabase/purchaseOrders_history"
    obstore.put(store, "dynamicDatabase/purchaseOrders_history/purchaseOrder_181201.xlsx",
                (orders / "purchaseOrder_181101.xlsx").read_bytes())
    third = run(remote, clock=clock.at(6, 10), **settings)
    assert third["overall_status"] == "success"
    # the new export is read (its rows repeat 181101's, so they are duplicates, not news)
    assert third["collector_result"]["files_processed"] == 4


def test_validate_checks_inputs_on_s3_as_a_run_would(s3_url: str, tmp_path: Path) -> None:
    from pipelinetools import dpo

    if not SAMPLES.is_dir():
        skip_or_fail(f"the sample plant is not at {SAMPLES}")
    shutil.copytree(SAMPLES, tmp_path / "plant" / "database")
    inputs = upload_plant_inputs(tmp_path / "plant" / "database", f"{s3_url}/inputs")
    machine = tmp_path / "machine"
    machine.mkdir()
    done = dpo("validate", "--root", machine, "--schema", inputs["databaseSchemas_path"],
               "--source-dir", inputs["dynamic_db_source_dir"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "moldInfo" in done.stdout and "#REF!" in done.stdout
