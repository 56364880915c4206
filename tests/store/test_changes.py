"""What changed between two versions (#12 item 11): the multiset row diff and edited columns,
on real Arrow tables, and through real runs and the `dpo diff` command."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from pipelinetools import ORDERS, Clock, detail, dpo, make_plant, read_book, run, set_cell

from dpo.store.changes import diff_tables


def table(rows: list[tuple[object, ...]], names: tuple[str, ...] = ("code", "qty", "note")
          ) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    return pa.table({n: pa.array(list(c), type=pa.string() if n != "qty" else pa.int64())
                     for n, c in zip(names, columns, strict=True)})


OLD = [("A", 1, "x"), ("B", 2, "y"), ("C", 3, "z"), ("C", 3, "z")]


def test_unchanged_content_in_another_order_is_no_change() -> None:
    diff = diff_tables(table(OLD), table(list(reversed(OLD))))
    assert (len(diff.added), len(diff.removed), diff.columns_changed) == (0, 0, {})


def test_rows_are_a_multiset_a_duplicate_more_or_less_counts() -> None:
    new = [("A", 1, "x"), ("B", 2, "y"), ("C", 3, "z"), ("C", 3, "z"), ("C", 3, "z")]
    diff = diff_tables(table(OLD), table(new))
    assert diff.added.tolist() == [4] and diff.removed.tolist() == []
    back = diff_tables(table(new), table(OLD))
    assert back.added.tolist() == [] and back.removed.tolist() == [4]


def test_an_edited_cell_names_its_column_an_appended_row_names_none() -> None:
    new = [("A", 1, "x"), ("B", 20, "y"), ("C", 3, "z"), ("C", 3, "z"), ("D", 4, "w")]
    diff = diff_tables(table(OLD), table(new))
    assert diff.removed.tolist() == [1] and diff.added.tolist() == [1, 4]
    assert diff.columns_changed == {"qty": 1}
    counts = diff.counts("20240502_0600")
    assert counts["rows_added"] == 2 and counts["rows_removed"] == 1
    assert counts["columns_changed"] == ["qty"] and counts["previous"] == "20240502_0600"


def test_a_row_edited_in_two_columns_is_removed_and_added_without_columns() -> None:
    new = [("A", 1, "x"), ("B", 20, "yy"), ("C", 3, "z"), ("C", 3, "z")]
    diff = diff_tables(table(OLD), table(new))
    assert (diff.removed.tolist(), diff.added.tolist(), diff.columns_changed) == ([1], [1], {})


def test_columns_added_and_removed_are_named_and_rows_compared_on_the_rest() -> None:
    old = table(OLD)
    new = old.drop_columns(["note"]).append_column("extra", pa.array(["1", "2", "3", "4"]))
    diff = diff_tables(old, new)
    assert diff.columns_added == ("extra",) and diff.columns_removed == ("note",)
    assert len(diff.added) == len(diff.removed) == 0


def test_nulls_and_empty_tables() -> None:
    old = table([("A", None, None)])
    new = table([("A", 5, None)])
    assert diff_tables(old, new).columns_changed == {"qty": 1}
    empty = table([])
    assert diff_tables(empty, old).added.tolist() == [0]
    assert diff_tables(old, empty).removed.tolist() == [0]


# -- through real runs and the CLI -------------------------------------------------------------

@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_plant(tmp_path / "plant")
    return tmp_path / "plant"


def test_every_publish_says_what_changed_and_dpo_diff_shows_the_rows(root: Path) -> None:
    first = run(root, clock=Clock(datetime(2024, 5, 2, 6, 0)))
    change = detail(first["loader_result"], "purchaseOrders")["changes"]
    assert change["previous"] is None and change["rows_added"] == 50
    assert change["rows_removed"] == 0
    order = sorted((root / ORDERS).iterdir())[-1]
    old_qty = read_book(order)[2][2][read_book(order)[1].index("itemQuantity")]
    set_cell(order, 2, "itemQuantity", 4242)

    done = dpo("run", "--root", root, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    change = detail(result["loader_result"], "purchaseOrders")["changes"]
    assert change == {"previous": "20240502_0600", "rows_added": 1, "rows_removed": 1,
                      "columns_changed": ["itemQuantity"], "columns_added": [],
                      "columns_removed": []}
    assert detail(result["loader_result"], "productRecords")["changes"] is None  # unchanged
    new_stamp = Path(detail(result["loader_result"], "purchaseOrders")["output"]).name[:13]

    history = json.loads(dpo("history", "--root", root, "--json").stdout)
    (logged,) = [t for t in history[0]["tables"]
                 if t["table"] == "purchaseOrders" and t["phase"] == "loader"]
    assert (logged["rows_added"], logged["rows_removed"]) == (1, 1)
    assert json.loads(logged["columns_changed"]) == ["itemQuantity"]
    final = next((root / "agents/shared_db/DataPipelineOrchestrator/newest").glob("*final*"))
    assert ("purchaseOrders: +1 / -1 rows vs 20240502_0600; values changed in itemQuantity"
            in final.read_text(encoding="utf-8"))
    page = (root / "agents/shared_db/DataPipelineOrchestrator/dashboard.html").read_text("utf-8")
    assert "<td>purchaseOrders</td><td>50</td><td>+1 / -1 rows</td>" in page

    diff = json.loads(dpo("diff", "purchaseOrders", "--root", root, "--json").stdout)
    assert (diff["from"], diff["to"]) == ("20240502_0600", new_stamp)
    assert [r["itemQuantity"] for r in diff["added"]] == [4242]
    assert [r["itemQuantity"] for r in diff["removed"]] == [old_qty]
    text = dpo("diff", "purchaseOrders", "20240502_0600", new_stamp, "--root", root).stdout
    assert "+1 rows added, -1 rows removed" in text
    assert "values changed in: itemQuantity (1 rows)" in text
    assert "+ poReceivedDate=" in text and "itemQuantity=4242" in text
    none = json.loads(dpo("diff", "purchaseOrders", "--root", root, "--json", "--limit", "0")
                      .stdout)
    assert none["added"] == [] and none["rows_added"] == 1


def test_the_run_summary_has_a_changes_column(root: Path) -> None:
    run(root, clock=Clock(datetime(2024, 5, 2, 6, 0)))
    set_cell(sorted((root / ORDERS).iterdir())[-1], 2, "itemQuantity", 4242)
    text = dpo("run", "--root", root).stdout
    (line,) = [ln for ln in text.splitlines() if "│ load" in ln and " purchaseOrders " in ln]
    assert "+1 −1" in line
    assert "load purchaseOrders: values changed in itemQuantity" in text


def test_diff_refuses_what_is_not_there(root: Path) -> None:
    run(root, clock=Clock(datetime(2024, 5, 2, 6, 0)))
    only = dpo("diff", "purchaseOrders", "--root", root)
    assert only.returncode == 2 and "no version of purchaseOrders before 20240502_0600" in only.stderr
    wrong = dpo("diff", "purchaseOrders", "20240101_0000", "--root", root)
    assert wrong.returncode == 2 and "no version 20240101_0000 of purchaseOrders" in wrong.stderr
    assert dpo("diff", "nope", "--root", root).returncode == 2


def test_row_hashes_are_cached_by_content_and_a_wrong_file_is_never_trusted(root: Path) -> None:
    """Phase 1 keeps its table's row hashes under the content hash; the next publish's diff
    takes the previous version's from there. A cached file that does not give its content hash
    (tampered, half-written) is recomputed: the diff stays right."""
    import pyarrow.parquet as pq

    from dpo.config import load_settings, resolve_paths
    from dpo.tables.parquet import recorded_hash
    from dpo.tables.rowhashes import RowHashes

    first = run(root, clock=Clock(datetime(2024, 5, 2, 6, 0)))
    published = root / detail(first["loader_result"], "purchaseOrders")["output"]
    digest = recorded_hash(published)
    cache = RowHashes(resolve_paths(load_settings(root_dir=str(root))).cache_dir)
    schema = pq.read_schema(published)
    cached = cache.get(digest, schema)
    assert cached is not None and len(cached) == 50  # Phase 1 put them there
    cache._path(digest).write_bytes(bytes(8 * 50))  # the right size, the wrong hashes
    assert cache.get(digest, schema) is None
    order = sorted((root / ORDERS).iterdir())[-1]
    set_cell(order, 2, "itemQuantity", 4242)
    done = dpo("run", "--root", root, "--json")
    change = detail(json.loads(done.stdout)["loader_result"], "purchaseOrders")["changes"]
    assert (change["rows_added"], change["rows_removed"]) == (1, 1)
    assert change["columns_changed"] == ["itemQuantity"]
