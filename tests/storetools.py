"""Helpers for the Phase 2 / version store tests: a small real plant, runs, snapshots, checks.

Every fixture is a real plant written by `dpo.demo.plant` in a temp folder; every check reads the
files the pipeline wrote (annotations, Parquet versions, change log) through the real code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
from pipelinetools import Clock, make_plant

from dpo.collect.collector import DataCollector
from dpo.config import Paths, load_settings, resolve_paths
from dpo.demo.plant import SCHEMA, write_xlsx
from dpo.fsio import TMP_MARK
from dpo.load.loader import DataLoaderAgent
from dpo.results import CollectorResult, LoaderResult
from dpo.store.local.versions import VersionStore
from dpo.tables.contenthash import content_hash
from dpo.tables.parquet import read_verified, recorded_hash

DYNAMIC = tuple(SCHEMA["dynamicDB"])
STATIC = tuple(SCHEMA["staticDB"])
TABLES = DYNAMIC + STATIC
STAMP_RE = r"\d{8}_\d{4}(?:-\d+)?"
ANNOTATIONS = "path_annotations.json"


def plant_root(root: Path, *, months: int = 2, rows_per_month: int = 50, **kw: Any) -> Path:
    """pipelinetools.make_plant's plant, sized for store tests, as its root folder."""
    return make_plant(root, months=months, rows_per_month=rows_per_month, **{"seed": 0, **kw}).root


def paths_of(root: Path) -> Paths:
    return resolve_paths(load_settings(root_dir=str(root)))


def store_of(root: Path, *, keep_history: int = 30, clock: Clock | None = None) -> VersionStore:
    if clock is None:
        return VersionStore(paths_of(root), keep_history=keep_history)
    return VersionStore(paths_of(root), keep_history=keep_history, clock=clock)


def collect(root: Path) -> CollectorResult:
    return DataCollector(paths_of(root), max_retries=0, retry_wait=0.01).process_all_data()


def load(root: Path, *, keep_history: int = 30, clock: Clock | None = None) -> LoaderResult:
    paths = paths_of(root)
    store = store_of(root, keep_history=keep_history, clock=clock)
    return DataLoaderAgent(paths, keep_history=keep_history, max_retries=0, retry_wait=0.01,
                           store=store).process_all_data()


def run_both(
    root: Path, *, keep_history: int = 30, clock: Clock | None = None
) -> tuple[CollectorResult, LoaderResult]:
    """Phase 1 then Phase 2, in this process."""
    return collect(root), load(root, keep_history=keep_history, clock=clock)


# -- locations ---------------------------------------------------------------------------------
def loader_dir(root: Path) -> Path:
    return root / "agents" / "shared_db" / "DataLoaderAgent"


def newest_dir(root: Path) -> Path:
    return loader_dir(root) / "newest"


def history_dir(root: Path) -> Path:
    return loader_dir(root) / "historical_db"


def change_log(root: Path) -> Path:
    return loader_dir(root) / "change_log.txt"


def annotations_file(root: Path) -> Path:
    return newest_dir(root) / ANNOTATIONS


def phase1_file(root: Path, table: str) -> Path:
    return root / "agents" / "shared_db" / "dynamicDatabase" / f"{table}.parquet"


def static_path(root: Path, table: str) -> Path:
    return root / str(SCHEMA["staticDB"][table]["path"])


# -- reading what was published ----------------------------------------------------------------
def annotations(root: Path) -> dict[str, str]:
    return json.loads(annotations_file(root).read_text(encoding="utf-8"))


def current_file(root: Path, table: str) -> Path:
    return root / annotations(root)[table]


def published_hashes(root: Path) -> dict[str, str]:
    """{table: content hash of the data the annotations point at}, each file verified."""
    return {t: content_hash(read_verified(root / p)) for t, p in annotations(root).items()}


def tree_state(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `folder`: its bytes and mtime_ns (and so, every name)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def temp_files(root: Path) -> list[Path]:
    base = root / "agents"
    return sorted(p for p in base.rglob(f"{TMP_MARK}*")) if base.is_dir() else []


def history_names(root: Path, table: str) -> list[str]:
    folder = history_dir(root)
    return sorted(p.name for p in folder.glob(f"*_{table}.parquet")) if folder.is_dir() else []


def assert_consistent(root: Path, *, exact_newest: bool = True) -> dict[str, str]:
    """The published state is usable; returns the published content hash per table.

    The annotations parse and map every table to a readable Parquet file whose data matches
    the hash recorded in it. With `exact_newest`, newest/ holds exactly the referenced files
    and the annotations file (what a finished run, or a repair, must leave).
    """
    raw = annotations_file(root).read_text(encoding="utf-8")
    data = json.loads(raw)
    assert isinstance(data, dict)
    assert sorted(data) == sorted(TABLES), data
    hashes: dict[str, str] = {}
    for table, stored in data.items():
        assert not Path(stored).is_absolute(), f"{table}: path not relative to root: {stored}"
        path = root / stored
        assert path.is_file(), f"{table}: annotations point at missing {stored}"
        table_data = read_verified(path)
        hashes[table] = content_hash(table_data)
        assert recorded_hash(path) == hashes[table]
    if exact_newest:
        expected = {Path(p).name for p in data.values()} | {ANNOTATIONS}
        present = {p.name for p in newest_dir(root).iterdir()}
        assert present == expected, f"newest/ extra {present - expected}, missing {expected - present}"
    return hashes


# -- changing sources --------------------------------------------------------------------------
def read_static(root: Path, table: str) -> tuple[str, list[str], list[list[object]]]:
    """(sheet name, header, rows) of a static workbook, cell values as Excel typed them."""
    book = openpyxl.load_workbook(static_path(root, table))
    sheet = book.worksheets[0]
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    return sheet.title, [str(h) for h in values[0]], values[1:]


def edit_static(root: Path, table: str, column: str, row: int, value: object) -> object:
    """Rewrite one static workbook with one cell changed; return the old value."""
    sheet, header, rows = read_static(root, table)
    col = header.index(column)
    old = rows[row][col]
    rows[row][col] = value
    write_xlsx(static_path(root, table), sheet, header, rows)
    return old


def rename_value(root: Path, table: str, column: str, row: int = 0, suffix: str = " rev") -> None:
    """A real change: append `suffix` to one text cell."""
    sheet, header, rows = read_static(root, table)
    col = header.index(column)
    rows[row][col] = f"{rows[row][col]}{suffix}"
    write_xlsx(static_path(root, table), sheet, header, rows)


def age(path: Path, seconds: float = 120.0) -> None:
    """Backdate a file (the reader treats very fresh unreadable files as still being copied)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(seconds * 1e9)))


def tamper_keep_hash(path: Path, column: str) -> None:
    """Rewrite a version with one value changed but its old metadata (and recorded hash)."""
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[0] = f"{values[0]} tampered"
    idx = table.column_names.index(column)
    changed = table.set_column(idx, column, pa.array(values, type=table.schema.field(idx).type))
    pq.write_table(changed.replace_schema_metadata(table.schema.metadata), path)


def flip_bytes(path: Path, count: int = 32) -> None:
    """Corrupt the data pages of a Parquet file (the footer, and its metadata, stay)."""
    data = bytearray(path.read_bytes())
    start = 4
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# -- subprocesses ------------------------------------------------------------------------------
RUN_BOTH = """
import sys
from dpo.collect.collector import DataCollector
from dpo.config import load_settings, resolve_paths
from dpo.load.loader import DataLoaderAgent
paths = resolve_paths(load_settings(root_dir=sys.argv[1]))
DataCollector(paths, max_retries=0).process_all_data()
r = DataLoaderAgent(paths, keep_history=int(sys.argv[2]), max_retries=0).process_all_data()
sys.exit(0 if r.status == "success" else 3)
"""

ROLLBACK = """
import json, sys
from dpo.config import load_settings, resolve_paths
from dpo.store.local.versions import VersionStore
paths = resolve_paths(load_settings(root_dir=sys.argv[1]))
VersionStore(paths, keep_history=int(sys.argv[2])).rollback(json.loads(sys.argv[3]))
"""


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPO_")}
    env.update(extra)
    return env


def spawn(script: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """Start `python -c script args...` with a clean DPO_* environment plus `env`."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], env=child_env(**env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace")[-3000:]


def enumerate_points(root: Path, script: str, *args: str) -> list[str]:
    """Run `script` once with DPO_CRASH_POINTS set; every crash point it reaches, in order."""
    log = root.parent / f"{root.name}.points"
    code, err = finish(spawn(script, str(root), *args, DPO_CRASH_POINTS=str(log)))
    assert code == 0, err
    return log.read_text(encoding="utf-8").split()


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
