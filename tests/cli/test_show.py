"""Issue #19.4: `dpo show TABLE`, the consumer's command: a published table, hash-verified,
on the terminal or exported as csv, json or parquet (real `dpo` subprocesses on real plants;
the store on disk and on moto's S3 server)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipelinetools import ORDERS, Clock, dpo, every_file, make_plant, run, set_cell
from storetools import current_file, tamper_keep_hash

from dpo.tables.parquet import read_verified


@pytest.fixture
def root(tmp_path: Path) -> Path:
    plant = make_plant(tmp_path / "plant").root
    clock = Clock(datetime(2024, 5, 2, 6, 0))
    run(plant, clock=clock)
    set_cell(sorted((plant / ORDERS).iterdir())[-1], 2, "itemQuantity", 4242)
    run(plant, clock=clock.at(6, 5))
    return plant


def _rows(root: Path, table: str) -> list[dict[str, object]]:
    return read_verified(current_file(root, table)).to_pylist()


def test_the_table_format_shows_the_first_rows_and_says_the_version(root: Path) -> None:
    done = dpo("show", "moldInfo", "--root", root, "--columns", "moldNo,moldName")
    assert done.returncode == 0, done.stderr
    rows = _rows(root, "moldInfo")
    shown = min(20, len(rows))
    assert f"moldInfo 20240502_0600 (hash verified): {shown} of {len(rows)} rows" in done.stdout
    assert all(str(r["moldNo"]) in done.stdout for r in rows[:shown])
    assert "itemsWeight" not in done.stdout
    # too wide for 80 columns: one block per row, every value whole
    wide = dpo("show", "purchaseOrders", "--root", root, "--limit", "2")
    assert wide.returncode == 0, wide.stderr
    first = _rows(root, "purchaseOrders")[0]
    assert "row 1" in wide.stdout and "row 3" not in wide.stdout
    assert str(first["itemName"]) in wide.stdout and "additiveMasterbatchQuantity" in wide.stdout


def test_csv_has_the_rows_the_columns_and_dates_as_excel_reads_them(root: Path) -> None:
    done = dpo("show", "purchaseOrders", "--root", root, "--format", "csv", "--limit", "5",
               "--columns", "poNo,poETA,itemQuantity")
    assert done.returncode == 0, done.stderr
    got = list(csv.DictReader(io.StringIO(done.stdout)))
    assert got == [{"poNo": r["poNo"], "poETA": f"{r['poETA']:%Y-%m-%d %H:%M:%S}",
                    "itemQuantity": str(r["itemQuantity"])}
                   for r in _rows(root, "purchaseOrders")[:5]]


def test_json_of_an_older_version_by_name(root: Path) -> None:
    done = dpo("show", "purchaseOrders", "--root", root, "--format", "json",
               "--version", "20240502_0600")
    assert done.returncode == 0, done.stderr
    old = pq.read_table(next(p for p in every_file(root)
                             if p.name == "20240502_0600_purchaseOrders.parquet")).to_pylist()
    expected = [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()}
                for r in old]
    assert json.loads(done.stdout) == expected
    assert 4242 not in [r["itemQuantity"] for r in expected]


def test_parquet_to_a_file_of_the_users_choosing(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports" / "orders.parquet"
    done = dpo("show", "purchaseOrders", "--root", root, "--format", "parquet", "--out", out,
               "--columns", "poNo,itemQuantity")
    assert done.returncode == 0, done.stderr
    whole = _rows(root, "purchaseOrders")
    assert f"wrote {len(whole)} of {len(whole)} rows of purchaseOrders 20240502_0605" in done.stdout
    assert pq.read_table(out).to_pylist() == [
        {"poNo": r["poNo"], "itemQuantity": r["itemQuantity"]} for r in whole]
    piped = subprocess.run([sys.executable, "-m", "dpo.cli", "show", "moldInfo", "--root",
                            str(root), "--format", "parquet"], capture_output=True, timeout=60)
    assert piped.returncode == 0, piped.stderr  # stdout a pipe: the Parquet bytes go there
    assert pq.read_table(pa.BufferReader(piped.stdout)).equals(
        read_verified(current_file(root, "moldInfo")))


def test_out_never_writes_into_the_plants_folders(root: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in every_file(root)}
    notes = root / "agents/shared_db/DataLoaderAgent/newest/path_annotations.json"
    for target in (notes, current_file(root, "moldInfo"), root / "agents/shared_db/x.csv",
                   root / "database/dynamicDatabase/export.csv", root / "database"):
        done = dpo("show", "moldInfo", "--root", root, "--format", "csv", "--out", target)
        assert done.returncode == 2, (target, done.stdout, done.stderr)
        assert "--out" in done.stderr and "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in every_file(root)} == before
    screen = dpo("show", "moldInfo", "--root", root, "--out", tmp_path / "x.txt")
    assert screen.returncode == 2 and "--format csv, json or parquet" in screen.stderr


def test_a_damaged_version_exits_1_naming_the_file(root: Path) -> None:
    damaged = current_file(root, "purchaseOrders")
    tamper_keep_hash(damaged, "poNo")
    done = dpo("show", "purchaseOrders", "--root", root, "--format", "csv")
    assert done.returncode == 1
    assert done.stdout == ""
    said = done.stderr.replace("\n", "")
    assert str(damaged) in said and "does not match its recorded hash" in said
    assert "Traceback" not in done.stderr


def test_unknown_table_version_column_or_format_exit_2(root: Path) -> None:
    for args, said in ((("moldinfo",), "did you mean 'moldInfo'"),
                       (("moldInfo", "--version", "20240101_0000"), "versions: 20240502_0600"),
                       (("moldInfo", "--columns", "moldNo,mold"), "moldInfo has no column mold"),
                       (("moldInfo", "--format", "xlsx"), "give one of table, csv, json")):
        done = dpo("show", *args, "--root", root)
        assert done.returncode == 2, (args, done.stderr)
        assert said in done.stderr.replace("\n", ""), (args, done.stderr)


@pytest.mark.usefixtures("s3_server")
def test_show_reads_a_store_on_s3_from_another_machine(tmp_path: Path, s3_url: str) -> None:
    plant = make_plant(tmp_path / "plant").root
    run(plant, default_dir=s3_url)
    local = make_plant(tmp_path / "local").root
    run(local)
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    done = dpo("show", "purchaseOrders", "--root", consumer, "--default-dir", s3_url,
               "--format", "json")
    assert done.returncode == 0, done.stderr
    expected = json.loads(dpo("show", "purchaseOrders", "--root", local, "--format",
                              "json").stdout)
    assert json.loads(done.stdout) == expected and expected


def test_a_read_only_operator_can_show_and_export_and_writes_nothing_to_the_plant(
        tmp_path: Path) -> None:
    from test_readonly_operator import chmod_tree, contents, read_only_dpo

    plant = make_plant(tmp_path / "plant", months=1, rows_per_month=20).root
    run(plant)
    expected = read_verified(current_file(plant, "moldInfo")).to_pylist()
    chmod_tree(plant, writable=False)
    try:
        before = contents(plant)
        shown = read_only_dpo("show", "moldInfo", "--root", plant, "--format", "json")
        out = tmp_path / "exports" / "molds.csv"
        out.parent.mkdir()
        exported = read_only_dpo("show", "moldInfo", "--root", plant, "--format", "csv",
                                 "--out", out)
        assert contents(plant) == before
    finally:
        chmod_tree(plant, writable=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert [r["moldNo"] for r in json.loads(shown.stdout)] == [r["moldNo"] for r in expected]
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert len(list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))) == len(expected)
