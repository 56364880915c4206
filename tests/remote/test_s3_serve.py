"""`dpo serve` on a plant whose inputs and store are on a real S3 server (moto's, 127.0.0.1):
it fetches the schema to start, runs, publishes to the bucket, holds and releases the store's
lease, and says that a bucket is not watched (its changes come with --schedule runs)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from pipelinetools import make_plant
from servetools import serve
from uploadtools import upload_plant_inputs

from dpo.store.objects.client import open_store
from dpo.store.objects.lease import LEASE


def test_serve_runs_a_plant_whose_inputs_and_store_are_on_s3(tmp_path: Path,
                                                             s3_url: str) -> None:
    import obstore

    plant = make_plant(tmp_path / "plant")
    inputs = upload_plant_inputs(plant.root / "database", f"{s3_url}/inputs")
    machine = tmp_path / "machine"
    machine.mkdir()
    with serve(machine, "--default-dir", f"{s3_url}/plant", "--source-dir",
               inputs["dynamic_db_source_dir"], "--schema", inputs["databaseSchemas_path"],
               "--no-notify") as served:
        state = served.idle_after(1)
        assert state["last_run"]["outcome"] == "success", served.log()
        assert served.health()["service_status"] == "healthy", served.health()
        assert "not watched" in served.log()
        store = open_store(f"{s3_url}/plant")
        manifests = [m["path"] for chunk in obstore.list(store, prefix="_dpo/manifests/")
                     for m in chunk]
        assert len(manifests) == 1
        assert served.stop(signal.SIGTERM) == 0
    lease = json.loads(bytes(obstore.get(store, LEASE).bytes()))
    assert lease["released"] is True  # the service's runs gave the lease back
