"""Reading many source files at once: a process per core, results merged in file order.

fastexcel holds the GIL while it parses, so threads do not overlap; forked processes do. The
children only parse (fastexcel, zipfile) and send Arrow tables back; everything that decides
anything stays in the parent. A file that fails raises in the parent exactly as it would have
serially, with its retries already spent in the child.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from dpo.excel import RawSheet, read_sheet
from dpo.retry import with_retries
from dpo.schema import RENAMES, TableSpec

# Below this many files a pool costs more than it saves.
MIN_FILES_FOR_POOL = 8


def read_one(path: Path, spec: TableSpec, max_retries: int, retry_wait: float,
             retries: list[str]) -> RawSheet:
    return with_retries(
        lambda: read_sheet(path, spec.sheet_name, spec.columns, RENAMES,
                           numeric=spec.float_columns),
        max_retries=max_retries, what=path.name, base_wait=retry_wait, on_retry=retries.append)


def _read_chunk(files: list[Path], spec: TableSpec, max_retries: int, retry_wait: float
                ) -> tuple[list[RawSheet], list[str]]:
    retries: list[str] = []
    return [read_one(p, spec, max_retries, retry_wait, retries) for p in files], retries


def read_files(
    files: list[Path], spec: TableSpec, *, workers: int, max_retries: int, retry_wait: float,
    on_retry: Callable[[str], None], on_done: Callable[[int], None],
) -> list[RawSheet]:
    """Every file's raw sheet, in the order given."""
    if workers < 2 or len(files) < MIN_FILES_FOR_POOL or not _can_fork():
        sheets = []
        for path in files:
            retries: list[str] = []
            try:
                sheets.append(read_one(path, spec, max_retries, retry_wait, retries))
            finally:  # a file that failed after its retries still reports them
                for message in retries:
                    on_retry(message)
            on_done(1)
        return sheets
    size = -(-len(files) // workers)
    chunks = [files[i:i + size] for i in range(0, len(files), size)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(len(chunks), mp_context=context) as pool:
        futures = [pool.submit(_read_chunk, chunk, spec, max_retries, retry_wait)
                   for chunk in chunks]
        sheets = []
        for future in futures:
            part, retries = future.result()  # re-raises the child's DpoError here
            for message in retries:
                on_retry(message)
            on_done(len(part))
            sheets.extend(part)
    return sheets


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()
