"""In-process cost of Phase 1's merge stage (duplicates + content hash) for one table.

    PYTHONPATH=src .venv/bin/python bench/merge_time.py [--plant bench/out/plant]
        [--work /tmp/dpo-merge-time] [--table productRecords] [--changes 5] [--replays 15]

Copies the plant's database/ into --work (the plant itself is never written), then:
  fresh       one collector run with no cache (every file read);
  onechanged  --changes runs, each after the last monthly report was rewritten (one file read,
              the other 119 served from the cache).
The collector's own calls of the stage's functions (whichever of `merge_pieces`, `content_hash`,
`content_hash_of`, `row_hashes` dpo.collect.collector uses; outermost calls only, so nothing is counted
twice) are timed for --table. Since one call is noisy on a shared machine, each call is also
replayed --replays times with the same arguments after the run (all are pure), and the median
is reported. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dpo.collect.collector as collect
from dpo.config import load_settings, resolve_paths
from dpo.demo.plant import write_monthly_report

STAGE = ("merge_pieces", "content_hash", "content_hash_of", "row_hashes")
Call = tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any], float]


class Recorder:
    """Wraps the stage's functions in dpo.collect.collector; keeps each outermost call of --table."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.current = ""
        self.depth = 0
        self.calls: list[Call] = []
        for name in STAGE:
            if hasattr(collect, name):
                setattr(collect, name, self._wrap(name, getattr(collect, name)))
        collect_table = collect.DataCollector._collect

        def marked(owner: collect.DataCollector, run: Any) -> Any:
            self.current = run.spec.name
            return collect_table(owner, run)

        collect.DataCollector._collect = marked  # type: ignore[method-assign]

    def _wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - started
                self.depth -= 1
                if self.depth == 0 and self.current == self.table:
                    self.calls.append((name, func, args, kwargs, seconds))

        return timed

    def take(self, replays: int) -> tuple[float, float, str]:
        """(seconds as run, median seconds replayed, which calls) of the calls so far."""
        calls, self.calls = self.calls, []
        once = sum(c[4] for c in calls)
        parts = []
        for name, func, args, kwargs, _ in calls:
            times = []
            for _ in range(replays):
                started = time.perf_counter()
                func(*args, **kwargs)
                times.append(time.perf_counter() - started)
            parts.append((name, statistics.median(times)))
        replayed = sum(seconds for _, seconds in parts)
        return once, replayed, " + ".join(f"{name} {s * 1e3:.1f}" for name, s in parts)


def run_collector(root: Path) -> None:
    paths = resolve_paths(load_settings(root_dir=str(root)))
    result = collect.DataCollector(paths, workers=1, max_retries=0).process_all_data()
    if result.errors:
        raise SystemExit(f"collector failed: {result.errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", type=Path, default=Path(__file__).parent / "out/plant")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dpo-merge-time"))
    parser.add_argument("--table", default="productRecords")
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--replays", type=int, default=15)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    shutil.copytree(args.plant / "database", args.work / "database")
    recorder = Recorder(args.table)
    run_collector(args.work)
    rows: list[tuple[str, float, float, str]] = [("fresh", *recorder.take(args.replays))]
    months = sorted((args.work / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    for seed in range(args.changes):
        write_monthly_report(months[-1], month="2028-10", n_rows=700, seed=100 + seed)
        run_collector(args.work)
        rows.append((f"onechanged#{seed}", *recorder.take(args.replays)))
    print(f"{'run':<14} {'as run ms':>10} {'replayed ms':>12}  calls")
    for name, once, replayed, calls in rows:
        print(f"{name:<14} {once * 1e3:>10.1f} {replayed * 1e3:>12.1f}  {calls}")
    changed = [r[2] for r in rows[1:]]
    if changed:
        print(f"onechanged median replayed: {statistics.median(changed) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
