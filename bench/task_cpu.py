"""CPU of Phase 1's work on one table, the two ways dpo does it, in this process, one worker:

    .venv/bin/python bench/task_cpu.py [--plant bench/out/real120] [--repeat 5]

  one_pass   the threads path: every file read (excel.pool.read_one), then one normalisation
             over all of them (collect.filetask.screen_sheets) and the pieces with their row
             hashes (collect.fanout.split_pieces)
  per_file   what a worker process or Dask runs: each file's task (read, normalise, row
             hashes, its IPC segment written; collect.cluster.run_tasks), then the outcomes
             put together (collect.fanout.combine, segments mapped back)

on the plant's monthly reports (productRecords), alternating, CPU seconds (process_time),
medians after a first pass of each. Why `auto` does not pick worker processes on two cores.
Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from dpo.collect.cluster import run_tasks
from dpo.collect.fanout import combine, split_pieces
from dpo.collect.filetask import FileTask, screen_sheets
from dpo.config import RowPolicy
from dpo.excel.pool import read_one
from dpo.schema import load_schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", type=Path, default=Path(__file__).parent / "out" / "real120")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    spec = load_schema(args.plant / "database/databaseSchemas.json", args.plant
                       ).table("productRecords")
    files = sorted((args.plant / "database/dynamicDatabase/monthlyReports_history"
                    ).glob("*.xlsb"))
    policy, scratch = RowPolicy(), Path(tempfile.mkdtemp(prefix="dpo-bench-"))

    def one_pass() -> None:
        sheets = [read_one(path, spec, 0, 0, []) for path in files]
        split_pieces(screen_sheets(files, sheets, spec, policy).norm, len(files))

    def per_file() -> None:
        outcomes = run_tasks([FileTask(path, spec, policy, 0, 0, scratch) for path in files])
        combine(outcomes, spec, [], on_retry=print, on_done=lambda _n: None)
        shutil.rmtree(scratch, ignore_errors=True)

    runs: dict[str, list[float]] = {"one_pass": [], "per_file": []}
    try:
        for i in range(args.repeat + 1):
            for name, work in (("one_pass", one_pass), ("per_file", per_file)):
                started = time.process_time()
                work()
                if i:  # the first pass of each warms the imports and the page cache
                    runs[name].append(time.process_time() - started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    one, per = (statistics.median(runs[k]) for k in ("one_pass", "per_file"))
    print(f"{len(files)} files: one pass {one:.3f} CPU-s, per-file tasks {per:.3f} CPU-s "
          f"({per / one:.2f}x)")


if __name__ == "__main__":
    main()
