"""CPU time of reading every source file of a plant (the per-file read alone: open, parse,
the sheet scan for error cells, merges and lossy numbers), one thread, median of 5.

    .venv/bin/python bench/read_cpu.py bench/out/plant [bench/out/real]

CPU time (process_time), not wall time: it moves little when the machine is shared, so a
before/after pair run in one session compares the code, not the neighbours.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from readfiles import read_files

from dpo.schema import load_schema


def cpu_seconds(root: Path, repeat: int = 5) -> float:
    schema = load_schema(root / "database/databaseSchemas.json", root)
    jobs = [(spec, sorted((root / "database/dynamicDatabase" / spec.path.name).iterdir()))
            for spec in schema.dynamic]
    times = []
    for _ in range(repeat):
        started = time.process_time()
        for spec, files in jobs:
            read_files(files, spec, workers=1, max_retries=0, retry_wait=0, on_retry=print,
                       on_done=lambda _n: None)
        times.append(time.process_time() - started)
    return statistics.median(times)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        root = Path(folder)
        count = sum(1 for _ in (root / "database/dynamicDatabase").rglob("*.xls*"))
        seconds = cpu_seconds(root)
        print(f"{root.name}: {count} files, CPU {seconds:.3f} s ({seconds / count * 1000:.2f} ms a file)")
