"""Incremental collection and parallel reading (issue: performance).

Outputs must be byte-for-byte the same whichever way they were produced: serial or parallel,
fresh or from the cache; a rerun reads only new or changed files; the cache is dropped when the
schema or dpo's version changes, and a corrupt cache is rebuilt, never trusted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dpo.collect import DataCollector
from dpo.config import load_settings, resolve_paths
from dpo.demo import generate_plant, write_monthly_report
from dpo.results import CollectorResult, Status, TableResult

MONTHLY = "database/dynamicDatabase/monthlyReports_history"
OUTPUTS = ("productRecords", "purchaseOrders")


def collect(root: Path, *, workers: int = 1, incremental: bool = True) -> CollectorResult:
    paths = resolve_paths(load_settings(root_dir=str(root)))
    result = DataCollector(paths, workers=workers, incremental=incremental,
                           max_retries=0).process_all_data()
    assert result.status is Status.SUCCESS, result.to_dict()["errors"]
    return result


def table(result: CollectorResult, name: str) -> TableResult:
    return next(t for t in result.tables if t.table == name)


def output_bytes(root: Path) -> dict[str, bytes]:
    folder = root / "agents/shared_db/dynamicDatabase"
    return {name: (folder / f"{name}.parquet").read_bytes() for name in OUTPUTS}


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Enough files for the process pool to engage (readers.MIN_FILES_FOR_POOL).
    root = tmp_path_factory.mktemp("plant")
    generate_plant(root, months=12, rows_per_month=80, po_files=12, seed=4)
    return root


def fresh_copy(plant: Path, target: Path) -> Path:
    shutil.copytree(plant / "database", target / "database")
    return target


def months(root: Path) -> list[Path]:
    return sorted((root / MONTHLY).glob("*.xlsb"))


def test_serial_parallel_fresh_and_incremental_outputs_are_identical(
    plant: Path, tmp_path: Path
) -> None:
    serial = fresh_copy(plant, tmp_path / "serial")
    parallel = fresh_copy(plant, tmp_path / "parallel")
    plain = fresh_copy(plant, tmp_path / "plain")
    collect(serial, workers=1)
    result = collect(parallel, workers=2)
    collect(plain, workers=2, incremental=False)
    assert table(result, "productRecords").files_read == 12
    assert output_bytes(serial) == output_bytes(parallel) == output_bytes(plain)
    # Change one month everywhere: the cached run must equal a run that reads everything.
    for root in (serial, plain):
        write_monthly_report(months(root)[5], month="2019-04", n_rows=80, seed=99)
    incremental = collect(serial, workers=1)
    collect(plain, workers=1, incremental=False)
    assert table(incremental, "productRecords").files_read == 1
    assert table(incremental, "productRecords").changed
    assert output_bytes(serial) == output_bytes(plain)


def test_rerun_reads_only_new_or_changed_files(plant: Path, tmp_path: Path) -> None:
    root = fresh_copy(plant, tmp_path / "root")
    collect(root)
    again = collect(root)
    assert table(again, "productRecords").files_read == 0
    assert not again.data_updated
    # Touched but byte-identical: the content hash says unchanged, nothing is read.
    path = months(root)[0]
    path.write_bytes(path.read_bytes())
    touched = collect(root)
    assert table(touched, "productRecords").files_read == 0
    # A new month: only it is read.
    write_monthly_report(root / MONTHLY / "monthlyReports_202001.xlsb", month="2020-01",
                         n_rows=80, seed=5)
    grown = collect(root)
    assert table(grown, "productRecords").files_read == 1
    assert table(grown, "productRecords").rows == table(again, "productRecords").rows + 80


def _manifest(root: Path) -> Path:
    return root / "agents/shared_db/.dpo-cache/collect/productRecords/manifest.json"


def test_cache_dropped_when_dpo_version_or_schema_changes(plant: Path, tmp_path: Path) -> None:
    root = fresh_copy(plant, tmp_path / "root")
    collect(root)
    manifest = json.loads(_manifest(root).read_text(encoding="utf-8"))
    manifest["key"] = "0.0.1:" + manifest["key"].split(":", 1)[1]  # written by an older dpo
    _manifest(root).write_text(json.dumps(manifest), encoding="utf-8")
    assert table(collect(root), "productRecords").files_read == 12
    schema_path = root / "database/databaseSchemas.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    schema["staticDB"]["extraTable"] = {"path": "database/staticDatabase/itemInfo.xlsx",
                                        "dtypes": {"itemCode": "string"}}
    schema_path.write_text(json.dumps(schema), encoding="utf-8")
    assert table(collect(root), "productRecords").files_read == 12


def test_corrupt_cache_is_rebuilt_never_trusted(plant: Path, tmp_path: Path) -> None:
    root = fresh_copy(plant, tmp_path / "root")
    collect(root)
    segment = next(_manifest(root).parent.glob("segment-*.arrow"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the cached rows
    segment.write_bytes(bytes(data))
    write_monthly_report(months(root)[3], month="2019-02", n_rows=80, seed=7)
    result = collect(root)
    assert table(result, "productRecords").files_read == 12  # nothing served from the cache
    plain = fresh_copy(root, tmp_path / "plain")
    collect(plain, incremental=False)
    assert output_bytes(root) == output_bytes(plain)
    # The rebuilt cache serves the next run again.
    write_monthly_report(months(root)[4], month="2019-03", n_rows=80, seed=8)
    assert table(collect(root), "productRecords").files_read == 1


def test_many_runs_compact_the_cache(plant: Path, tmp_path: Path) -> None:
    root = fresh_copy(plant, tmp_path / "root")
    collect(root)
    for seed in range(10):
        write_monthly_report(months(root)[seed % 12], month="2019-01", n_rows=80, seed=50 + seed)
        collect(root)
    segments = list(_manifest(root).parent.glob("segment-*.arrow"))
    assert 1 <= len(segments) <= 8
    plain = fresh_copy(root, tmp_path / "plain")
    collect(plain, incremental=False)
    assert output_bytes(root) == output_bytes(plain)


def test_quarantined_and_blank_rows_keep_the_other_files_aligned(
    plant: Path, tmp_path: Path
) -> None:
    """Rows removed from the first file (quarantined, blank) must not shift the rows every
    later file contributes: the output equals the same data without those rows."""
    from pipelinetools import set_cell

    root = fresh_copy(plant, tmp_path / "root")
    first = months(root)[0]
    set_cell(first, 3, "moldShot", "abc")  # quarantined
    paths = resolve_paths(load_settings(root_dir=str(root)))
    result = DataCollector(paths, on_bad_rows="quarantine", max_retries=0).process_all_data()
    assert table(result, "productRecords").rows_rejected == 1
    clean = fresh_copy(plant, tmp_path / "clean")
    from pipelinetools import read_book

    from dpo.demo import write_xlsb

    sheet, header, rows = read_book(months(clean)[0])
    write_xlsb(months(clean)[0], sheet, header, rows[:3] + rows[4:])  # the same, minus that row
    collect(clean)
    assert output_bytes(root)["productRecords"] == output_bytes(clean)["productRecords"]
    # Then a change elsewhere: the cache (cut at file boundaries) must serve the right rows.
    for target in (root, clean):
        write_monthly_report(months(target)[5], month="2019-04", n_rows=80, seed=42)
    again = DataCollector(paths, on_bad_rows="quarantine", max_retries=0).process_all_data()
    assert table(again, "productRecords").files_read == 2  # the changed file + the dirty one
    collect(clean, incremental=False)
    assert output_bytes(root)["productRecords"] == output_bytes(clean)["productRecords"]
