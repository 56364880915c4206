"""Phase 1 on other executors (issue #14, item 4): a process pool and a real Dask cluster (two
worker processes on 127.0.0.1: threads would hide pickling bugs) give exactly what the threads
executor gives: the same Phase 1 and published Parquet bytes, the same warnings in the same
order, the same CellErrors, the same quarantine file."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import good_row, make_paths, output_path, source_dir, write_schema, write_source
from loguru import logger
from pipelinetools import Clock, dpo, make_plant, plain, published, run
from pipelinetools import phase1_outputs as outputs

from dpo.collect.batchtask import BatchTask
from dpo.collect.collector import DataCollector
from dpo.collect.early import (
    AUTO_MIN_FILES,
    MIN_IDLE_CORES,
    EarlyPool,
    TablePlan,
    choose_executor,
)
from dpo.collect.executors import DaskFiles, ProcessFiles, TaskAhead, batches
from dpo.config import RowPolicy, load_settings
from dpo.demo.writers import ExcelError
from dpo.errors import ConfigError
from dpo.fsio import Fingerprint
from dpo.pipeline.orchestrator import default_workers
from dpo.schema import TableSpec, load_schema

pytestmark = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="session")
def scheduler() -> Iterator[str]:
    """A real dask.distributed cluster: 2 worker processes, 1 thread each, on 127.0.0.1."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def copies(root: Path, *names: str) -> list[Path]:
    found = []
    for name in names:
        target = root.parent / f"{root.name}-{name}"
        shutil.copytree(root, target)  # copy2: same bytes, same mtimes
        found.append(target)
    return found


def pipeline(root: Path, **settings: Any) -> tuple[Any, dict[str, bytes], dict[str, bytes]]:
    result = run(root, clock=Clock(), enable_notifications=False, **settings)
    return plain(result), outputs(root), published(root)


def test_dask_cluster_and_processes_publish_what_threads_publish(
        tmp_path: Path, scheduler: str) -> None:
    make_plant(tmp_path / "plant", months=3, rows_per_month=80)
    threads, processes, dask = copies(tmp_path / "plant", "threads", "processes", "dask")
    expected = pipeline(threads, executor="threads")
    assert expected[0]["overall_status"] == "success"
    assert expected[0]["collector_result"]["records_count"] > 0
    assert pipeline(processes, executor="processes") == expected
    assert pipeline(dask, executor="dask", scheduler=scheduler) == expected


def test_real_samples_on_a_dask_cluster(samples_root: Path, scheduler: str) -> None:
    threads, dask = copies(samples_root, "threads", "dask")
    expected = pipeline(threads)
    assert expected[0]["overall_status"] == "success"
    got = pipeline(dask, executor="dask", scheduler=scheduler)
    assert got == expected
    assert not list((dask / "agents").rglob("tasks/*")), "the run's task segments are removed"


# -- messy files: the one-pass outcome rebuilt from per-file outcomes -------------------------
BIG = 123456789012345678.0  # its text differs as a typed number and as concat's text


def messy_plant(root: Path) -> None:
    """Three files whose outcome depends on being normalised together: bad values in two
    columns of two files (column-major order), an Excel error cell, blank and totals rows, a
    column typed as numbers in one file and as text in another (quarantine text), a file with
    headers only."""
    write_schema(root)
    first = [good_row(i) for i in range(6)]
    first[1][3] = "abc"  # quantity: a bad value
    first[2][4] = "heavy"  # weight: a bad value
    first[3][4] = ExcelError("#N/A")
    first.insert(4, [None] * 6)  # a blank row
    first.append([None, None, "TOTAL", 600, 75.0, None])  # a totals row
    write_source(root, "records_201811.xlsx", first)
    second = [[dt.datetime(2018, 12, 1 + i), 1, BIG + i * 1000, 10 + i, 2.5, "PP"]
              for i in range(4)]  # itemCode read as numbers here, as text in the first file
    second[2][3] = 12.5  # quantity: not whole
    write_source(root, "records_201812.xlsx", second)
    write_source(root, "records_201901.xlsx", [])


def collected(root: Path, **options: Any) -> tuple[Any, dict[str, bytes]]:
    result = DataCollector(make_paths(root), max_retries=0, retry_wait=0.01, **options
                           ).process_all_data()
    return plain(result.to_dict()), outputs(root)


@pytest.mark.parametrize(("on_bad_rows", "on_error_cells"), [
    ("quarantine", "quarantine"), ("quarantine", "null"), ("fail", "null"),
])
def test_messy_files_give_the_same_outcome_in_worker_processes(
        tmp_path: Path, on_bad_rows: str, on_error_cells: str) -> None:
    messy_plant(tmp_path / "plant")
    threads, processes = copies(tmp_path / "plant", "threads", "processes")
    policy = {"on_bad_rows": on_bad_rows, "on_error_cells": on_error_cells}
    expected = collected(threads, **policy)
    (table,) = expected[0]["details"]
    if on_bad_rows == "fail":
        cells = table["error"]["cells"]
        assert [(c["file"], c["column"]) for c in cells] == [
            ("records_201811.xlsx", "quantity"), ("records_201812.xlsx", "quantity"),
            ("records_201811.xlsx", "weight")]  # column by column, as one pass found them
    else:
        assert table["rows_rejected"] == (4 if on_error_cells == "quarantine" else 3)
        assert {"quarantine", "totals_row", "headers_only"} <= set(table["warnings_by_kind"])
        quarantine = "agents/shared_db/dynamicDatabase/quarantine/records.parquet"
        assert quarantine in expected[1]
    assert collected(processes, executor="processes", **policy) == expected


def test_messy_files_on_a_dask_cluster(tmp_path: Path, scheduler: str) -> None:
    messy_plant(tmp_path / "plant")
    threads, dask = copies(tmp_path / "plant", "threads", "dask")
    expected = collected(threads, on_bad_rows="quarantine")
    assert collected(dask, executor="dask", scheduler=scheduler, on_bad_rows="quarantine"
                     ) == expected


def test_a_changed_file_is_never_served_from_an_earlier_task(
        records_root: Path, scheduler: str) -> None:
    """The same file name, path and cluster, other values: the new values are read."""
    write_source(records_root, "records_201811.xlsx", [good_row(i) for i in range(5)])
    first = collected(records_root, executor="dask", scheduler=scheduler, incremental=False)
    changed = [good_row(i) for i in range(5)]
    changed[0][2] = "CHANGED"
    write_source(records_root, "records_201811.xlsx", changed)
    (other,) = copies(records_root, "threads")
    again = collected(records_root, executor="dask", scheduler=scheduler, incremental=False)
    assert again == collected(other, incremental=False)
    assert again[1] != first[1]
    import pyarrow.parquet as pq

    codes = pq.read_table(output_path(records_root, "records")).column("itemCode").to_pylist()
    assert "CHANGED" in codes


def test_executor_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(root_dir=str(tmp_path)).executor == "auto"
    monkeypatch.setenv("DPO_EXECUTOR", "processes")
    assert load_settings(root_dir=str(tmp_path)).executor == "processes"
    with pytest.raises(ConfigError, match="executor must be one of"):
        load_settings(root_dir=str(tmp_path), executor="gpu")


def test_cli_runs_on_a_dask_scheduler(tmp_path: Path, scheduler: str) -> None:
    make_plant(tmp_path / "plant", months=2, rows_per_month=40)
    (threads,) = copies(tmp_path / "plant", "threads")
    dask = tmp_path / "plant"
    done = dpo("run", "--root", dask, "--no-notify", "--json", "--executor", "dask",
               "--scheduler", scheduler)
    assert done.returncode == 0, done.stderr
    assert dpo("run", "--root", threads, "--no-notify", "--json").returncode == 0
    assert outputs(dask) == outputs(threads)
    bad = dpo("run", "--root", threads, "--no-notify", "--executor", "gpu")
    assert bad.returncode == 2 and "executor must be one of" in bad.stdout + bad.stderr


# -- batches: a worker gets runs of consecutive files, not one file per task ------------------
def test_batches_are_consecutive_runs_shrinking_to_a_few_files() -> None:
    """Half of what is left per batch on two slots, down to MIN_BATCH files (a batch is one
    normalisation pass: each costs Arrow's per-call overhead once)."""
    paths = [Path(f"f{i:03d}") for i in range(120)]
    cut = batches(paths, 2)
    assert [len(b) for b in cut] == [60, 30, 15, 8, 4, 3]
    assert [p for b in cut for p in b] == paths
    assert [len(b) for b in batches(paths, 4)] == [30, 23, 17, 13, 10, 7, 5, 4, 4, 4, 3]
    assert [len(b) for b in batches(paths[:11], 2)] == [6, 4, 1]
    assert batches(paths[:1], 2) == [paths[:1]]
    assert batches([], 2) == []


class Recording:
    """Mixed into a real executor: what it was given is kept to look at, and its futures held
    (as a run's TaskAhead holds them)."""

    given: list[list[str]]
    futures: list[Any]

    def submit(self, task: BatchTask) -> Any:
        self.given.append([p.name for p in task.paths])
        self.futures.append(super().submit(task))  # type: ignore[misc]
        return self.futures[-1]


class RecordingPool(Recording, ProcessFiles):
    """The real process pool, recording."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.given, self.futures = [], []


def eleven_monthly_files(records_root: Path) -> tuple[list[str], list[Path], TableSpec]:
    """Eleven monthly sources of three rows each, their paths in date order, and their spec."""
    names = [f"records_2019{m:02d}.xlsx" for m in range(1, 12)]
    for i, name in enumerate(names):
        write_source(records_root, name, [good_row(10 * i + j) for j in range(3)])
    files = [source_dir(records_root) / name for name in names]
    spec = load_schema(records_root / "database/databaseSchemas.json", records_root
                       ).table("records")
    return names, files, spec


def test_a_table_goes_in_batches_and_comes_back_in_file_order(
        records_root: Path, tmp_path: Path) -> None:
    names, files, spec = eleven_monthly_files(records_root)
    pool = RecordingPool(2)
    with TaskAhead(pool, tmp_path / "tasks", RowPolicy(), max_retries=0, retry_wait=0) as ahead:
        ahead.prefetch(files, spec)
        assert [len(b) for b in pool.given] == [6, 4, 1]
        assert [n for b in pool.given for n in b] == names
        for future in pool.futures:
            future.result()  # every task has ended: the change below comes after
        changed = files[4]
        before = Fingerprint.of(changed)
        write_source(records_root, names[4], [good_row(500 + j) for j in range(5)])
        os.utime(changed, ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
        reads = [read for batch in ahead.run(files, spec) for read in batch.files]
    assert [r.file for r in reads] == names
    assert [r.rows for r in reads] == [5 if n == names[4] else 3 for n in names]
    assert pool.given[-1] == names[:6]  # its batch read again: its files are one pass
    assert len(pool.given) == 3 + 1


class GatedPool(EarlyPool):
    """A real early pool whose workers are held back until `gate` opens (a slow start)."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.gate = threading.Event()

    def started(self) -> Any:
        self.gate.wait()
        return super().started()


def test_batches_run_here_until_the_workers_are_up_and_give_the_same_outcome(
        records_root: Path, tmp_path: Path) -> None:
    """The first batch runs in this process while the pool cannot start (the pool is given
    nothing before its workers are up), the others in the workers once the gate opens: the
    outcomes are those of a pool that ran them all."""
    names, files, spec = eleven_monthly_files(records_root)
    gated = GatedPool(2)
    with TaskAhead(ProcessFiles(2, gated), tmp_path / "gated", RowPolicy(), max_retries=0,
                   retry_wait=0) as ahead:
        ahead.prefetch(files, spec)
        try:  # done while the gate is closed: in this process
            ahead._ahead[files[0]]._pending.result(timeout=30)
        finally:
            gated.gate.set()
        mixed = [(r.file, r.rows, r.columns) for b in ahead.run(files, spec) for r in b.files]
    with TaskAhead(ProcessFiles(2), tmp_path / "pool", RowPolicy(), max_retries=0,
                   retry_wait=0) as ahead:
        pooled = [(r.file, r.rows, r.columns) for b in ahead.run(files, spec) for r in b.files]
    assert mixed == pooled and [m[0] for m in mixed] == names


def test_a_dask_executor_has_a_slot_per_worker_thread(scheduler: str) -> None:
    executor = DaskFiles(5, scheduler)
    try:
        assert executor.slots == 2  # the cluster's two threads, not the `workers` setting
    finally:
        executor.close()


def test_a_local_cluster_runs_its_workers_without_dasks_malloc_trim(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 for their workers (the per-file task
    then ran ~30% slower) and write their variables into this process's environment."""
    import dask

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # the fixture's cluster set it
    before = dict(os.environ)
    executor = DaskFiles(1, None)
    try:
        got = executor._client.run(lambda: (
            os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS"),
            dask.config.get("distributed.worker.profile.enabled"),
            dask.config.get("distributed.admin.tick.interval")))
    finally:
        executor.close()
    assert list(got.values()) == [(None, "1", False, "1s")]  # dask's OMP_NUM_THREADS kept
    assert dict(os.environ) == before
    assert dask.config.get("distributed.worker.profile.enabled") is True  # only the cluster's


class RecordingDask(Recording, DaskFiles):
    """The real Dask executor, recording: Dask keeps a held future's result under the task's
    key."""

    def __init__(self, scheduler: str) -> None:
        super().__init__(2, scheduler)
        self.given, self.futures = [], []


def test_a_file_changed_during_a_run_is_read_again_on_dask_not_served_its_earlier_task(
        records_root: Path, tmp_path: Path, scheduler: str) -> None:
    """The changed file's batch is submitted again with the very same arguments (paths, spec,
    scratch folder): only pure=False keeps Dask from handing back the first task's result."""
    names, files, spec = eleven_monthly_files(records_root)
    executor = RecordingDask(scheduler)
    try:
        with TaskAhead(executor, tmp_path / "tasks", RowPolicy(), max_retries=0,
                       retry_wait=0) as ahead:
            ahead.prefetch(files, spec)
            alone = names[7]
            batch = names[6:10]
            assert batch in executor.given  # resubmitted as it was
            for future in executor.futures:
                future.result()
            before = Fingerprint.of(files[7])
            write_source(records_root, alone, [good_row(700 + j) for j in range(5)])
            os.utime(files[7], ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
            reads = [read for batch in ahead.run(files, spec) for read in batch.files]
    finally:
        executor.close()
    assert executor.given[-1] == batch and executor.given.count(batch) == 2
    assert [r.rows for r in reads] == [5 if n == alone else 3 for n in names]


# -- auto: threads or processes, chosen from the files to read (collect.early) -----------------
def test_auto_reads_many_files_in_worker_processes_and_publishes_what_threads_publish(
        tmp_path: Path) -> None:
    """A fresh run of AUTO_MIN_FILES files or more goes to worker processes started before
    the data stack's import when the machine has the idle cores for them (the run logs the
    load it decided on: the choice is checked against the rule), a rerun with one file
    changed reads it in this process; both publish exactly what threads publish."""
    from dpo.demo.plant import generate_plant, write_monthly_report

    generate_plant(tmp_path / "plant", months=AUTO_MIN_FILES, rows_per_month=20, po_files=2,
                   seed=5)
    threads, auto = copies(tmp_path / "plant", "threads", "auto")
    expected = pipeline(threads, executor="threads")
    assert expected[0]["overall_status"] == "success"
    said: list[str] = []
    sink = logger.add(said.append, level="DEBUG", format="{message}")
    try:
        assert pipeline(auto) == expected  # the default: auto
        for root in (threads, auto):
            report = sorted((root / "database/dynamicDatabase/monthlyReports_history"
                             ).iterdir())[-1]
            write_monthly_report(report, month="2020-01", n_rows=20, seed=9)
        expected = pipeline(threads, executor="threads")
        assert expected[0]["collector_result"]["details"][0]["files_read"] == 1
        assert pipeline(auto) == expected
    finally:
        logger.remove(sink)
    chosen = [re.fullmatch(r"Phase 1 executor: (\w+) \((\d+) file\(s\) to read, load "
                           r"([\d.]+)\)\n", line) for line in said]
    found = [(m.group(1), int(m.group(2)), float(m.group(3))) for m in chosen if m]
    fresh, threads_rerun, auto_rerun = found
    files = AUTO_MIN_FILES + 2
    workers = default_workers()
    assert fresh[:2] == (choose_executor("auto", plans_of(tmp_path, files), workers,
                                         load=fresh[2]), files)
    assert threads_rerun[:2] == auto_rerun[:2] == ("threads", 1)


def plans_of(folder: Path, n: int) -> dict[str, TablePlan]:
    files = [folder / f"f{i}.xlsx" for i in range(n)]
    return {"t": TablePlan(files, [], files)}


def test_auto_chooses_processes_only_for_enough_files_and_idle_cores(tmp_path: Path) -> None:
    many, few = plans_of(tmp_path, AUTO_MIN_FILES), plans_of(tmp_path, AUTO_MIN_FILES - 1)
    assert MIN_IDLE_CORES == 1.5
    assert choose_executor("auto", many, 2, load=0.4, cores=2) == "processes"  # this machine
    assert choose_executor("auto", many, 2, load=0.6, cores=2) == "threads"  # 1.4 idle cores
    assert choose_executor("auto", few, 2, load=0, cores=2) == "threads"
    assert choose_executor("auto", many, 4, load=2.4, cores=4) == "processes"
    assert choose_executor("auto", many, 4, load=2.6, cores=4) == "threads"
    assert choose_executor("auto", many, 1, load=0, cores=8) == "threads"  # one worker
    assert choose_executor("auto", many, 2, load=0, cores=1) == "threads"  # one core
    assert choose_executor("threads", many, 4, load=0, cores=8) == "threads"  # a setting is kept
    assert choose_executor("processes", few, 4, load=99, cores=1) == "processes"
    assert choose_executor("dask", plans_of(tmp_path, 0), 4) == "dask"
