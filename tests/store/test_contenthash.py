"""The content hash: over row hashes now ("r2:..."), and the legacy one older dpo versions
recorded in every Parquet file they wrote. Those files must still verify, list and roll
back; and upgrading must not make unchanged data look changed (no rewrite, no republish).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from arrowtools import rechunked, small_table
from storetools import (
    Clock,
    loader_dir,
    paths_of,
    phase1_file,
    plant_root,
    rename_value,
    run_both,
    store_of,
    tamper_keep_hash,
    tree_state,
)

from dpo.demo.plant import write_monthly_report
from dpo.errors import IntegrityError
from dpo.tables.contenthash import content_hash, content_hash_of, legacy_content_hash
from dpo.tables.meta import HASH_PREFIX, META_HASH
from dpo.tables.parquet import read_verified, recorded_hash, write_parquet
from dpo.transform.rowhash import row_hashes

MONTHLY = "database/dynamicDatabase/monthlyReports_history"


def as_written_by_older_dpo(path: Path) -> str:
    """Rewrite a dpo Parquet file with the same data but the legacy hash; return it."""
    table = pq.read_table(path)
    legacy = legacy_content_hash(table)
    write_parquet(path, table, {META_HASH: legacy.encode()}, point="test")
    return legacy


def outputs(root: Path) -> list[dict[str, tuple[bytes, int]]]:
    """Phase 1's outputs and the whole store, bytes and mtimes."""
    return [tree_state(phase1_file(root, "productRecords").parent), tree_state(loader_dir(root))]


def test_content_hash_is_of_schema_and_row_hashes() -> None:
    table = small_table()
    digest = content_hash(table)
    assert digest == "r2:3b3c25920060aa76267270e00dd82c1028e2b9a5"  # pinned, as the row hashes
    assert digest.startswith(HASH_PREFIX)
    assert content_hash_of(table.schema, row_hashes(table)) == digest
    assert content_hash(rechunked(table, [1, 1, 3])) == digest


@pytest.mark.parametrize("change", ["value", "order", "name", "type", "rows"])
def test_content_hash_sees_values_order_names_types_and_rows(change: str) -> None:
    table = small_table()
    if change == "value":
        other = table.set_column(1, "qty", pa.array([1, 0, None, -5, 2**40 + 1], pa.int64()))
    elif change == "order":
        other = table.take([1, 0, 2, 3, 4])
    elif change == "name":
        other = table.rename_columns(["code", "qty", "weight", "when", "okay"])
    elif change == "type":
        other = table.set_column(2, "weight", table.column("weight").cast(pa.float32()))
        assert row_hashes(other).tolist() == row_hashes(table).tolist()  # same values
    else:
        other = table.slice(0, 4)
    assert content_hash(other) != content_hash(table)


def test_a_file_with_a_legacy_hash_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "old.parquet"
    write_parquet(path, small_table(), {}, point="test")
    assert recorded_hash(path) == content_hash(small_table())
    legacy = as_written_by_older_dpo(path)
    assert recorded_hash(path) == legacy and not legacy.startswith(HASH_PREFIX)
    assert read_verified(path).num_rows == 5
    tamper_keep_hash(path, "code")
    with pytest.raises(IntegrityError):
        read_verified(path)


def test_an_unknown_hash_format_does_not_verify(tmp_path: Path) -> None:
    path = tmp_path / "future.parquet"
    future = "r9:" + content_hash(small_table()).split(":", 1)[1]
    write_parquet(path, small_table(), {META_HASH: future.encode()}, point="test")
    with pytest.raises(IntegrityError):
        read_verified(path)


def test_store_written_by_an_older_dpo_verifies_lists_and_rolls_back(tmp_path: Path) -> None:
    root, clock = plant_root(tmp_path / "plant"), Clock()
    run_both(root, clock=clock)
    store = store_of(root)
    old = store.list_versions("itemInfo")[0]
    legacy = as_written_by_older_dpo(old.path)
    [listed] = store.list_versions("itemInfo")
    assert listed.content_hash == legacy
    read_verified(listed.path)
    clock.advance()
    rename_value(root, "itemInfo", "itemName", row=0, suffix=" v2")
    run_both(root, clock=clock)
    versions = store.list_versions("itemInfo")
    assert [v.content_hash for v in versions] == [legacy, store.current_hash("itemInfo")]
    assert str(versions[1].content_hash).startswith(HASH_PREFIX)
    store.rollback({"itemInfo": old.stamp})  # proves the legacy hash first
    assert store.current_hash("itemInfo") == legacy
    read_verified(store.current_path("itemInfo"))  # type: ignore[arg-type]


def test_upgrading_does_not_rewrite_or_republish_unchanged_tables(tmp_path: Path) -> None:
    root, clock = plant_root(tmp_path / "plant"), Clock()
    run_both(root, clock=clock)
    # The state an older dpo leaves: legacy hashes everywhere, a cache this dpo cannot use.
    for path in sorted((loader_dir(root) / "newest").glob("*.parquet")):
        as_written_by_older_dpo(path)
    for table in ("productRecords", "purchaseOrders"):
        as_written_by_older_dpo(phase1_file(root, table))
    shutil.rmtree(paths_of(root).cache_dir / "collect")
    before = outputs(root)
    clock.advance()
    collected, loaded = run_both(root, clock=clock)
    assert collected.status == loaded.status == "success"
    assert not collected.data_updated and loaded.tables_created == 0
    assert outputs(root) == before  # not a byte, not an mtime
    # A real change then writes the new hash, and publishes.
    month = sorted((root / MONTHLY).glob("*.xlsb"))[0]
    write_monthly_report(month, month="2018-11", n_rows=50, seed=77)
    clock.advance()
    collected, loaded = run_both(root, clock=clock)
    assert collected.data_updated and loaded.tables_created == 1
    assert str(recorded_hash(phase1_file(root, "productRecords"))).startswith(HASH_PREFIX)
    read_verified(phase1_file(root, "productRecords"))
