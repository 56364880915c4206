"""The seed's Python API on a plant whose `default_dir` is a URL, on a real S3-compatible server
(moto's, on 127.0.0.1; a bucket per test): `DataLoaderAgent` alone opens the object store with
its lease, as the `dpo` command does, never a local store in the mirror folder."""

from __future__ import annotations

import json
from pathlib import Path

import obstore
import pytest
from pipelinetools import make_plant

from dpo import DataCollector, DataLoaderAgent
from dpo.config import Paths, load_settings, resolve_paths
from dpo.errors import PipelineLocked
from dpo.store.objects.client import open_store
from dpo.store.objects.lease import LEASE, Lease

pytestmark = pytest.mark.usefixtures("s3_server")


def remote_plant(root: Path, url: str) -> Paths:
    make_plant(root, months=2, rows_per_month=20, seed=3)
    return resolve_paths(load_settings(root_dir=str(root), default_dir=url))


def keys(url: str, prefix: str) -> list[str]:
    return sorted(m["path"] for chunk in obstore.list(open_store(url), prefix=prefix)
                  for m in chunk)


def test_the_loader_alone_publishes_to_the_object_store_under_the_lease(
        tmp_path: Path, s3_url: str) -> None:
    paths = remote_plant(tmp_path / "plant", s3_url)
    assert DataCollector(paths, max_retries=0, retry_wait=0.01).process_all_data() \
        .status.value == "success"
    loader = DataLoaderAgent(paths, max_retries=0, retry_wait=0.01)
    result = loader.process_all_data()

    assert result.status.value == "success" and result.tables_created == len(result.tables)
    assert keys(s3_url, "_dpo/manifests/") == ["_dpo/manifests/00000001.json"]
    published = json.loads(bytes(obstore.get(
        open_store(s3_url), "DataLoaderAgent/newest/path_annotations.json").bytes()))
    assert sorted(published) == sorted(t.table for t in result.tables)
    assert all(t.output and t.output.startswith(f"{s3_url}/DataLoaderAgent/versions/")
               for t in result.tables)
    # Nothing went to a local store in the mirror folder, and the lease was taken and let go.
    assert not (paths.loader_dir / "newest").exists()
    lease = json.loads(bytes(obstore.get(open_store(s3_url), LEASE).bytes()))
    assert lease["released"] is True

    again = DataLoaderAgent(paths, max_retries=0, retry_wait=0.01).process_all_data()
    assert again.tables_created == 0  # what the store holds, compared: nothing to publish
    assert keys(s3_url, "_dpo/manifests/") == ["_dpo/manifests/00000001.json"]


def test_the_loader_alone_waits_for_no_one_else_s_lease(tmp_path: Path, s3_url: str) -> None:
    paths = remote_plant(tmp_path / "plant", s3_url)
    DataCollector(paths, max_retries=0, retry_wait=0.01).process_all_data()
    other = Lease(open_store(s3_url), ttl=600)  # another machine's run, holding the store
    other.acquire()
    with pytest.raises(PipelineLocked, match="another dpo run holds the store lease"):
        DataLoaderAgent(paths, max_retries=0, retry_wait=0.01).process_all_data()
    assert keys(s3_url, "_dpo/manifests/") == []
    other.release()
