"""Issue #19.4: `dpo.open_table`, the consumer's one way to read the current (or a named)
version of a table, hash-verified, the same call for a store on disk and on object storage
(moto's S3 server on 127.0.0.1). Real plants, real runs, real Parquet."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipelinetools import ORDERS, Clock, make_plant, run, set_cell
from storetools import annotations, current_file, tamper_keep_hash

import dpo
from dpo.errors import ConfigError, IntegrityError
from dpo.schema import load_schema
from dpo.store.objects.client import open_store
from dpo.tables.parquet import read_verified


def _two_versions(root: Path, **settings: str) -> Clock:
    """purchaseOrders published at 06:00 and, with one changed quantity, at 06:05."""
    clock = Clock(datetime(2024, 5, 2, 6, 0))
    run(root, clock=clock, **settings)
    set_cell(sorted((root / ORDERS).iterdir())[-1], 2, "itemQuantity", 4242)
    run(root, clock=clock.at(6, 5), **settings)
    return clock


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_plant(tmp_path / "plant").root


def test_the_current_version_is_the_published_file_with_the_schemas_dtypes(root: Path) -> None:
    run(root)
    for table in annotations(root):
        got = dpo.open_table(table, root=root)
        assert got.equals(read_verified(current_file(root, table)))
    orders = dpo.open_table("purchaseOrders", root=root).to_pandas()
    spec = load_schema(root / "database/databaseSchemas.json", root).table("purchaseOrders")
    assert {c: str(t) for c, t in orders.dtypes.items()} == dict(spec.dtypes)


def test_a_version_by_name_and_the_current_one(root: Path) -> None:
    _two_versions(root)
    first = dpo.open_table("purchaseOrders", root=root, version="20240502_0600")
    now = dpo.open_table("purchaseOrders", root=root)
    assert 4242 not in first.column("itemQuantity").to_pylist()
    assert 4242 in now.column("itemQuantity").to_pylist()
    assert now.equals(dpo.open_table("purchaseOrders", root=root, version="20240502_0605"))

    with pytest.raises(ConfigError, match="no version 20240502_0700 of purchaseOrders; "
                                          "versions: 20240502_0600, 20240502_0605"):
        dpo.open_table("purchaseOrders", root=root, version="20240502_0700")
    with pytest.raises(ConfigError, match="unknown table 'purchaseOrder' \\(did you mean "
                                          "'purchaseOrders'\\?\\)"):
        dpo.open_table("purchaseOrder", root=root)


def test_a_damaged_version_is_refused_naming_the_file(root: Path) -> None:
    run(root)
    damaged = current_file(root, "purchaseOrders")
    tamper_keep_hash(damaged, "poNo")  # one value changed, the recorded hash kept

    with pytest.raises(IntegrityError) as caught:
        dpo.open_table("purchaseOrders", root=root)
    assert str(damaged) in caught.value.message
    assert "does not match its recorded hash" in caught.value.message
    dpo.open_table("moldInfo", root=root)  # the others still read


def test_columns_and_filters_as_parquet_takes_them(root: Path) -> None:
    run(root)
    whole = read_verified(current_file(root, "purchaseOrders")).to_pylist()
    limit = sorted(r["itemQuantity"] for r in whole)[len(whole) // 2]

    got = dpo.open_table("purchaseOrders", root=root, columns=["poNo", "itemQuantity"],
                         filters=[("itemQuantity", ">", limit)])
    assert got.column_names == ["poNo", "itemQuantity"]
    assert got.to_pylist() == [{"poNo": r["poNo"], "itemQuantity": r["itemQuantity"]}
                               for r in whole if r["itemQuantity"] > limit]
    # a filter on a column that is not kept, OR of two conditions; pandas dtypes still right
    first, last = whole[0]["poNo"], whole[-1]["poNo"]
    either = dpo.open_table("purchaseOrders", root=root, columns=["itemQuantity"],
                            filters=[[("poNo", "=", first)], [("poNo", "=", last)]])
    assert either.num_rows == 2
    assert str(either.to_pandas()["itemQuantity"].dtype) == "Int64"

    with pytest.raises(ConfigError, match="purchaseOrders has no column poNumber; columns: "
                                          "poReceivedDate, poNo,"):
        dpo.open_table("purchaseOrders", root=root, columns=["poNumber"])
    with pytest.raises(ConfigError, match=r"filters .* on purchaseOrders: .*columns: "):
        dpo.open_table("purchaseOrders", root=root, filters=[("poNumber", "=", "x")])


def test_settings_come_from_dpo_toml_and_the_environment_as_for_a_run(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes = "published/store/DataLoaderAgent/newest/path_annotations.json"
    (root / "dpo.toml").write_text(f'[dpo]\ndefault_dir = "published/store"\n'
                                   f'annotation_path = "{notes}"\n', encoding="utf-8")
    run(root)
    stored = json.loads((root / notes).read_text(encoding="utf-8"))
    expected = read_verified(root / stored["moldInfo"])
    assert dpo.open_table("moldInfo", root=root).equals(expected)
    monkeypatch.chdir(root)  # root: the current directory, as for `dpo run`
    assert dpo.open_table("moldInfo").equals(expected)
    monkeypatch.setenv("DPO_DEFAULT_DIR", "elsewhere")  # the environment beats the file
    monkeypatch.setenv("DPO_ANNOTATION_PATH", "elsewhere/path_annotations.json")
    with pytest.raises(ConfigError, match="no version of moldInfo is published yet"):
        dpo.open_table("moldInfo")
    assert dpo.open_table("moldInfo", default_dir="published/store",  # arguments beat both
                          annotation_path=notes).equals(expected)


def test_a_folder_that_holds_no_plant_is_refused_and_left_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no plant at"):
        dpo.open_table("moldInfo", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- the same call on object storage -----------------------------------------------------------

@pytest.mark.usefixtures("s3_server")
def test_the_same_call_reads_a_store_on_s3(tmp_path: Path, s3_url: str) -> None:
    plant = make_plant(tmp_path / "plant").root
    _two_versions(plant, default_dir=s3_url)
    local = make_plant(tmp_path / "local").root
    _two_versions(local)
    consumer = tmp_path / "consumer"  # another machine: only the store's URL in its dpo.toml
    consumer.mkdir()
    (consumer / "dpo.toml").write_text(f'[dpo]\ndefault_dir = "{s3_url}"\n', encoding="utf-8")

    for table in annotations(local):
        assert dpo.open_table(table, root=consumer).equals(
            dpo.open_table(table, root=local)), table
    old = dpo.open_table("purchaseOrders", root=consumer, version="20240502_0600")
    assert old.equals(dpo.open_table("purchaseOrders", root=local, version="20240502_0600"))
    assert dpo.open_table("moldInfo", root=tmp_path / "plant", default_dir=s3_url,
                          columns=["moldNo"]).column_names == ["moldNo"]


@pytest.mark.usefixtures("s3_server")
def test_a_damaged_object_on_s3_is_refused_naming_it(tmp_path: Path, s3_url: str) -> None:
    plant = make_plant(tmp_path / "plant").root
    run(plant, default_dir=s3_url)
    store = open_store(s3_url)
    key = json.loads(bytes(obstore.get(store, "DataLoaderAgent/newest/path_annotations.json")
                           .bytes()))["purchaseOrders"]
    original = tmp_path / "original.parquet"
    original.write_bytes(bytes(obstore.get(store, key).bytes()))
    tamper_keep_hash(original, "poNo")
    obstore.put(store, key, original.read_bytes())
    consumer = tmp_path / "consumer"
    consumer.mkdir()

    with pytest.raises(IntegrityError) as caught:
        dpo.open_table("purchaseOrders", root=consumer, default_dir=s3_url)
    assert f"{s3_url}/{key}" in caught.value.message
    assert "does not match its recorded hash" in caught.value.message
    assert isinstance(dpo.open_table("moldInfo", root=consumer, default_dir=s3_url), pa.Table)
    assert pq.ParquetFile(original).metadata.num_rows > 0
