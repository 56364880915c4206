"""Row hashes (dpo.transform.rowhash) and the duplicate detection built on them (dpo.transform.dedupe).

Row hashes are stored in the cache and summed up in every content hash, so they must be
fixed (pinned values below: computed in another process, so also proof that nothing here
depends on Python's salted hash()), independent of chunking, and tell apart what differs.
Duplicate detection must find exactly what the exact method of dpo <= 0.1.0 found (kept
here as the oracle), whatever the hashes say: a collision must never cost a row.
"""

from __future__ import annotations

import struct
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from arrowtools import old_duplicate_mask, rechunked, small_table

from dpo.transform.dedupe import duplicate_mask
from dpo.transform.rowhash import row_hashes, value_hashes


def one_column(values: list[object], kind: pa.DataType) -> np.ndarray:
    return row_hashes(pa.table({"x": pa.array(values, kind)}))


# -- the hash itself ---------------------------------------------------------------------------
def test_row_hashes_are_pinned() -> None:
    """A changed algorithm must be noticed: it invalidates every cache and content hash
    (bump metakeys.ROW_HASH_VERSION, then these values)."""
    assert row_hashes(small_table()).tolist() == [
        15530851294972647717, 2468077243229006606, 2238313767873382169, 1213895011625279505,
        16784461215739649136]
    assert row_hashes(small_table()).dtype == np.uint64


@pytest.mark.parametrize("cuts", [[1], [2, 2, 3], [0, 4], [1, 2, 3, 4], [5]])
def test_row_hashes_do_not_depend_on_chunks_or_slices(cuts: list[int]) -> None:
    table = small_table()
    expected = row_hashes(table)
    assert row_hashes(rechunked(table, cuts)).tolist() == expected.tolist()
    assert row_hashes(table.slice(1, 3)).tolist() == expected[1:4].tolist()
    assert row_hashes(table.combine_chunks()).tolist() == expected.tolist()


def test_long_string_columns_are_hashed_in_blocks_alike() -> None:
    """Columns with more distinct strings than one block (rowhash._BLOCK) at odd offsets."""
    values = [f"value {i}" * (i % 5) for i in range(70_000)]
    table = pa.table({"x": pa.array(values, pa.large_string())})
    whole = row_hashes(table)
    assert row_hashes(rechunked(table, [3, 65_539])).tolist() == whole.tolist()
    assert len(set(whole.tolist())) == len(set(values))


def test_null_empty_and_zero_all_differ() -> None:
    assert len(set(one_column([None, "", " ", "0"], pa.large_string()).tolist())) == 4
    assert len(set(one_column([None, 0, 1, -1], pa.int64()).tolist())) == 4
    assert len(set(one_column([None, 0.0, 1.0], pa.float64()).tolist())) == 3
    assert len(set(one_column([None, False, True], pa.bool_()).tolist())) == 3
    assert len(set(one_column([None, datetime(1970, 1, 1)], pa.timestamp("ns")).tolist())) == 2
    # Across types too: "" is not 0 is not False.
    assert len({one_column([""], pa.large_string())[0], one_column([0], pa.int64())[0],
                one_column([False], pa.bool_())[0], one_column([0.0], pa.float64())[0]}) == 4


def test_swapping_two_columns_changes_the_hash() -> None:
    pair = pa.table({"a": pa.array(["x", "7"]), "b": pa.array(["7", "x"])})
    assert pair.num_rows == 2 and len(set(row_hashes(pair).tolist())) == 2
    ints = pa.table({"a": pa.array([1, 2], pa.int64()), "b": pa.array([2, 1], pa.int64())})
    assert len(set(row_hashes(ints).tolist())) == 2
    assert row_hashes(pa.table({"a": ["x"], "b": ["y"]}))[0] != \
        row_hashes(pa.table({"b": ["y"], "a": ["x"]}))[0]


def test_every_byte_of_a_string_counts() -> None:
    base = "CODE-0001/abcdefgh-ijklmnop-Grün"
    values = {base[:n] for n in range(len(base) + 1)}  # every length, every word boundary
    values |= {base[:i] + "#" + base[i + 1:] for i in range(len(base))}  # one byte changed
    values |= {"a", "a\x00", "\x00", "\x00\x00", "abcdefgh", "abcdefgh\x00"}
    hashes = one_column(sorted(values), pa.large_string())
    assert len(set(hashes.tolist())) == len(values)


def test_equal_values_hash_alike() -> None:
    """-0.0 is 0.0 and NaN is NaN (whatever its bits); string and large_string agree."""
    other_nan = np.frombuffer(struct.pack("<Q", 0xFFF8_0000_0000_0001), dtype=np.float64)
    floats = pa.array(np.array([0.0, -0.0, np.nan, other_nan[0]]))
    hashes = value_hashes(floats)
    assert hashes[0] == hashes[1] and hashes[2] == hashes[3] and hashes[0] != hashes[2]
    assert value_hashes(pa.array(["ab", None], pa.string())).tolist() == \
        value_hashes(pa.array(["ab", None], pa.large_string())).tolist()
    encoded = pc.dictionary_encode(pa.array(["ab", "cd", None, "ab"]))
    assert value_hashes(encoded).tolist() == value_hashes(pa.array(["ab", "cd", None, "ab"])).tolist()
    assert value_hashes(pa.nulls(3, pa.int64())).tolist() == value_hashes(pa.nulls(3)).tolist()


def test_unsupported_types_are_refused_not_guessed() -> None:
    with pytest.raises(TypeError, match="decimal"):
        row_hashes(pa.table({"x": pa.array([1], pa.decimal128(5, 2))}))


# -- duplicates ----------------------------------------------------------------------------------
def near_duplicates(seed: int, rows: int = 3000) -> pa.Table:
    """Few values per column, so many rows repeat exactly and many more differ in one
    column only: null vs "" vs "a" vs "a\\0", 0 vs null, 0.0 vs -0.0 vs NaN. Chunked as if
    from several files."""
    rng = np.random.default_rng(seed)

    def pick(options: list[object], kind: pa.DataType) -> pa.Array:
        return pa.array([options[i] for i in rng.integers(0, len(options), rows)], kind)

    table = pa.table({
        "code": pick([None, "", "a", "a\x00"], pa.large_string()),
        "name": pick(["x", "y"], pa.large_string()),
        "qty": pick([None, 0, 1], pa.int64()),
        "weight": pick([None, 0.0, -0.0, float("nan")], pa.float64()),
        "when": pick([None, datetime(2024, 1, 1)], pa.timestamp("ns")),
        "ok": pick([None, True], pa.bool_()),
    })
    return rechunked(table, [700, 701, 1400, 2100])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_duplicates_are_exactly_those_of_the_exact_method(seed: int) -> None:
    table = near_duplicates(seed)
    expected = old_duplicate_mask(table)
    assert 0 < expected.sum() < table.num_rows - 100  # plenty of both kinds
    assert duplicate_mask(table).tolist() == expected.tolist()
    assert duplicate_mask(table, row_hashes(table)).tolist() == expected.tolist()


@pytest.mark.parametrize("merge", [1, 2, 5, 1000])
def test_hash_collisions_never_drop_a_distinct_row(merge: int) -> None:
    """Hashes forced to collide (merge=1: all rows share one hash) still find exactly the
    exact method's duplicates. Forced hashes stay functions of the row, as real ones are."""
    table = near_duplicates(4)
    colliding = row_hashes(table) % np.uint64(merge)
    assert duplicate_mask(table, colliding).tolist() == old_duplicate_mask(table).tolist()


def test_a_collision_between_two_rows_keeps_both() -> None:
    table = pa.table({"code": ["A", "B", "A", "B"], "qty": pa.array([1, 1, 1, 1], pa.int64())})
    real = row_hashes(table)
    assert duplicate_mask(table, real).tolist() == [False, False, True, True]
    forced = np.where(real == real[1], real[0], real)  # B now hashes like A
    assert forced[0] == forced[1]
    assert duplicate_mask(table, forced).tolist() == [False, False, True, True]


def test_duplicate_mask_checks_its_hashes_fit() -> None:
    table = small_table()
    assert duplicate_mask(table.slice(0, 0)).tolist() == []
    assert duplicate_mask(table.slice(0, 1)).tolist() == [False]
    with pytest.raises(ValueError, match="4 hashes for 5 rows"):
        duplicate_mask(table, row_hashes(table)[:4])
