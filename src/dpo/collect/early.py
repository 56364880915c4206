"""What Phase 1 will read, which executor reads it (`executor = "auto"`), and worker processes
started before the data stack is imported. Stdlib only: the orchestrator calls it between
the no-change check and its first heavy import.

`auto` picks `processes` when there are enough files to read (AUTO_MIN_FILES), two workers
or more and MIN_IDLE_CORES idle cores for them (cores less the load average), else `threads`
(choose_executor says why: on 2 cores, processes only when the machine is nearly idle). A
process pool, `auto`'s or `processes`', is started before the run imports its data stack: a
forkserver imports the read stack once and forks the workers, on other cores, while this
process imports its own.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dpo.config import Paths
from dpo.errors import DpoError
from dpo.excel.discover import discover_with_notes
from dpo.fsio import Fingerprint
from dpo.quality import DataWarning
from dpo.schema import Schema, TableSpec
from dpo.tables.cache import TableCache

# Below this many files to read a pool's start is not paid back: on 2 cores, 42 and 102 demo
# files (700 rows) ran faster or as fast in threads (BENCHMARKS.md, "#22").
AUTO_MIN_FILES = 150
# What a worker needs, imported once by the forkserver: each worker is a fork of it.
PRELOAD = ["dpo.collect.cluster"]


@dataclass
class TablePlan:
    """One dynamic table's source files, discovery notes and the files the cache lacks."""

    files: list[Path]
    notes: list[DataWarning]
    todo: list[Path] = field(default_factory=list)


def plan_table(paths: Paths, schema: Schema, spec: TableSpec, incremental: bool
               ) -> TablePlan | None:
    """The table's files and those to read (a first guess: the table's own pass decides, and
    reads whatever was not read ahead); None when its folder cannot be listed (reported
    when the table is collected)."""
    try:
        files, notes = discover_with_notes(spec, paths.source_dir / spec.path.name)
    except DpoError:
        return None
    if not incremental:
        return TablePlan(files, notes, list(files))
    cache = TableCache(paths.cache_dir, spec.name, schema.fingerprint)
    todo = []
    for path in files:
        try:
            if cache.lookup(path, Fingerprint.of(path)) is None:
                todo.append(path)
        except OSError:
            continue
    return TablePlan(files, notes, todo)


def plan(paths: Paths, schema: Schema, incremental: bool) -> dict[str, TablePlan]:
    """Every dynamic table's plan (plan_table), those whose folder could be listed."""
    found = {spec.name: plan_table(paths, schema, spec, incremental) for spec in schema.dynamic}
    return {name: p for name, p in found.items() if p is not None}


def choose_executor(kind: str, plans: dict[str, TablePlan], workers: int, *,
                    load: float | None = None, cores: int | None = None) -> str:
    """The executor a run uses: the setting, or for `auto` threads or processes.

    A worker process normalises a batch of files in one pass (collect.batchtask): a run's
    batches cost ~1.02-1.06x the CPU of the threads path's one pass over all new files
    (bench/task_cpu.py), while two reader threads use ~1.45 cores (fastexcel's parse holds
    the GIL). On 2 cores, two workers beat threads on the real plant's 242 files when the
    cores are free (1.21x the floor against 1.32x at load 1.0-1.4, 7 rounds; 1.36x against
    1.41x at load 1.1) and lose on a busy machine (1.63x against 1.53x at load 2.2, 2.1x
    against 1.5x at load 3-4; BENCHMARKS.md "#22"). So processes need two workers or more
    and 1.5 idle cores for them (cores less the 1-minute load average: on 2 cores, a load of
    0.5 or less), else threads. `load`: the load average (default: the machine's); `cores`:
    the cores this process may use (default: its affinity).
    """
    if kind != "auto":
        return kind
    todo = sum(len(p.todo) for p in plans.values())
    busy = os.getloadavg()[0] if load is None else load
    spare = (usable_cores() if cores is None else cores) - busy
    if todo < AUTO_MIN_FILES or workers < 2 or min(workers, spare) < MIN_IDLE_CORES:
        return "threads"
    return "processes"


# auto's processes need this many idle cores for their workers (see choose_executor).
MIN_IDLE_CORES = 1.5


def usable_cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


class EarlyPool:
    """A process pool whose workers are being started in a background thread: the
    forkserver imports PRELOAD once (on the other core, while this process imports its own
    stack), then forks `workers` workers, each ready before the first batch is submitted."""

    def __init__(self, workers: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)  # no effect once the server runs
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=context)
        self._failed: BaseException | None = None
        # A submit starts a worker when none is idle: one no-op per worker starts them all.
        # It blocks until the forkserver has forked (after its imports): a thread waits.
        self._starter = threading.Thread(target=self._start, name="dpo-pool-start", daemon=True)
        self._starter.start()

    def _start(self) -> None:
        try:
            for _ in range(self.workers):
                self.pool.submit(os.getpid)
        except (OSError, RuntimeError) as exc:  # no process could be started: said by started()
            self._failed = exc

    def started(self) -> ProcessPoolExecutor:
        """The pool, once every worker was asked for (submits from two threads at once would
        only wait on the pool's lock); what kept a worker from starting is raised here."""
        self._starter.join()
        if self._failed is not None:
            raise self._failed
        return self.pool
