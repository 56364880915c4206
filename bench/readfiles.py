"""`read_files`: every file's raw sheet through dpo's read-ahead pool, in the order given; the
benchmarks' measure of the read alone (bench/run.py, bench/threads.py, bench/read_cpu.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dpo.excel.pool import ReadAhead
from dpo.excel.reader import RawSheet
from dpo.schema import TableSpec


def read_files(
    files: list[Path], spec: TableSpec, *, workers: int, max_retries: int, retry_wait: float,
    on_retry: Callable[[str], None], on_done: Callable[[int], None],
) -> list[RawSheet]:
    """Every file's raw sheet, in the order given (a pool of `workers` threads)."""
    with ReadAhead(workers=workers, max_retries=max_retries, retry_wait=retry_wait) as pool:
        return pool.read(files, spec, on_retry=on_retry, on_done=on_done)
