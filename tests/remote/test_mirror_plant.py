"""The real sample plant's inputs on a real S3 server (moto's, 127.0.0.1), mirrored into a
local root and run by dpo: after a no-op mirror the run finds nothing changed (the mirror kept
dpo's fingerprints); after one new object only it is downloaded and it is collected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import obstore
from conftest import SAMPLES, make_paths, skip_or_fail
from pipelinetools import Clock, run

from dpo.pipeline.nochange import unchanged_run
from dpo.remote.mirror import mirror_object, mirror_prefix
from dpo.schema import load_schema
from dpo.store.manifests import open_store

DYNAMIC = ("monthlyReports_history", "purchaseOrders_history")


def upload_plant(store: Any) -> None:
    for path in sorted(SAMPLES.rglob("*")):
        if path.is_file():
            obstore.put(store, f"plant/{path.relative_to(SAMPLES).as_posix()}", path.read_bytes())


def no_change(root: Path) -> bool:
    """Whether dpo would take its no-change run (`dpo.pipeline.nochange`) on `root`."""
    paths = make_paths(root)
    return unchanged_run(paths, load_schema(paths.schema_path, paths.root)) is not None


def mirror_plant(store: Any, root: Path) -> tuple[int, int]:
    """The schema, the master files and the source folders into `root/database`, as the
    wiring will do; (objects downloaded, objects unchanged)."""
    db = root / "database"
    got = int(mirror_object(store, "plant/databaseSchemas.json", db / "databaseSchemas.json"))
    same = 1 - got
    for folder in ("staticDatabase", *(f"dynamicDatabase/{d}" for d in DYNAMIC)):
        done = mirror_prefix(store, f"plant/{folder}", db / folder)
        got += len(done.downloaded)
        same += done.unchanged
    return got, same


def test_a_plant_mirrored_from_s3_runs_and_a_no_op_mirror_is_a_no_change_run(
        s3_url: str, tmp_path: Path) -> None:
    if not SAMPLES.is_dir():
        skip_or_fail(f"the sample plant is not at {SAMPLES}")
    store = open_store(s3_url)
    upload_plant(store)
    files = sum(1 for p in SAMPLES.rglob("*") if p.is_file())
    root = tmp_path / "root"
    clock = Clock()

    assert mirror_plant(store, root) == (files, 0)
    first = run(root, clock=clock)
    assert first["overall_status"] == "success", first
    assert first["loader_result"]["tables_created"] > 0

    assert mirror_plant(store, root) == (0, files)
    assert no_change(root)  # dpo's own decision, from its fingerprints of the local copies
    again = run(root, clock=clock.at(6, 5))
    assert again["overall_status"] == "success"
    assert again["collector_result"]["data_updated"] is False
    assert again["loader_result"]["tables_created"] == 0

    orders = SAMPLES / "dynamicDatabase" / "purchaseOrders_history"
    obstore.put(store, "plant/dynamicDatabase/purchaseOrders_history/purchaseOrder_181201.xlsx",
                (orders / "purchaseOrder_181101.xlsx").read_bytes())
    assert mirror_plant(store, root) == (1, files)
    assert not no_change(root)
    third = run(root, clock=clock.at(6, 10))
    assert third["overall_status"] == "success"
    # the new export is read (its rows repeat 181101's, so they are duplicates, not news)
    assert third["collector_result"]["files_processed"] == 4
