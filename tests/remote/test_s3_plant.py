"""A plant whose store (and inputs) live on a real S3-compatible server (moto's, on 127.0.0.1;
a bucket per test): the whole pipeline, the commands, crashes, retention and the lease
(docs/storage.md)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import obstore
import pytest
from pipelinetools import Clock, dpo, make_plant, run
from reliabilitytools import pause_env, release, wait_for
from storetools import published_hashes

from dpo.store.objects.client import open_store
from dpo.store.objects.lease import Lease

pytestmark = pytest.mark.usefixtures("s3_server")


def objects(url: str, prefix: str = "") -> dict[str, bytes]:
    store = open_store(url)
    return {meta["path"]: bytes(obstore.get(store, meta["path"]).bytes())
            for chunk in obstore.list(store, prefix=prefix or None) for meta in chunk}


def remote_annotations(url: str) -> dict[str, str]:
    return dict(json.loads(objects(url)["DataLoaderAgent/newest/path_annotations.json"]))


def newest_manifest(url: str) -> dict[str, Any]:
    found = objects(url, "_dpo/manifests/")
    return dict(json.loads(found[max(found)]))


def hashes(result: dict[str, Any]) -> dict[str, str]:
    return {t["table"]: t["content_hash"] for t in result["loader_result"]["details"]}


def assert_store_consistent(url: str) -> None:
    """The annotations object is the newest manifest's map, and every version object is one a
    kept manifest references (nothing a crash left behind)."""
    head = newest_manifest(url)
    assert remote_annotations(url) == {t: e["key"] for t, e in head["tables"].items()}
    referenced = {e["key"] for m in objects(url, "_dpo/manifests/").values()
                  for e in json.loads(m)["tables"].values()}
    assert set(objects(url, "DataLoaderAgent/versions/")) == referenced


def test_a_plant_storing_on_s3_publishes_what_a_local_run_publishes(
        tmp_path: Path, s3_url: str) -> None:
    local = make_plant(tmp_path / "local").root
    remote = make_plant(tmp_path / "remote").root
    clock = Clock()
    expected = hashes(run(local, clock=clock))
    result = run(remote, clock=clock, default_dir=s3_url)

    assert result["overall_status"] == "success"
    assert hashes(result) == expected == published_hashes(local)
    head = newest_manifest(s3_url)
    assert {t: e["content_hash"] for t, e in head["tables"].items()} == expected
    assert_store_consistent(s3_url)
    # results name the versions by URL; nothing of the store is written under the local root
    # but the local mirror and working files (.dpo-work)
    outputs = [t["output"] for t in result["loader_result"]["details"]]
    assert all(o.startswith(f"{s3_url}/DataLoaderAgent/versions/") for o in outputs), outputs
    assert not (remote / "agents").exists()
    # the reports are put beside the store, where the plant's people look
    assert len(result["reports"]) == 3
    shared = objects(s3_url, "DataPipelineOrchestrator/reports/")
    assert sorted(f"{s3_url}/{k}" for k in shared) == sorted(result["reports"])
    assert any(b"success" in body for body in shared.values())
    assert (remote / ".dpo-work").is_dir()

    health = dpo("health", "--root", remote, "--default-dir", s3_url)
    assert health.returncode == 0 and "healthy" in health.stdout, health.stdout + health.stderr
    assert f"{s3_url}/DataLoaderAgent/newest/path_annotations.json" in health.stdout.replace(
        "\n", "")

    again = run(remote, clock=clock, default_dir=s3_url)  # the no-change run
    assert again["loader_result"]["tables_created"] == 0
    assert len(objects(s3_url, "_dpo/manifests/")) == 1


def test_the_no_change_run_on_s3_downloads_no_object(
        tmp_path: Path, s3_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Fingerprints from listings and ETags: the server's own request log (moto runs in this
    process) shows listings and the lease's small puts, and no GET of any object."""
    root = make_plant(tmp_path).root
    run(root, default_dir=s3_url)
    caplog.set_level(logging.INFO, logger="werkzeug")
    caplog.clear()
    result = run(root, default_dir=s3_url)
    requests = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    gets = [m for m in requests if re.search(r'"GET /[^?" ]+/[^?" ]+ HTTP', m)]
    assert result["overall_status"] == "success"
    assert result["loader_result"]["tables_created"] == 0
    assert requests, "the server saw no request at all: is the store really remote?"
    assert [g for g in gets if "_dpo/lease.json" not in g] == []


def test_versions_rollback_hold_and_diff_on_s3_through_the_command(
        tmp_path: Path, s3_url: str) -> None:
    from pipelinetools import set_cell

    plant = make_plant(tmp_path)
    root = plant.root
    clock = Clock()
    run(root, clock=clock, default_dir=s3_url)
    first = newest_manifest(s3_url)["tables"]["purchaseOrders"]
    po = sorted((root / "database/dynamicDatabase").rglob("purchaseOrder*.xlsx"))[0]
    set_cell(po, 0, "itemQuantity", 99999)
    clock.advance(5)
    run(root, clock=clock, default_dir=s3_url)
    second = newest_manifest(s3_url)["tables"]["purchaseOrders"]
    assert second["key"] != first["key"]

    out = dpo("versions", "purchaseOrders", "--json", "--default-dir", s3_url, "--root", root)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [(v["version"], v["current"]) for v in listed] == [
        (first["version"], False), (second["version"], True)]
    assert listed[0]["path"] == f"{s3_url}/{first['key']}"

    diff = dpo("diff", "purchaseOrders", "--json", "--default-dir", s3_url, "--root", root)
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout)["columns_changed_rows"] == {"itemQuantity": 1}

    back = dpo("rollback", "purchaseOrders", "--to", first["version"], "--default-dir", s3_url,
               "--root", root)
    assert back.returncode == 0, back.stderr
    assert remote_annotations(s3_url)["purchaseOrders"] == first["key"]
    assert newest_manifest(s3_url)["kind"] == "rollback"
    assert "purchaseOrders" in json.loads(objects(s3_url)["DataLoaderAgent/holds.json"])

    # Another machine (a fresh local root, the same store) keeps the hold: it is on the store.
    other = make_plant(tmp_path / "other")
    set_cell(sorted((other.root / "database/dynamicDatabase").rglob("purchaseOrder*.xlsx"))[0],
             0, "itemQuantity", 99999)
    clock.advance(5)
    held = run(other.root, clock=clock, default_dir=s3_url)
    table = next(t for t in held["loader_result"]["details"] if t["table"] == "purchaseOrders")
    assert any(w["kind"] == "held" for w in table["warnings"]), table
    assert remote_annotations(s3_url)["purchaseOrders"] == first["key"]
    assert_store_consistent(s3_url)


@pytest.mark.parametrize("point", ["objstore:publish:write:purchaseOrders",
                                   "objstore:publish:manifest", "objstore:publish:annotations"])
def test_a_run_killed_at_each_commit_step_on_s3_is_repaired_by_the_next(
        tmp_path: Path, s3_url: str, point: str) -> None:
    root = make_plant(tmp_path).root
    killed = dpo("run", "--root", root, "--default-dir", s3_url,
                 env={"DPO_CRASH_AT": point}, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    written = objects(s3_url, "DataLoaderAgent/versions/")
    assert written  # the killed run had put version objects

    after = dpo("run", "--root", root, "--default-dir", s3_url, "--json", timeout=120)
    assert after.returncode == 0, after.stderr[-2000:]
    assert_store_consistent(s3_url)
    head = newest_manifest(s3_url)
    assert set(head["tables"]) == {t["table"] for t in json.loads(after.stdout)[
        "loader_result"]["details"]}
    if point.endswith("write:purchaseOrders"):  # never committed: repaired behind a fence
        kinds = [json.loads(m)["kind"] for m in objects(s3_url, "_dpo/manifests/").values()]
        assert kinds == ["repair", "publish"]
        assert not set(written) & {e["key"] for e in head["tables"].values()}
    else:  # committed before the kill: it stands, the next run has nothing to publish
        assert {e["key"] for e in head["tables"].values()} == set(written)


def test_retention_on_s3_keeps_the_last_keep_history_commits(tmp_path: Path,
                                                             s3_url: str) -> None:
    from pipelinetools import set_cell

    root = make_plant(tmp_path).root
    clock = Clock()
    po = sorted((root / "database/dynamicDatabase").rglob("purchaseOrder*.xlsx"))[0]
    for n in range(4):
        set_cell(po, 0, "itemQuantity", 1000 + n)
        clock.advance(5)
        assert run(root, clock=clock, default_dir=s3_url, keep_history=2)[
            "overall_status"] == "success"
    manifests = objects(s3_url, "_dpo/manifests/")
    assert [int(k.rsplit("/", 1)[1][:8]) for k in sorted(manifests)] == [3, 4]
    assert_store_consistent(s3_url)
    versions = objects(s3_url, "DataLoaderAgent/versions/purchaseOrders/")
    assert len(versions) == 2
    # the local copies of the versions retention deleted are gone with them
    from dpo.urls import local_mirror

    mirrored = local_mirror(root, f"{s3_url}/DataLoaderAgent/versions/purchaseOrders")
    assert sorted(p.name for p in mirrored.glob("*.parquet")) == sorted(
        k.rsplit("/", 1)[1] for k in versions)


def test_two_machines_one_run_holds_the_store_lease_the_other_exits_4(
        tmp_path: Path, s3_url: str) -> None:
    first = make_plant(tmp_path / "a").root
    second = make_plant(tmp_path / "b").root
    env = {**pause_env("objstore:publish:manifest", tmp_path / "pause"), "NO_COLOR": "1"}
    holder = subprocess.Popen([sys.executable, "-m", "dpo.cli", "run", "--root", str(first),
                               "--default-dir", s3_url], env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(tmp_path / "pause" / "paused", timeout=60)
        refused = dpo("run", "--root", second, "--default-dir", s3_url)
        assert refused.returncode == 4, refused.stderr
        assert "store lease" in refused.stderr and "host" in refused.stderr
    finally:
        release(tmp_path / "pause")
        holder.communicate(timeout=60)
    assert holder.returncode == 0
    assert dpo("run", "--root", second, "--default-dir", s3_url).returncode == 0


def test_the_lease_of_a_killed_run_is_taken_over_once_expired(tmp_path: Path,
                                                             s3_url: str) -> None:
    root = make_plant(tmp_path).root
    killed = dpo("run", "--root", root, "--default-dir", s3_url,
                 env={"DPO_CRASH_AT": "objstore:publish:manifest", "DPO_LEASE_TTL": "15"})
    assert killed.returncode == -9
    other = make_plant(tmp_path / "other").root  # another machine: no local lock in common
    clock = Lease(open_store(s3_url))  # reads the server's time
    left = clock.read()  # the killed run's lease: neither released nor renewed
    assert left is not None and not left.body["released"]
    # 15 s: long enough that the first attempt below normally ends inside it (and must then
    # have been refused), short enough to wait out.
    expires = left.last_modified + timedelta(seconds=15)
    end = time.monotonic() + 120
    while True:  # the other machine retries, as an operator (or a timer) would
        attempt = dpo("run", "--root", other, "--default-dir", s3_url,
                      env={"DPO_LEASE_TTL": "5"})
        ended = clock.server_now()
        if attempt.returncode != 4:
            break
        assert "store lease" in attempt.stderr, attempt.stderr
        assert time.monotonic() < end, "the expired lease was never taken over"
        time.sleep(0.5)
    # Taken over only once expired by the server's clock (an attempt that ended before
    # that was refused: the loop went on), and taken over indeed: it was not released.
    assert attempt.returncode == 0, attempt.stderr[-2000:]
    assert ended >= expires
    taken = Lease(open_store(s3_url)).read()
    assert taken is not None and taken.body["token"] != left.body["token"]
    assert_store_consistent(s3_url)


def test_storage_options_from_dpo_toml_reach_the_store_and_stay_secret(
        tmp_path: Path, s3_url: str, s3_server: str) -> None:
    """Endpoint and credentials only in `[dpo.storage_options]` (no AWS_* in the environment):
    the run reaches the server with them, and the secret is in no output, log or file."""
    root = make_plant(tmp_path).root
    secret = "plant-s3cr3t-9f27c1d0"
    (root / "dpo.toml").write_text(
        f'[dpo]\ndefault_dir = "{s3_url}"\n\n[dpo.storage_options]\n'
        f'endpoint = "{s3_server}"\naccess_key_id = "dpo-test-key"\n'
        f'secret_access_key = "{secret}"\nregion = "us-east-1"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-m", "dpo.cli", "run", "--root", str(root), "-v",
                           "--json"], env={**env, "NO_COLOR": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert newest_manifest(s3_url)["number"] == 1
    assert secret not in done.stdout + done.stderr
    written = [p for p in root.rglob("*") if p.is_file() and p.name != "dpo.toml"]
    assert written and not [p for p in written if secret.encode() in p.read_bytes()]
    assert not [k for k, v in objects(s3_url).items() if secret.encode() in v]


def test_a_run_killed_during_retention_on_s3_is_finished_by_the_next(
        tmp_path: Path, s3_url: str) -> None:
    from pipelinetools import set_cell

    root = make_plant(tmp_path).root
    settings = ("--root", root, "--default-dir", s3_url)
    assert dpo("run", *settings, env={"DPO_KEEP_HISTORY": "1"}).returncode == 0
    po = sorted((root / "database/dynamicDatabase").rglob("purchaseOrder*.xlsx"))[0]
    set_cell(po, 0, "itemQuantity", 4242)
    killed = dpo("run", *settings, env={"DPO_KEEP_HISTORY": "1",
                                        "DPO_CRASH_AT": "objstore:retention:manifest"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert len(objects(s3_url, "_dpo/manifests/")) == 1  # the old one deleted, then the kill
    leftover = set(objects(s3_url, "DataLoaderAgent/versions/"))

    after = dpo("run", *settings, env={"DPO_KEEP_HISTORY": "1"})
    assert after.returncode == 0, after.stderr[-2000:]
    assert_store_consistent(s3_url)
    kept = set(objects(s3_url, "DataLoaderAgent/versions/"))
    assert kept < leftover  # the versions only the deleted manifest referenced are gone
    # the repair deletes behind a fence: manifest 3 repeats manifest 2 (retention kept only it)
    manifests = {int(k[-13:-5]): json.loads(v) for k, v in objects(s3_url, "_dpo/manifests/").items()}
    assert sorted(manifests) == [3] and manifests[3]["kind"] == "repair"
    assert kept == {e["key"] for e in manifests[3]["tables"].values()}


def test_inputs_that_cannot_be_fetched_fail_the_run_naming_the_object(
        tmp_path: Path, s3_url: str) -> None:
    from uploadtools import upload_plant_inputs

    plant = make_plant(tmp_path / "plant")
    inputs = upload_plant_inputs(plant.root / "database", f"{s3_url}/inputs")
    machine = tmp_path / "machine"
    machine.mkdir()
    missing = {**inputs, "databaseSchemas_path": f"{s3_url}/inputs/nothing-here.json"}

    never_ran = run(machine, default_dir=f"{s3_url}/plant", **missing)
    assert never_ran["overall_status"] == "failed"
    assert not list(machine.rglob("runs.sqlite"))  # a plant that never ran: nothing recorded
    assert run(machine, default_dir=f"{s3_url}/plant", **inputs)["overall_status"] == "success"

    failed = run(machine, default_dir=f"{s3_url}/plant", **missing)
    assert failed["overall_status"] == "failed"
    error = failed["collector_result"]["errors"][0]
    assert error["error_type"] == "FILE_NOT_FOUND"
    assert "nothing-here.json" in error["message"]
    assert len(objects(s3_url, "plant/_dpo/manifests/")) == 1  # nothing published
    history = dpo("history", "--root", machine, "--default-dir", f"{s3_url}/plant", "--json")
    assert [r["overall_status"] for r in json.loads(history.stdout)][:2] == ["failed", "success"]
