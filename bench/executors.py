"""Phase 1's batch task (read + normalise + row hashes + segment) on the 120-report plant:
one worker in this process vs the `processes` and `dask` executors with 2 workers.

    .venv/bin/python bench/executors.py [--plant bench/out/plant] [--repeat 5] [--rounds 3]

Each figure is the median of --repeat passes over the 120 monthly reports, outcomes put
together as a run does (collect.fanout.combine: the segments mapped back, warnings ordered).
Each kind runs alone in a fresh process (an idle LocalCluster's threads and workers use ~8%
of a core, and a closed one leaves threads behind: either would slow the next kind), one
after the other, in --rounds rounds. `first` is an executor's first pass (its workers import
the stack), left out of the median; `start` is its start-up (pool or LocalCluster), paid
once per run.

`pair` is this work's own ceiling on the machine: two worker processes each given half of
the files as one task (no scheduling at all). Speed-ups are against the mean of two inline
figures, one at each end of the round (the machine drifts). `others` is the CPU
time other processes used during a round: the machine's busy time (/proc/stat) less what
each fresh process and its workers used (measured before they stop; their start and stop
after that count as others'). Above ~1 CPU-s in a round, the figures are not an idle
machine's. Run `bench/run.py` first (it makes the plant), or pass --plant. Nothing here is
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from dpo.collect.batchtask import BatchTask
from dpo.collect.cluster import run_batch_task
from dpo.collect.executors import FileExecutor, Pending, TaskAhead, open_executor
from dpo.collect.fanout import combine
from dpo.config import RowPolicy
from dpo.schema import TableSpec, load_schema

KINDS = ("inline", "processes", "dask")


class InProcess:
    """One worker, this process: each task runs when submitted (the 1-worker baseline)."""

    slots = 1

    def submit(self, task: BatchTask) -> Pending:
        done: Future[Any] = Future()
        done.set_result(run_batch_task(task))
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


def executor_seconds(repeat: int, plant: Path, kind: str, workers: int = 2) -> dict[str, float]:
    """One kind alone in this process (no other executor's threads or workers running):
    started, a first pass, then --repeat passes; closed."""
    spec, files = _plant(plant)
    scratch = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    executor, start = _start(kind, workers)
    try:
        times = [_one_pass(executor, spec, files, scratch) for _ in range(repeat + 1)]
        cpu = _ours()  # before the workers stop: a pool's are the forkserver's children
    finally:
        executor.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": statistics.median(times[1:]), "first_seconds": times[0], "start": start,
            "cpu": cpu}


def pair_seconds(repeat: int, plant: Path) -> dict[str, float]:
    """Two worker processes, each given half of the files as one task: the ceiling."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    spec, files = _plant(plant)
    scratch = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    halves = [BatchTask(tuple(part), spec, RowPolicy(), 0, 0, scratch)
              for part in (files[: len(files) // 2], files[len(files) // 2:])]
    times = []
    try:
        with ProcessPoolExecutor(2, mp_context=get_context("forkserver")) as pool:
            for _ in range(repeat + 1):
                began = time.perf_counter()
                for done in [pool.submit(run_batch_task, half) for half in halves]:
                    done.result()
                times.append(time.perf_counter() - began)
            cpu = _ours()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": statistics.median(times[1:]), "cpu": cpu}


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


def one_round(repeat: int, plant: Path) -> tuple[dict[str, dict[str, float]], float]:
    """Each kind, then the pair, each in a fresh process of its own (a closed LocalCluster
    leaves threads behind in its process); and the CPU that other processes used meanwhile:
    the machine's, less what each fresh process and its workers said they used."""
    def alone(kind: str) -> dict[str, float]:
        done = subprocess.run([sys.executable, __file__, "--plant", str(plant), "--repeat",
                               str(repeat), "--alone", kind], check=True, capture_output=True,
                              text=True)
        found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return found

    busy = _busy_seconds()
    found = {kind: alone(kind) for kind in (*KINDS, "pair")}
    again = alone("inline")  # the machine drifts (±10% within minutes): inline at both ends
    used = sum(f["cpu"] for f in found.values()) + again["cpu"]
    found["inline"]["seconds_after"] = again["seconds"]
    return found, max(0.0, _busy_seconds() - busy - used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", type=Path, default=Path(__file__).parent / "out" / "plant")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alone", choices=[*KINDS, "pair"], help="one kind, as JSON")
    args = parser.parse_args()
    if args.alone is not None:
        print(json.dumps(pair_seconds(args.repeat, args.plant) if args.alone == "pair" else
                         executor_seconds(args.repeat, args.plant, args.alone)))
        return
    ratios: dict[str, list[float]] = {kind: [] for kind in (*KINDS, "pair")}
    for n in range(args.rounds):
        load = os.getloadavg()[0]
        found, others = one_round(args.repeat, args.plant)
        inline = found["inline"]
        one = (inline["seconds"] + inline["seconds_after"]) / 2
        print(f"round {n + 1} (load average {load:.2f}, others used {others:.2f} CPU-s):")
        for kind, figure in found.items():
            ratios[kind].append(one / figure["seconds"])
            extra = (" (the ceiling: no scheduling)" if kind == "pair" else
                     f" and {inline['seconds_after']:.3f} s at the round's end" if kind == "inline"
                     else f" (first pass {figure['first_seconds']:.3f} s, "
                          f"start {figure['start']:.2f} s)")
            ratio = f"; {ratios[kind][-1]:.2f}x" if kind != "inline" else f" (mean {one:.3f} s)"
            print(f"  {kind:<10} {figure['seconds']:.3f} s{extra}{ratio}")
    print("speed-up vs 1 worker, median of rounds: " + ", ".join(
        f"{kind} {statistics.median(r):.2f}x" for kind, r in ratios.items() if kind != "inline"))


if __name__ == "__main__":
    main()
