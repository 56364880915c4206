"""Incremental collection and parallel reading (issue: performance).

Outputs must be byte-for-byte the same whichever way they were produced: serial or parallel,
fresh or from the cache; a rerun reads only new or changed files; the cache is dropped when the
schema or dpo's version changes, and a corrupt cache is rebuilt, never trusted.
"""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipelinetools import read_book

from dpo.collect.collector import DataCollector
from dpo.collect.segments import HASH_COLUMN, cached_parts
from dpo.config import load_settings, resolve_paths
from dpo.demo.plant import generate_plant, write_monthly_report, write_xlsb
from dpo.fsio import Fingerprint
from dpo.results import CollectorResult, Status, TableResult
from dpo.schema import TableSpec, load_schema
from dpo.tables.cache import TableCache
from dpo.transform.rowhash import row_hashes

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


def test_a_source_rewritten_with_other_bytes_but_the_same_content_changes_nothing(
        plant: Path, tmp_path: Path) -> None:
    """Past the file-hash cache: the report is saved again with an extra, empty column (as a
    planner's edit leaves it), so its bytes differ and it is read; its rows are the same, so
    Phase 1's content hash decides "unchanged" and writes nothing."""
    root = fresh_copy(plant, tmp_path / "root")
    collect(root)
    out = root / "agents/shared_db/dynamicDatabase/productRecords.parquet"
    before, before_ns = out.read_bytes(), out.stat().st_mtime_ns
    path = months(root)[0]
    sheet, header, rows = read_book(path)
    old_bytes = path.read_bytes()
    write_xlsb(path, sheet, [*header, "note"], [[*r, None] for r in rows])
    assert path.read_bytes() != old_bytes
    again = collect(root)
    found = table(again, "productRecords")
    assert found.files_read == 1  # the file-hash cache could not say: it was read
    assert found.status is Status.SUCCESS and not found.changed
    assert (out.read_bytes(), out.stat().st_mtime_ns) == (before, before_ns)


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

    from dpo.demo.plant import write_xlsb

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


# -- row hashes kept with the cached rows ------------------------------------------------------
def _cache_of(root: Path) -> tuple[TableCache, TableSpec, list[Path]]:
    paths = resolve_paths(load_settings(root_dir=str(root)))
    schema = load_schema(paths.schema_path, paths.root)
    cache = TableCache(paths.cache_dir, "productRecords", schema.fingerprint)
    return cache, schema.table("productRecords"), months(root)


def test_cached_row_hashes_are_those_of_the_cached_rows(plant: Path, tmp_path: Path) -> None:
    root = fresh_copy(plant, tmp_path / "root")
    collect(root)
    write_monthly_report(months(root)[2], month="2019-01", n_rows=80, seed=31)
    collect(root)
    cache, spec, files = _cache_of(root)
    pieces = cached_parts(cache, files, [Fingerprint.of(p) for p in files], spec)
    assert len({id(p.table) for p in pieces if p is not None}) == 2  # two segments
    for piece in pieces:
        assert piece is not None
        assert piece.row_hashes().tolist() == row_hashes(piece.view()).tolist()


def _rewrite_segment(root: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """Replace the cache segment by `change(its table)`, with a size and CRC that match: only
    the content can tell that something is wrong."""
    manifest = json.loads(_manifest(root).read_text(encoding="utf-8"))
    [name] = manifest["segments"]
    path = _manifest(root).parent / name
    with pa.ipc.open_file(pa.py_buffer(path.read_bytes())) as reader:
        table = change(reader.read_all())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    path.write_bytes(data)
    manifest["segments"][name] = {"size": len(data), "crc32": zlib.crc32(data)}
    _manifest(root).write_text(json.dumps(manifest), encoding="utf-8")


def _without_hashes(table: pa.Table) -> pa.Table:
    return table.drop_columns([HASH_COLUMN])


def _null_hash(table: pa.Table) -> pa.Table:
    """A null in the (not-null) hash column: the schema still matches."""
    hashes = table.column(HASH_COLUMN).to_pylist()
    hashes[5] = None
    return table.set_column(table.num_columns - 1, table.schema.field(HASH_COLUMN),
                            pa.array(hashes, pa.uint64()))


@pytest.mark.parametrize("change", [_without_hashes, _null_hash])
def test_segment_without_sound_row_hashes_is_read_again(
    plant: Path, tmp_path: Path, change: Callable[[pa.Table], pa.Table]
) -> None:
    root = fresh_copy(plant, tmp_path / "root")
    collect(root)
    _rewrite_segment(root, change)
    write_monthly_report(months(root)[3], month="2019-02", n_rows=80, seed=7)
    assert table(collect(root), "productRecords").files_read == 12  # nothing trusted
    plain = fresh_copy(root, tmp_path / "plain")
    collect(plain, incremental=False)
    assert output_bytes(root) == output_bytes(plain)


# -- duplicates across files -------------------------------------------------------------------
def _near_duplicate_months(root: Path) -> None:
    """Months 1-3 repeat rows of month 0: exactly, and differing in one cell only (a number,
    a text, a blank where there was a value), within and across files."""
    sheet, header, rows = read_book(months(root)[0])
    qty, note = header.index("itemGoodQuantity"), header.index("poNote")

    def changed(row: list[object], col: int, value: object) -> list[object]:
        return [value if i == col else v for i, v in enumerate(row)]

    near = [changed(rows[0], qty, int(rows[0][qty] or 0) + 1), changed(rows[1], note, None),
            changed(rows[2], note, f"{rows[2][note]} "), changed(rows[3], note, "x")]
    write_xlsb(months(root)[1], sheet, header, rows[:5] + near + rows[:2] + near[:1])
    write_xlsb(months(root)[2], sheet, header, near + rows[5:9] + [near[3]])
    write_xlsb(months(root)[3], sheet, header, rows[6:12] + near[1:3])


def test_duplicates_across_files_are_exactly_those_of_the_exact_method(
    plant: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh, cached and with every row hash colliding: the same duplicates as dpo 0.1.0's
    exact method, and the same output."""
    from arrowtools import old_duplicate_mask

    import dpo.collect.batchtask
    import dpo.collect.collector
    import dpo.collect.segments

    roots = {kind: fresh_copy(plant, tmp_path / kind) for kind in ("cached", "exact", "collide")}
    for root in roots.values():
        _near_duplicate_months(root)

    def run_all(step: int) -> dict[str, TableResult]:
        found = {"cached": table(collect(roots["cached"]), "productRecords")}
        with monkeypatch.context() as patch:
            patch.setattr(dpo.collect.segments, "duplicate_mask",
                          lambda t, hashes=None: old_duplicate_mask(t))
            found["exact"] = table(collect(roots["exact"], incremental=False), "productRecords")
        with monkeypatch.context() as patch:
            patch.setattr(dpo.collect.batchtask, "row_hashes", lambda t: np.zeros(t.num_rows, np.uint64))
            found["collide"] = table(collect(roots["collide"], incremental=False),
                                     "productRecords")
        assert found["cached"].files_read == (12 if step == 0 else 1)
        return found

    for step in range(2):
        found = run_all(step)
        assert found["cached"].duplicates_removed >= 12
        for kind in ("exact", "collide"):
            assert found[kind].duplicates_by_file == found["cached"].duplicates_by_file, kind
            assert found[kind].rows == found["cached"].rows
        assert output_bytes(roots["cached"]) == output_bytes(roots["exact"])
        assert _data(roots["collide"]).equals(_data(roots["cached"]))
        for root in roots.values():  # then one month changes: the cache serves the rest
            sheet, header, rows = read_book(months(root)[2])
            write_xlsb(months(root)[2], sheet, header, rows[1:] + rows[:1])


def _data(root: Path) -> pa.Table:
    return pq.read_table(root / "agents/shared_db/dynamicDatabase/productRecords.parquet")
