"""The versioned store of Phase 2: change detection, stamps, history, recovery, rollback.

Every test runs the real Phase 1 + Phase 2 on a small synthetic plant written as real Excel
files (dpo.demo.plant) and inspects what landed on disk under DataLoaderAgent/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from storetools import (
    STAMP_RE,
    STATIC,
    TABLES,
    Clock,
    annotations,
    annotations_file,
    assert_consistent,
    change_log,
    current_file,
    flip_bytes,
    history_dir,
    history_names,
    loader_dir,
    newest_dir,
    phase1_file,
    plant_root,
    published_hashes,
    read_static,
    rename_value,
    run_both,
    static_path,
    store_of,
    tamper_keep_hash,
    temp_files,
    tree_state,
)

from dpo.demo.plant import write_xlsx
from dpo.errors import DpoError, ErrorType, IntegrityError
from dpo.fsio import TMP_MARK
from dpo.tables.contenthash import content_hash
from dpo.tables.parquet import read_verified


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    """A small plant, published once at the clock's first minute."""
    root = plant_root(tmp_path / "plant")
    return root


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def published(plant: Path, clock: Clock) -> Path:
    collected, loaded = run_both(plant, clock=clock)
    assert collected.status == "success"
    assert loaded.status == "success"
    assert loaded.tables_created == len(TABLES)
    return plant


# -- nothing changed ---------------------------------------------------------------------------
def test_first_run_publishes_every_table_under_one_stamp(published: Path, clock: Clock) -> None:
    names = {Path(p).name for p in annotations(published).values()}
    assert names == {f"{clock.stamp}_{t}.parquet" for t in TABLES}
    hashes = assert_consistent(published)
    assert set(hashes) == set(TABLES)
    assert not history_dir(published).exists() or not any(history_dir(published).iterdir())
    log = change_log(published).read_text(encoding="utf-8")
    assert log.count(f"publish {clock.stamp}") == 1
    for table in TABLES:
        assert f"{clock.stamp}_{table}.parquet" in log


def test_second_run_with_nothing_changed_writes_and_moves_nothing(
    published: Path, clock: Clock
) -> None:
    before = tree_state(loader_dir(published))
    phase1_before = {t: phase1_file(published, t).stat().st_mtime_ns for t in ("productRecords",
                                                                           "purchaseOrders")}
    clock.advance(5)  # a later minute: a write would get a new name
    collected, loaded = run_both(published, clock=clock)
    assert collected.status == "success" and not collected.data_updated
    assert loaded.status == "success"
    assert loaded.tables_created == 0 and loaded.tables_changed == 0
    assert loaded.files_moved == () and loaded.healing_actions == ()
    assert tree_state(loader_dir(published)) == before  # bytes, mtimes, names, change_log
    assert {t: phase1_file(published, t).stat().st_mtime_ns for t in phase1_before} == phase1_before


def test_rewriting_a_source_with_identical_values_is_not_a_change(
    published: Path, clock: Clock
) -> None:
    """Change detection is by content, not by file bytes or modification time."""
    def published_state() -> object:  # versions, history, change log (not internal caches)
        return (tree_state(newest_dir(published)), tree_state(loader_dir(published) / "historical_db"),
                change_log(published).read_bytes())

    before = published_state()
    for table in STATIC:
        sheet, header, rows = read_static(published, table)
        write_xlsx(static_path(published, table), sheet, header, rows)
    clock.advance()
    _, loaded = run_both(published, clock=clock)
    assert loaded.status == "success" and loaded.tables_created == 0
    assert loaded.tables_changed == 0
    assert published_state() == before


# -- one change --------------------------------------------------------------------------------
def test_one_changed_source_gives_exactly_one_new_version(published: Path, clock: Clock) -> None:
    old_notes = annotations(published)
    old_hashes = published_hashes(published)
    old_item_file = current_file(published, "itemInfo")
    other_states = {
        t: (current_file(published, t).read_bytes(), current_file(published, t).stat().st_mtime_ns)
        for t in TABLES if t != "itemInfo"
    }
    rename_value(published, "itemInfo", "itemName", row=3)
    clock.advance()
    _, loaded = run_both(published, clock=clock)

    assert loaded.status == "success"
    assert loaded.tables_created == 1 and loaded.tables_changed == 1
    new_notes = annotations(published)
    assert new_notes["itemInfo"] == f"agents/shared_db/DataLoaderAgent/newest/{clock.stamp}_itemInfo.parquet"
    assert {t: p for t, p in new_notes.items() if t != "itemInfo"} == {
        t: p for t, p in old_notes.items() if t != "itemInfo"}
    # Other tables' files were not rewritten or touched.
    for table, (data, mtime) in other_states.items():
        path = current_file(published, table)
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (data, mtime), table
    # The superseded version is in historical_db/, byte-for-byte the old content.
    archived = history_dir(published) / old_item_file.name
    assert archived.is_file() and not old_item_file.exists()
    assert content_hash(read_verified(archived)) == old_hashes["itemInfo"]
    hashes = assert_consistent(published)  # newest/ = referenced files + annotations
    assert hashes["itemInfo"] != old_hashes["itemInfo"]
    assert {t: h for t, h in hashes.items() if t != "itemInfo"} == {
        t: h for t, h in old_hashes.items() if t != "itemInfo"}
    # The new data really carries the edit.
    names = read_verified(current_file(published, "itemInfo")).column("itemName").to_pylist()
    assert names[3].endswith(" rev")
    # Result and change log name the file saved and the file moved.
    assert loaded.files_moved == (f"agents/shared_db/DataLoaderAgent/historical_db/{old_item_file.name}",)
    block = change_log(published).read_text(encoding="utf-8").split("\n\n")[-2]
    assert f"publish {clock.stamp}" in block
    assert f"saved agents/shared_db/DataLoaderAgent/newest/{clock.stamp}_itemInfo.parquet" in block
    assert f"moved {old_item_file.name} -> historical_db/" in block
    assert block.count("saved ") == 1 and block.count("moved ") == 1


def test_changing_runs_in_the_same_minute_never_reuse_a_name(plant: Path, clock: Clock) -> None:
    run_both(plant, clock=clock)
    seen = {current_file(plant, "itemInfo").name}
    stamps = [clock.stamp]
    for n in (2, 3, 4):
        rename_value(plant, "itemInfo", "itemName", row=0, suffix=f" v{n}")
        _, loaded = run_both(plant, clock=clock)  # the clock has not moved
        assert loaded.tables_created == 1
        name = current_file(plant, "itemInfo").name
        assert name == f"{clock.stamp}-{n}_itemInfo.parquet"
        assert name not in seen
        seen.add(name)
        stamps.append(f"{clock.stamp}-{n}")
    every_file = [p.name for p in loader_dir(plant).rglob("*.parquet")]
    assert len(every_file) == len(set(every_file))
    pattern = re.compile(rf"^{STAMP_RE}_[A-Za-z]+\.parquet$")
    for name in every_file:
        assert pattern.match(name), name
        assert "__" not in name and not re.search(r"_\d{4}_\d+_", name), name
    versions = store_of(plant).list_versions("itemInfo")
    assert [v.stamp for v in versions] == stamps
    assert [v.current for v in versions] == [False, False, False, True]


# -- retention ---------------------------------------------------------------------------------
def test_retention_keeps_only_the_newest_versions_and_logs_deletions(
    plant: Path, clock: Clock
) -> None:
    """11 versions in one minute: ordering must be numeric (-10 after -9), not textual."""
    run_both(plant, keep_history=2, clock=clock)
    created = [current_file(plant, "itemInfo").name]
    for n in range(2, 12):
        rename_value(plant, "itemInfo", "itemName", row=1, suffix=f" v{n}")
        _, loaded = run_both(plant, keep_history=2, clock=clock)
        assert loaded.status == "success" and loaded.tables_created == 1
        created.append(current_file(plant, "itemInfo").name)
    assert created[-1] == f"{clock.stamp}-11_itemInfo.parquet"
    assert history_names(plant, "itemInfo") == sorted(created[-3:-1])  # -9 and -10
    for table in TABLES:
        if table != "itemInfo":
            assert history_names(plant, table) == []
    log = change_log(plant).read_text(encoding="utf-8")
    for name in created[:-3]:
        assert f"deleted {name} (history beyond 2 versions)" in log
        assert not (history_dir(plant) / name).exists()
    for name in created[-3:]:
        assert f"deleted {name}" not in log
    assert [v.stamp for v in store_of(plant).list_versions("itemInfo")] == [
        f"{clock.stamp}-9", f"{clock.stamp}-10", f"{clock.stamp}-11"]
    assert_consistent(plant)


# -- recover -----------------------------------------------------------------------------------
def test_recover_removes_temp_files_and_archives_unreferenced(published: Path) -> None:
    store = store_of(published)
    orphan = newest_dir(published) / "20000101_0000_itemInfo.parquet"
    orphan.write_bytes(current_file(published, "itemInfo").read_bytes())
    tmp_new = newest_dir(published) / f"{TMP_MARK}abc.parquet"
    tmp_new.write_bytes(b"half a file")
    tmp_p1 = phase1_file(published, "productRecords").parent / f"{TMP_MARK}x.parquet"
    tmp_p1.write_bytes(b"half")
    notes = annotations_file(published).read_bytes()

    actions = store.recover()
    assert len(actions) == 3, actions
    assert temp_files(published) == []
    assert (history_dir(published) / orphan.name).is_file() and not orphan.exists()
    assert annotations_file(published).read_bytes() == notes
    assert_consistent(published)
    log = change_log(published).read_text(encoding="utf-8")
    assert "recovery" in log and "archived superseded 20000101_0000_itemInfo.parquet" in log

    before = tree_state(loader_dir(published))
    assert store.recover() == []  # nothing left to do: nothing written, not even the log
    assert tree_state(loader_dir(published)) == before


# -- list_versions / rollback / versions_at ----------------------------------------------------
@pytest.fixture
def three_versions(published: Path, clock: Clock) -> tuple[Path, list[str]]:
    """itemInfo at three stamps (v1 everything, v2 itemInfo, v3 itemInfo + machineInfo)."""
    stamps = [clock.stamp]
    clock.advance()
    rename_value(published, "itemInfo", "itemName", row=0, suffix=" v2")
    run_both(published, clock=clock)
    stamps.append(clock.stamp)
    clock.advance()
    rename_value(published, "itemInfo", "itemName", row=0, suffix=" v3")
    rename_value(published, "machineInfo", "manufacturerName", row=0, suffix=" v3")
    run_both(published, clock=clock)
    stamps.append(clock.stamp)
    return published, stamps


def test_list_versions_shows_stamp_rows_hash_and_current(
    three_versions: tuple[Path, list[str]],
) -> None:
    root, stamps = three_versions
    versions = store_of(root).list_versions("itemInfo")
    assert [v.stamp for v in versions] == stamps
    assert [v.current for v in versions] == [False, False, True]
    assert [v.path.parent.name for v in versions] == ["historical_db", "historical_db", "newest"]
    _, _, rows = read_static(root, "itemInfo")
    hashes = set()
    for v in versions:
        data = read_verified(v.path)
        assert v.rows == data.num_rows == len(rows)
        assert v.content_hash == content_hash(data)
        hashes.add(v.content_hash)
        d = v.to_dict()
        assert d["version"] == v.stamp and d["current"] == v.current and d["rows"] == v.rows
    assert len(hashes) == 3
    assert [v.stamp for v in store_of(root).list_versions("machineInfo")] == [stamps[0], stamps[2]]
    assert store_of(root).list_versions("noSuchTable") == []


def test_rollback_restores_an_earlier_version(three_versions: tuple[Path, list[str]]) -> None:
    root, stamps = three_versions
    store = store_of(root)
    first = store.list_versions("itemInfo")[0]
    old_data = read_verified(first.path)
    replaced = current_file(root, "itemInfo")
    others = {t: p for t, p in annotations(root).items() if t != "itemInfo"}

    restored = store.rollback({"itemInfo": stamps[0]})

    assert [(v.table, v.stamp, v.current) for v in restored] == [("itemInfo", stamps[0], True)]
    target = newest_dir(root) / f"{stamps[0]}_itemInfo.parquet"
    assert annotations(root)["itemInfo"] == f"agents/shared_db/DataLoaderAgent/newest/{target.name}"
    assert target.is_file() and not first.path.exists()
    assert (history_dir(root) / replaced.name).is_file() and not replaced.exists()
    assert read_verified(target).equals(old_data)
    assert {t: p for t, p in annotations(root).items() if t != "itemInfo"} == others
    assert [v.current for v in store.list_versions("itemInfo")] == [True, False, False]
    assert_consistent(root)
    log = change_log(root).read_text(encoding="utf-8")
    assert f"rolled back itemInfo from {stamps[2]} to {stamps[0]} (dpo rollback)" in log
    assert f"moved {replaced.name} -> historical_db/" in log
    # And forward again to the newest one.
    store.rollback({"itemInfo": stamps[2]})
    assert current_file(root, "itemInfo").name == replaced.name
    assert_consistent(root)


def test_rollback_refuses_a_version_rewritten_with_other_data(
    three_versions: tuple[Path, list[str]],
) -> None:
    root, stamps = three_versions
    store = store_of(root)
    victim = store.list_versions("itemInfo")[1].path
    tamper_keep_hash(victim, "itemName")
    notes = annotations_file(root).read_bytes()
    newest_before = sorted(p.name for p in newest_dir(root).iterdir())
    with pytest.raises(IntegrityError) as info:
        store.rollback({"itemInfo": stamps[1]})
    assert info.value.error_type is ErrorType.INTEGRITY_ERROR
    assert victim.name in info.value.message
    assert annotations_file(root).read_bytes() == notes
    assert sorted(p.name for p in newest_dir(root).iterdir()) == newest_before
    assert victim.is_file()  # left where it was for inspection


def test_rollback_refuses_a_version_with_flipped_bytes(
    three_versions: tuple[Path, list[str]],
) -> None:
    root, stamps = three_versions
    store = store_of(root)
    victim = store.list_versions("itemInfo")[0].path
    flip_bytes(victim)
    notes = annotations_file(root).read_bytes()
    with pytest.raises(IntegrityError):
        store.rollback({"itemInfo": stamps[0]})
    assert annotations_file(root).read_bytes() == notes
    assert_consistent(root)


def test_rollback_of_several_tables_is_all_or_nothing(
    three_versions: tuple[Path, list[str]],
) -> None:
    """One bad target refuses the whole rollback: the good one is not moved either."""
    root, stamps = three_versions
    store = store_of(root)
    machine_v1 = store.list_versions("machineInfo")[0].path
    tamper_keep_hash(machine_v1, "manufacturerName")
    item_v1 = store.list_versions("itemInfo")[0].path
    state = tree_state(loader_dir(root))
    with pytest.raises(IntegrityError):
        store.rollback({"itemInfo": stamps[0], "machineInfo": stamps[0]})
    assert tree_state(loader_dir(root)) == state
    assert item_v1.is_file()


def test_rollback_to_an_unknown_version_is_a_rollback_error(
    three_versions: tuple[Path, list[str]],
) -> None:
    root, _ = three_versions
    notes = annotations_file(root).read_bytes()
    with pytest.raises(DpoError) as info:
        store_of(root).rollback({"itemInfo": "19990101_0000"})
    assert info.value.error_type is ErrorType.ROLLBACK_ERROR
    assert "itemInfo" in info.value.message and "19990101_0000" in info.value.message
    assert annotations_file(root).read_bytes() == notes


def test_versions_at_rolls_every_table_back_to_a_point_in_time(
    three_versions: tuple[Path, list[str]],
) -> None:
    root, stamps = three_versions
    store = store_of(root)
    first_hashes = {t: content_hash(read_verified(v.path))
                    for t in TABLES for v in store.list_versions(t)[:1]}
    at_second = store.versions_at(stamps[1])
    assert at_second == {t: stamps[1] if t == "itemInfo" else stamps[0] for t in TABLES}
    assert store.versions_at(stamps[2])["machineInfo"] == stamps[2]
    assert store.versions_at("19990101_0000") == {}

    store.rollback(store.versions_at(stamps[0]))
    assert published_hashes(root) == first_hashes
    assert {Path(p).name for p in annotations(root).values()} == {
        f"{stamps[0]}_{t}.parquet" for t in TABLES}
    assert_consistent(root)
    assert sorted(history_names(root, "itemInfo")) == sorted(
        f"{s}_itemInfo.parquet" for s in stamps[1:])


def test_rollback_leaves_versions_readable_as_plain_parquet(
    three_versions: tuple[Path, list[str]],
) -> None:
    """Readers outside dpo see the schema's dtypes in every restored version."""
    root, stamps = three_versions
    store_of(root).rollback({"machineInfo": stamps[0]})
    frame = pq.read_table(current_file(root, "machineInfo")).to_pandas()
    assert str(frame["machineTonnage"].dtype) == "Int64"
    assert str(frame["layoutStartDate"].dtype) == "datetime64[ns]"
    assert str(frame["manufacturerName"].dtype) == "string"
