"""Phase 1's per-file work (read + normalise + row hashes + segment) on the 120-report plant:
one worker in this process vs the `processes` and `dask` executors with 2 workers.

    .venv/bin/python bench/executors.py [--plant bench/out/plant] [--repeat 5]

Each figure is the median of --repeat passes over the 120 monthly reports, outcomes put
together as a run does (collect.fanout.combine: the segments mapped back, warnings ordered).
`start` is the executor's start-up (pool or LocalCluster), paid once per run; the passes
after the first reuse the started workers, as a long-lived cluster would. Run `bench/run.py`
first (it makes the plant), or pass --plant. Nothing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from dpo.collect.executors import FileExecutor, Pending, TaskAhead, open_executor
from dpo.collect.fanout import combine
from dpo.collect.filetask import FileTask, run_file_tasks
from dpo.config import RowPolicy
from dpo.schema import load_schema


class InProcess:
    """One worker, this process: each task runs when submitted (the 1-worker baseline)."""

    slots = 1

    def submit(self, tasks: list[FileTask]) -> Pending:
        done: Future[Any] = Future()
        done.set_result(run_file_tasks(tasks))
        return done

    def close(self) -> None:
        """Nothing was started."""


def executor_seconds(repeat: int, plant: Path, kind: str, workers: int = 2) -> dict[str, float]:
    spec = load_schema(plant / "database/databaseSchemas.json", plant).table("productRecords")
    files = sorted((plant / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    scratch = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    started = time.perf_counter()
    executor: FileExecutor | None = (InProcess() if kind == "inline"
                                     else open_executor(kind, workers, None))
    assert executor is not None
    start = time.perf_counter() - started
    times = []
    try:
        for _ in range(repeat):
            ahead = TaskAhead(executor, scratch, RowPolicy(), max_retries=0, retry_wait=0)
            began = time.perf_counter()
            got = combine(ahead.run(files, spec), spec, [], on_retry=print,
                          on_done=lambda _n: None)
            times.append(time.perf_counter() - began)
            assert sum(p.rows for p in got.pieces) > 0
    finally:
        executor.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": statistics.median(times), "first_seconds": times[0], "start": start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", type=Path, default=Path(__file__).parent / "out" / "plant")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    found = {kind: executor_seconds(args.repeat, args.plant, kind)
             for kind in ("inline", "processes", "dask")}
    one = found["inline"]["seconds"]
    for kind, figure in found.items():
        print(f"{kind:<10} {figure['seconds']:.3f} s (first pass {figure['first_seconds']:.3f} s, "
              f"start {figure['start']:.2f} s); speed-up vs 1 worker {one / figure['seconds']:.2f}x")


if __name__ == "__main__":
    main()
