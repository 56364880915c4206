"""Issue #19.5 and #19.6: `dpo rollback` says what it did (a rollback to the current version
holds nothing, and says so; `--all` says per table where it stays), and `dpo diff` after a
rollback compares the current version with the one current before the pointer last moved.
Real `dpo` subprocesses on real plants."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from pipelinetools import ANNOTATIONS, ORDERS, Clock, dpo, make_plant, run, set_cell


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """purchaseOrders published at 06:00, 06:05 (one quantity 4242) and 06:10 (one 777)."""
    plant = make_plant(tmp_path / "plant").root
    clock = Clock(datetime(2024, 5, 2, 6, 0))
    run(plant, clock=clock)
    order = sorted((plant / ORDERS).iterdir())[-1]
    set_cell(order, 2, "itemQuantity", 4242)
    run(plant, clock=clock.at(6, 5))
    set_cell(order, 3, "itemQuantity", 777)
    run(plant, clock=clock.at(6, 10))
    return plant


def _current(root: Path) -> dict[str, str]:
    stored = json.loads((root / ANNOTATIONS).read_text(encoding="utf-8"))
    return {t: Path(p).name.split(f"_{t}")[0] for t, p in stored.items()}


def _holds(root: Path) -> dict[str, object]:
    report = json.loads(dpo("health", "--root", root, "--json").stdout)
    return dict(report["holds"])


# -- 5. rollback says what it did ----------------------------------------------------------------

def test_a_rollback_to_the_current_version_holds_nothing_and_says_so(root: Path) -> None:
    pointer = (root / ANNOTATIONS).read_bytes()
    done = dpo("rollback", "purchaseOrders", "--to", "20240502_0610", "--root", root)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("purchaseOrders: 20240502_0610 is already the current "
                                   "version; nothing held")
    assert (root / ANNOTATIONS).read_bytes() == pointer
    listed = json.loads(dpo("versions", "purchaseOrders", "--root", root, "--json").stdout)
    assert [(v["version"], v["held_since"]) for v in listed if v["current"]] == [
        ("20240502_0610", None)]
    assert _holds(root) == {}
    freed = dpo("rollback", "purchaseOrders", "--release", "--root", root)
    assert freed.stdout.strip() == "purchaseOrders: not held; nothing to release"
    records = json.loads(dpo("history", "--root", root, "--json").stdout)
    assert [r["kind"] for r in records] == ["run", "run", "run"]  # no rollback recorded


def test_rolling_back_again_to_a_held_version_keeps_the_hold_and_says_since_when(
        root: Path) -> None:
    assert dpo("rollback", "purchaseOrders", "--to", "20240502_0600", "--root",
               root).returncode == 0
    since = _holds(root)["purchaseOrders"]["since"]  # type: ignore[index]
    again = dpo("rollback", "purchaseOrders", "--to", "20240502_0600", "--root", root)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        f"purchaseOrders: 20240502_0600 is already the current version; still held there "
        f"since {since} (`dpo rollback purchaseOrders --release` ends it)")
    assert _holds(root)["purchaseOrders"]["since"] == since  # type: ignore[index]


def test_rollback_all_to_a_time_after_every_version_says_where_each_table_stays(
        root: Path) -> None:
    pointer = (root / ANNOTATIONS).read_bytes()
    done = dpo("rollback", "--all", "--to", "20991231_2359", "--root", root)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines == [f"{t}: {s} is already the current version; nothing held"
                     for t, s in sorted(_current(root).items())]
    assert len(lines) == 8
    assert (root / ANNOTATIONS).read_bytes() == pointer
    assert _holds(root) == {}


def test_a_rollback_to_content_the_sources_give_holds_nothing_and_says_so(root: Path) -> None:
    """Back to 06:00, then `--all` to 06:10: purchaseOrders returns to what its sources give
    (no hold), every other table is already there."""
    assert dpo("rollback", "purchaseOrders", "--to", "20240502_0600", "--root",
               root).returncode == 0
    done = dpo("rollback", "--all", "--to", "20240502_0610", "--root", root)
    assert done.returncode == 0, done.stderr
    said = {line.split(":")[0]: line for line in done.stdout.strip().splitlines()}
    assert said["purchaseOrders"].startswith("purchaseOrders: now at 20240502_0610 (")
    assert said["purchaseOrders"].endswith("nothing held: it is what the sources give now")
    assert said["moldInfo"].endswith("is already the current version; nothing held")
    assert _holds(root) == {}


# -- 6. dpo diff after a rollback ---------------------------------------------------------------

def _quantities(rows: list[dict[str, object]]) -> list[object]:
    return sorted(str(r["itemQuantity"]) for r in rows)


def test_diff_after_a_rollback_to_the_oldest_version_compares_what_the_rollback_changed(
        root: Path) -> None:
    assert dpo("rollback", "purchaseOrders", "--to", "20240502_0600", "--root",
               root).returncode == 0

    done = dpo("diff", "purchaseOrders", "--root", root, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["from"], report["to"]) == ("20240502_0610", "20240502_0600")
    assert "rollback" in report["compared"]
    assert _quantities(report["removed"]) == ["4242", "777"]
    assert report["columns_changed_rows"] == {"itemQuantity": 2}
    text = dpo("diff", "purchaseOrders", "--root", root)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == (
        "comparing 20240502_0610 -> 20240502_0600: the current version vs the one current "
        "before it, until a rollback (dpo rollback) moved the pointer")


def test_diff_after_a_publish_that_follows_a_rollback_compares_with_the_rolled_back_to(
        root: Path) -> None:
    assert dpo("rollback", "purchaseOrders", "--to", "20240502_0600", "--root",
               root).returncode == 0
    set_cell(sorted((root / ORDERS).iterdir())[-1], 4, "itemQuantity", 31337)  # hold ends
    run(root, clock=Clock(datetime(2024, 5, 2, 6, 15)))
    assert _current(root)["purchaseOrders"] == "20240502_0615"

    report = json.loads(dpo("diff", "purchaseOrders", "--root", root, "--json").stdout)
    assert (report["from"], report["to"]) == ("20240502_0600", "20240502_0615")
    assert report["compared"].endswith("until a publish moved the pointer")
    assert _quantities(report["added"]) == ["31337", "4242", "777"]
    # naming the versions compares exactly those, and says nothing about why
    named = json.loads(dpo("diff", "purchaseOrders", "20240502_0610", "20240502_0615",
                           "--root", root, "--json").stdout)
    assert named["compared"] is None and _quantities(named["added"]) == ["31337"]


@pytest.mark.usefixtures("s3_server")
def test_diff_after_a_rollback_on_s3(tmp_path: Path, s3_url: str) -> None:
    plant = make_plant(tmp_path / "plant").root
    clock = Clock(datetime(2024, 5, 2, 6, 0))
    run(plant, clock=clock, default_dir=s3_url)
    set_cell(sorted((plant / ORDERS).iterdir())[-1], 2, "itemQuantity", 4242)
    run(plant, clock=clock.at(6, 5), default_dir=s3_url)
    where = ("--root", plant, "--default-dir", s3_url)
    assert dpo("rollback", "purchaseOrders", "--to", "20240502_0600", *where).returncode == 0

    done = dpo("diff", "purchaseOrders", "--json", *where)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["from"], report["to"]) == ("20240502_0605", "20240502_0600")
    assert "rollback" in report["compared"] and _quantities(report["removed"]) == ["4242"]
