"""Where Phase 1's batch task runs (`executor` setting; README, "Beyond one machine").

  auto       (default) threads or processes, chosen from the files to read (collect.early)
  threads    the reading pool in this process (excel.pool.ReadAhead); the new files of a
             table are then one batch, normalised in this process (collect.batchtask)
  processes  a pool of worker processes (forkserver: no copy of this process's state), one
             per `workers`; each runs collect.batchtask.run_batch on a batch of files (and
             this process, on a thread, until they are up)
  dask       dask.distributed: `scheduler` (tcp://HOST:PORT), else DASK_SCHEDULER_ADDRESS,
             else a LocalCluster of `workers` processes on 127.0.0.1. The workers must see
             the plant's folders at the same paths (a shared disk)

A worker normalises its batch's files in one pass, writes their rows as one Arrow IPC
segment in the run's scratch folder and returns a BatchOutcome (plain data): no table
travels back. Dask tasks are submitted with pure=False: a changed file is never served from
a cached task result.

A unit of work is a batch of one table's consecutive files (`batches`: largest first,
shrinking), not one file: a pass pays Arrow's per-call costs (~300 compute calls, whatever
the rows) once per batch, 2.4-2.9x the CPU of one pass when paid per 700-row file
(BENCHMARKS.md, "#22"); on a LocalCluster each Dask task also costs ~1.7 ms of the
scheduler's CPU in this process and ~0.7 ms of a worker's. Equal batches left one worker
idle at the end for up to a batch's time; shrinking ones end together.
"""

from __future__ import annotations

import importlib
import os
import shutil
import threading
import uuid
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from loguru import logger

from dpo.collect.batchtask import BatchOutcome, BatchTask
from dpo.collect.cluster import RemotePlan, drop_scratch, fetch_segments, run_batch_task
from dpo.collect.early import EarlyPool
from dpo.config import RowPolicy
from dpo.errors import ConfigError
from dpo.excel.pool import file_state
from dpo.schema import TableSpec

EXECUTORS = ("auto", "threads", "processes", "dask")
SHARE = 1  # collect.executors.batches (BENCHMARKS.md, "#22": batch one-pass workers)
MIN_BATCH = 4


class Pending(Protocol):
    def result(self) -> Any: ...


class FileExecutor(Protocol):
    """Runs batch tasks somewhere else; `submit` returns at once, its result is the batch's
    outcome. `slots`: how many batches run at once."""

    slots: int

    def submit(self, task: BatchTask) -> Pending: ...
    def close(self) -> None: ...


class ProcessFiles:
    """A pool of worker processes forked from a forkserver that preloaded the read stack;
    `early`: one the orchestrator started before importing its own stack (collect.early).

    Until the workers are up (the forkserver imports the read stack: 0.15-0.25 s on the real
    plant, longer on a busy machine), this process runs the batches submitted so far itself,
    on one thread, largest first: the same task (collect.cluster.run_batch_task), its segment
    written the same way. A batch it started it finishes; the rest go to the pool."""

    def __init__(self, workers: int, early: EarlyPool | None = None) -> None:
        self._early = early or EarlyPool(workers)
        self.slots = self._early.workers
        self._ready = threading.Condition()
        self._waiting: deque[tuple[BatchTask, Future[BatchOutcome]]] = deque()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._feeder = threading.Thread(target=self._feed, name="dpo-pool-feed", daemon=True)
        self._here = threading.Thread(target=self._run_here, name="dpo-batch-here", daemon=True)
        self._feeder.start()
        self._here.start()

    def submit(self, task: BatchTask) -> Pending:
        with self._ready:
            if self._pool is not None:
                return self._pool.submit(run_batch_task, task)
            future: Future[BatchOutcome] = Future()
            self._waiting.append((task, future))
            self._ready.notify_all()
            return future

    def _feed(self) -> None:
        """Once the workers are up, every batch still waiting goes to them; if they could
        not be started, this process runs them all (the outcome is the same)."""
        try:
            pool: ProcessPoolExecutor | None = self._early.started()
        except (OSError, RuntimeError) as exc:
            logger.warning("worker processes could not be started ({}): Phase 1 reads here", exc)
            pool = None
        with self._ready:
            if pool is None:
                return  # _run_here carries on with everything
            self._pool = pool
            moved = list(self._waiting)
            self._waiting.clear()
            self._ready.notify_all()
        for task, future in moved:
            _forward(pool.submit(run_batch_task, task), future)

    def _run_here(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and self._pool is None and not self._closed:
                    self._ready.wait()
                if self._pool is not None or self._closed:
                    return
                task, future = self._waiting.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(run_batch_task(task))
                except Exception as exc:  # noqa: BLE001 - raised where the batch is awaited, as a pool does
                    future.set_exception(exc)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._here.join()  # a batch it runs writes into the scratch folder, removed next
        self._feeder.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _forward(source: Future[BatchOutcome], target: Future[BatchOutcome]) -> None:
    def done(finished: Future[BatchOutcome]) -> None:
        if finished.cancelled():
            target.cancel()
        elif (exc := finished.exception()) is not None:
            target.set_exception(exc)
        else:
            target.set_result(finished.result())

    if target.set_running_or_notify_cancel():
        source.add_done_callback(done)
    else:
        source.cancel()


class DaskFiles:
    def __init__(self, workers: int, scheduler: str | None) -> None:
        try:  # imported here: only a run that asks for Dask pays for it
            distributed: Any = importlib.import_module("distributed")
        except ImportError as exc:
            raise ConfigError("executor dask needs the dask extra: pip install 'dpo[dask]'"
                              ) from exc
        address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
        self._cluster: Any = None
        if address is None:
            self._cluster = local_cluster(distributed, workers)
            address = self._cluster.scheduler_address
        try:
            self._client = distributed.Client(address, set_as_default=False)
        except OSError as exc:
            self.close()
            raise ConfigError(f"no Dask scheduler at {address}: {exc}") from exc
        # The cluster's threads as they are now (none yet: as many as `workers`)
        self.slots = sum(self._client.nthreads().values()) or workers

    def submit(self, task: BatchTask) -> Pending:
        future: Pending = self._client.submit(run_batch_task, task, pure=False)
        return future

    def close(self) -> None:
        if getattr(self, "_client", None) is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()


# dask settings for the LocalCluster dpo starts. MALLOC_TRIM_THRESHOLD_=65536, which dask's
# nannies give their workers (glibc then hands freed memory back at once), made the per-file
# task ~30% slower than in a pool process; None drops it (a value set in the environment
# still wins). The others are diagnostics for dask's dashboard, which dpo does not serve:
# each wakes a worker's event loop, which then takes the GIL from the task (every 10 ms, 20 ms
# and 0.5 s by default); with them two workers' tasks ran ~6% longer (BENCHMARKS.md,
# "Executors").
LOCAL_CLUSTER = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}


def local_cluster(distributed: Any, workers: int) -> Any:
    """A LocalCluster of `workers` processes on 127.0.0.1, with LOCAL_CLUSTER's settings.

    The nannies also write their variables into this process's environment, where every
    process started later would inherit them: restored."""
    import dask

    before = dict(os.environ)
    try:
        with dask.config.set(LOCAL_CLUSTER):
            return distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                            processes=True, host="127.0.0.1",
                                            dashboard_address=None)
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update((k, v) for k, v in before.items() if os.environ.get(k) != v)


def open_executor(kind: str, workers: int, scheduler: str | None,
                  early: EarlyPool | None = None) -> FileExecutor | None:
    """The executor named by the setting, `auto` already chosen (collect.early.choose_executor);
    None: threads, the in-process path."""
    if kind == "processes":
        return ProcessFiles(workers, early)
    if kind == "dask":
        return DaskFiles(workers, scheduler)
    if kind != "threads":
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {kind!r}")
    return None


class _Batch:
    """One submitted batch; its outcome fetched once (a Dask future's result() fetches from
    the worker on every call)."""

    def __init__(self, paths: list[Path], pending: Pending) -> None:
        self.paths = paths
        self._pending = pending
        self._outcome: BatchOutcome | None = None

    def outcome(self) -> BatchOutcome:
        if self._outcome is None:
            self._outcome = self._pending.result()
        return self._outcome


class TaskAhead:
    """Tables' batches submitted early (every table's at Phase 1's start), outcomes in file
    order.

    A batch's outcome is used only if each of its files still has the size and mtime it had
    when the batch read it; otherwise the batch runs again (as excel.pool.ReadAhead reads a
    file again): its files are normalised together, so a file is never re-read alone."""

    def __init__(self, executor: FileExecutor, scratch_root: Path, policy: RowPolicy, *,
                 max_retries: int, retry_wait: float, remote: RemotePlan | None = None) -> None:
        self.executor = executor
        run = uuid.uuid4().hex
        self.scratch = scratch_root / run
        self.remote = remote.for_run(run) if remote else None  # workers on other machines
        self.policy, self.max_retries, self.retry_wait = policy, max_retries, retry_wait
        self._ahead: dict[Path, _Batch] = {}
        shutil.rmtree(scratch_root, ignore_errors=True)  # what a killed run left

    def __enter__(self) -> TaskAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.executor.close()
            if self.remote is not None:
                drop_scratch(self.remote)
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def prefetch(self, files: list[Path], spec: TableSpec) -> None:
        todo = [path for path in dict.fromkeys(files) if path not in self._ahead]
        for paths in batches(todo, self.executor.slots):
            submitted = self._submit(paths, spec)
            self._ahead.update((path, submitted) for path in paths)

    def run(self, files: list[Path], spec: TableSpec) -> list[BatchOutcome]:
        """The batches of `files`, in order: those submitted ahead where they hold exactly the
        next files, a new batch for files that no such batch holds."""
        self.prefetch(files, spec)
        outcomes, start = [], 0
        while start < len(files):
            end = start + 1
            batch = self._ahead.get(files[start])
            if batch is not None and files[start:start + len(batch.paths)] == batch.paths:
                end = start + len(batch.paths)
            else:  # files listed twice, or cut otherwise than asked for: a batch of their own
                while end < len(files) and not self._fits(files, end):
                    end += 1
                batch = self._submit(files[start:end], spec)
            for path in batch.paths:
                self._ahead.pop(path, None)
            outcome = batch.outcome()
            if _stale(outcome, batch.paths):
                outcome = self._submit(batch.paths, spec).outcome()
            outcomes.append(outcome)
            start = end
        if self.remote is not None:
            fetch_segments(outcomes, self.scratch, self.remote)
        return outcomes

    def _fits(self, files: list[Path], start: int) -> bool:
        batch = self._ahead.get(files[start])
        return batch is not None and files[start:start + len(batch.paths)] == batch.paths

    def _submit(self, paths: list[Path], spec: TableSpec) -> _Batch:
        remote = tuple(self.remote.source_of(p) for p in paths) if self.remote else ()
        return _Batch(paths, self.executor.submit(BatchTask(
            tuple(paths), spec, self.policy, self.max_retries, self.retry_wait, self.scratch,
            remote)))


def batches(paths: list[Path], slots: int) -> list[list[Path]]:
    """`paths` cut into runs of consecutive files, largest first: each takes 1/(SHARE x slots)
    of the files left, at least MIN_BATCH, so that the slots run out of work together (the
    last batches are small) while a table of n files costs only ~SHARE x slots x ln(n / MIN_BATCH)
    batches. The first batches hold the first files: results are wanted in file order.
    """
    cut, start = [], 0
    while start < len(paths):
        left = len(paths) - start
        size = max(MIN_BATCH, -(-left // (SHARE * max(1, slots))))  # ceiling division
        cut.append(paths[start:start + size])
        start += size
    return cut


def _stale(outcome: BatchOutcome, paths: list[Path]) -> bool:
    """Whether a file the batch read (up to the first that failed) changed since."""
    for read, path in zip(outcome.files, paths, strict=True):
        if read.after != file_state(path):
            return True
        if read.error is not None:
            return False  # the files after it were not read
    return False
