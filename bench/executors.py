"""Phase 1's per-file work (read + normalise + row hashes + segment) on the 120-report plant:
one worker in this process vs the `processes` and `dask` executors with 2 workers.

    .venv/bin/python bench/executors.py [--plant bench/out/plant] [--repeat 5]

Each figure is the median of --repeat passes over the 120 monthly reports, outcomes put
together as a run does (collect.fanout.combine: the segments mapped back, warnings ordered).
The executors are started first and the passes interleaved (inline, processes, dask, then
again), so that what other processes do on the machine falls on all of them alike; `first`
is each executor's first pass (its workers import the stack), left out of the median; `start`
is the executor's start-up (pool or LocalCluster), paid once per run.

`pair` is this work's own ceiling on the machine: two worker processes each given half of
the files as one task (no scheduling at all), against the inline median. `others` is the CPU
time that processes other than this one and its children used during the passes (from
/proc/stat): above ~0.1 s per second of passes, the figures are not an idle machine's.
Run `bench/run.py` first (it makes the plant), or pass --plant. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from dpo.collect.executors import FileExecutor, Pending, TaskAhead, open_executor
from dpo.collect.fanout import combine
from dpo.collect.filetask import FileTask, run_file_tasks
from dpo.config import RowPolicy
from dpo.schema import TableSpec, load_schema

KINDS = ("inline", "processes", "dask")


class InProcess:
    """One worker, this process: each task runs when submitted (the 1-worker baseline)."""

    slots = 1

    def submit(self, tasks: list[FileTask]) -> Pending:
        done: Future[Any] = Future()
        done.set_result(run_file_tasks(tasks))
        return done

    def close(self) -> None:
        """Nothing was started."""


def _plant(plant: Path) -> tuple[TableSpec, list[Path]]:
    spec = load_schema(plant / "database/databaseSchemas.json", plant).table("productRecords")
    files = sorted((plant / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    return spec, files


def _one_pass(executor: FileExecutor, spec: TableSpec, files: list[Path], scratch: Path
              ) -> float:
    ahead = TaskAhead(executor, scratch, RowPolicy(), max_retries=0, retry_wait=0)
    began = time.perf_counter()
    got = combine(ahead.run(files, spec), spec, [], on_retry=print, on_done=lambda _n: None)
    seconds = time.perf_counter() - began
    assert sum(p.rows for p in got.pieces) > 0
    shutil.rmtree(ahead.scratch, ignore_errors=True)
    return seconds


def _start(kind: str, workers: int) -> tuple[FileExecutor, float]:
    started = time.perf_counter()
    executor = InProcess() if kind == "inline" else open_executor(kind, workers, None)
    assert executor is not None
    return executor, time.perf_counter() - started


def interleaved(repeat: int, plant: Path, kinds: tuple[str, ...] = KINDS, workers: int = 2
                ) -> dict[str, dict[str, float]]:
    """Every kind's passes, one of each kind per round; per kind: median, first, start."""
    spec, files = _plant(plant)
    scratch = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    started = {kind: _start(kind, workers) for kind in kinds}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        for _ in range(repeat + 1):
            for kind in kinds:
                times[kind].append(_one_pass(started[kind][0], spec, files, scratch))
    finally:
        for executor, _ in started.values():
            executor.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return {kind: {"seconds": statistics.median(times[kind][1:]), "first_seconds": times[kind][0],
                   "start": started[kind][1]} for kind in kinds}


def executor_seconds(repeat: int, plant: Path, kind: str, workers: int = 2) -> dict[str, float]:
    """One kind alone (bench/run.py's tasks_*)."""
    return interleaved(repeat, plant, (kind,), workers)[kind]


def pair_seconds(repeat: int, plant: Path) -> float:
    """Two worker processes, each given half of the files as one task: the ceiling."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    spec, files = _plant(plant)
    scratch = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    halves = [[FileTask(p, spec, RowPolicy(), 0, 0, scratch) for p in part]
              for part in (files[: len(files) // 2], files[len(files) // 2:])]
    times = []
    try:
        with ProcessPoolExecutor(2, mp_context=get_context("forkserver")) as pool:
            for _ in range(repeat + 1):
                began = time.perf_counter()
                for done in [pool.submit(run_file_tasks, half) for half in halves]:
                    done.result()
                times.append(time.perf_counter() - began)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return statistics.median(times[1:])


def _busy_seconds() -> float:
    """CPU time the whole machine spent (every core), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _ours() -> float:
    """CPU time of this process and its descendants, alive or reaped (by whichever of them:
    pool workers are the forkserver's children)."""
    import psutil  # a dependency of distributed (dpo[dask])

    me = psutil.Process()
    return float(sum(sum(p.cpu_times()[:4]) for p in [me, *me.children(recursive=True)]))


def measured(what: Callable[[], Any]) -> tuple[Any, float, float]:
    """`what`'s value, its wall seconds and the CPU seconds others used meanwhile."""
    busy, ours, began = _busy_seconds(), _ours(), time.perf_counter()
    value = what()
    seconds = time.perf_counter() - began
    return value, seconds, max(0.0, (_busy_seconds() - busy) - (_ours() - ours))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", type=Path, default=Path(__file__).parent / "out" / "plant")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()[0]:.2f}")
    found, seconds, others = measured(lambda: interleaved(args.repeat, args.plant))
    pair, _, pair_others = measured(lambda: pair_seconds(args.repeat, args.plant))
    one = found["inline"]["seconds"]
    for kind, figure in found.items():
        print(f"{kind:<10} {figure['seconds']:.3f} s (first pass {figure['first_seconds']:.3f} s, "
              f"start {figure['start']:.2f} s); speed-up vs 1 worker {one / figure['seconds']:.2f}x")
    print(f"{'pair':<10} {pair:.3f} s; the ceiling for 2 workers on this work {one / pair:.2f}x")
    print(f"others used {others:.2f} CPU-s in {seconds:.1f} s of passes "
          f"(+{pair_others:.2f} during pair); load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
