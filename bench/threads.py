"""How far threads can take fastexcel on the 120-report plant: its parse vs its Arrow export.

    .venv/bin/python bench/threads.py [--plant bench/out/plant] [--repeat 7]

Reads every monthly report with fastexcel alone (no dpo code), with 1 and 2 threads, three
ways: `load_sheet` only (calamine's parse), the whole read (`load_sheet` + `to_arrow`), and
dpo's own `read_files`. Prints medians and speed-ups. Run `bench/run.py` first (it makes the
plant). Nothing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fastexcel
from readfiles import read_files

from dpo.schema import load_schema


def median_seconds(repeat: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def each(files: list[Path], threads: int, read: Callable[[Path], Any]) -> Callable[[], Any]:
    if threads == 1:
        return lambda: [read(path) for path in files]
    return lambda: list(ThreadPoolExecutor(threads).map(read, files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plant", type=Path, default=Path(__file__).parent / "out" / "plant")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    spec = load_schema(args.plant / "database/databaseSchemas.json",
                       args.plant).table("productRecords")
    files = sorted((args.plant / "database/dynamicDatabase/monthlyReports_history").glob("*.xlsb"))
    ways: dict[str, Callable[[int], Callable[[], Any]]] = {
        "fastexcel load_sheet only": lambda n: each(
            files, n, lambda p: fastexcel.read_excel(p).load_sheet(0)),
        "fastexcel load_sheet + to_arrow": lambda n: each(
            files, n, lambda p: fastexcel.read_excel(p).load_sheet(0).to_arrow()),
        "bench/readfiles.read_files": lambda n: lambda: read_files(
            files, spec, workers=n, max_retries=0, retry_wait=0, on_retry=print,
            on_done=lambda _n: None),
    }
    for name, way in ways.items():
        one, two = (median_seconds(args.repeat, way(n)) for n in (1, 2))
        print(f"{name:<34} 1 thread {one:.3f} s  2 threads {two:.3f} s  speed-up {one / two:.2f}x")


if __name__ == "__main__":
    main()
