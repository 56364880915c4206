"""CPU of Phase 1's work on one table, cut into batches in several ways, in this process, one
worker:

    .venv/bin/python bench/task_cpu.py [--plant bench/out/real120] [--repeat 5]
        [--cut one_pass --cut per_file --cut run --cut 60,60 ...]

  one_pass   the threads path: every file read (excel.pool.read_one), then one batch of all of
             them normalised in this process (collect.batchtask.screen_batch, held in memory),
             put together (collect.fanout.combine)
  per_file   what a worker did before batches were one pass: one batch per file (read,
             normalise, row hashes, its IPC segment written; collect.cluster.run_batch_task),
             then the batches put together (combine, segments mapped back)
  run        the batches a 2-worker process pool is given (collect.executors.batches)
  A,B,...    batches of these many files (the last takes what is left)

on the plant's monthly reports (productRecords), alternating, CPU seconds (process_time),
medians after a first pass of each. What a batch costs besides its files tells how many
batches a pool can afford. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dpo.collect.batchtask import BatchTask, FileRead, screen_batch
from dpo.collect.cluster import run_batch_task
from dpo.collect.executors import batches
from dpo.collect.fanout import combine
from dpo.config import RowPolicy
from dpo.excel.pool import read_one
from dpo.schema import TableSpec, load_schema


def cut_of(name: str, files: list[Path]) -> list[list[Path]]:
    if name == "per_file":
        return [[path] for path in files]
    if name == "run":
        return batches(files, 2)
    sizes, cut, start = [int(n) for n in name.split(",")], [], 0
    for size in sizes[:-1]:
        cut.append(files[start:start + size])
        start += size
    return [*cut, files[start:]]


def work_of(name: str, files: list[Path], spec: TableSpec, scratch: Path
            ) -> Callable[[], None]:
    policy = RowPolicy()
    if name == "one_pass":
        def one_pass() -> None:
            sheets = [read_one(path, spec, 0, 0, []) for path in files]
            batch = screen_batch(files, sheets, [FileRead(p.name) for p in files], spec, policy,
                                 None)
            combine([batch], spec, [], on_retry=print, on_done=lambda _n: None)
        return one_pass
    cut = cut_of(name, files)

    def batched() -> None:
        outcomes = [run_batch_task(BatchTask(tuple(paths), spec, policy, 0, 0, scratch))
                    for paths in cut]
        combine(outcomes, spec, [], on_retry=print, on_done=lambda _n: None)
        shutil.rmtree(scratch, ignore_errors=True)
    return batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", type=Path, default=Path(__file__).parent / "out" / "real120")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cut", action="append")
    args = parser.parse_args()
    spec = load_schema(args.plant / "database/databaseSchemas.json", args.plant
                       ).table("productRecords")
    files = sorted((args.plant / "database/dynamicDatabase/monthlyReports_history"
                    ).glob("*.xlsb"))
    names = args.cut or ["one_pass", "per_file", "run"]
    scratch = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    works = {name: work_of(name, files, spec, scratch) for name in names}
    runs: dict[str, list[float]] = {name: [] for name in names}
    try:
        for i in range(args.repeat + 1):
            for name, work in works.items():
                started = time.process_time()
                work()
                if i:  # the first pass of each warms the imports and the page cache
                    runs[name].append(time.process_time() - started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = statistics.median(runs[names[0]])
    print(f"{len(files)} files, CPU-s (median of {args.repeat}), x {names[0]}:")
    for name in names:
        batches_n = 1 if name == "one_pass" else len(cut_of(name, files))
        cpu = statistics.median(runs[name])
        print(f"  {name:<12} {batches_n:>4} batch(es) {cpu:7.3f}  {cpu / base:5.2f}x")


if __name__ == "__main__":
    main()
