"""Where Phase 1's per-file work runs (`executor` setting; README, "Beyond one machine").

  threads    (default) the reading pool in this process (excel.pool.ReadAhead); the new
             files of a table are then normalised together, in this process
  processes  a pool of worker processes (forkserver: no copy of this process's state), one
             per `workers`; each runs collect.filetask on a file
  dask       dask.distributed: `scheduler` (tcp://HOST:PORT), else DASK_SCHEDULER_ADDRESS,
             else a LocalCluster of `workers` processes on 127.0.0.1. The workers must see
             the plant's folders at the same paths (a shared disk)

A worker writes its file's rows as an Arrow IPC segment in the run's scratch folder and
returns a FileOutcome (plain data): no table travels back. Dask tasks are submitted with
pure=False: a changed file is never served from a cached task result.

A unit of work is a batch of one table's consecutive files (`batches`: largest first, down
to one file), not one file: on a LocalCluster each Dask task costs ~1.7 ms of the
scheduler's CPU in this process and ~0.7 ms of a worker's, besides the task, while a 700-row
file's task is ~8 ms; one task per file made the cluster no faster than one worker
(BENCHMARKS.md, "Executors"). Equal batches left one worker idle at the end for up to a
batch's time; shrinking ones end together.
"""

from __future__ import annotations

import importlib
import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from dpo.collect.cluster import RemotePlan, drop_scratch, fetch_segments, run_tasks
from dpo.collect.filetask import FileOutcome, FileTask
from dpo.config import RowPolicy
from dpo.errors import ConfigError
from dpo.fsio import Fingerprint
from dpo.schema import TableSpec

EXECUTORS = ("threads", "processes", "dask")
SHARE = 2  # collect.executors.batches


class Pending(Protocol):
    def result(self) -> Any: ...


class FileExecutor(Protocol):
    """Runs batches of per-file tasks somewhere else; `submit` returns at once, its result
    is the batch's outcomes in order. `slots`: how many batches run at once."""

    slots: int

    def submit(self, tasks: list[FileTask]) -> Pending: ...
    def close(self) -> None: ...


class ProcessFiles:
    def __init__(self, workers: int) -> None:
        import multiprocessing  # here: the threads executor (the default) never needs them
        from concurrent.futures import ProcessPoolExecutor

        self.slots = workers
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("forkserver"))

    def submit(self, tasks: list[FileTask]) -> Pending:
        return self._pool.submit(run_tasks, tasks)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


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

    def submit(self, tasks: list[FileTask]) -> Pending:
        future: Pending = self._client.submit(run_tasks, tasks, pure=False)
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


def open_executor(kind: str, workers: int, scheduler: str | None) -> FileExecutor | None:
    """The executor named by the setting (None: threads, the in-process path)."""
    if kind == "processes":
        return ProcessFiles(workers)
    if kind == "dask":
        return DaskFiles(workers, scheduler)
    if kind != "threads":
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {kind!r}")
    return None


class _Batch:
    """One submitted batch; its outcomes fetched once (a Dask future's result() fetches
    from the worker on every call)."""

    def __init__(self, pending: Pending) -> None:
        self._pending = pending
        self._outcomes: list[FileOutcome] | None = None

    def outcome(self, index: int) -> FileOutcome:
        if self._outcomes is None:
            self._outcomes = self._pending.result()
        return self._outcomes[index]


class TaskAhead:
    """Files' tasks submitted early (every table's at Phase 1's start) in batches, results
    in file order.

    An outcome is used only if the file still has the size and mtime it had when its task
    ended; otherwise the file's task runs again (as excel.pool.ReadAhead does)."""

    def __init__(self, executor: FileExecutor, scratch_root: Path, policy: RowPolicy, *,
                 max_retries: int, retry_wait: float, remote: RemotePlan | None = None) -> None:
        self.executor = executor
        run = uuid.uuid4().hex
        self.scratch = scratch_root / run
        self.remote = remote.for_run(run) if remote else None  # workers on other machines
        self.policy, self.max_retries, self.retry_wait = policy, max_retries, retry_wait
        self._ahead: dict[Path, tuple[_Batch, int]] = {}
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
        for batch in batches(todo, self.executor.slots):
            submitted = self._submit(batch, spec)
            self._ahead.update((path, (submitted, i)) for i, path in enumerate(batch))

    def run(self, files: list[Path], spec: TableSpec) -> list[FileOutcome]:
        self.prefetch(files, spec)
        outcomes = []
        for path in files:
            ahead = self._ahead.pop(path) if path in self._ahead else None  # None: listed twice
            batch, index = ahead or (self._submit([path], spec), 0)
            outcome = batch.outcome(index)
            if outcome.after != _fingerprint(path):  # changed since its task read it
                outcome = self._submit([path], spec).outcome(0)
            outcomes.append(outcome)
        if self.remote is not None:
            fetch_segments(outcomes, self.scratch, self.remote)
        return outcomes

    def _submit(self, paths: list[Path], spec: TableSpec) -> _Batch:
        return _Batch(self.executor.submit([
            FileTask(path, spec, self.policy, self.max_retries, self.retry_wait, self.scratch,
                     self.remote.source_of(path) if self.remote else None)
            for path in paths]))


def batches(paths: list[Path], slots: int) -> list[list[Path]]:
    """`paths` cut into runs of consecutive files, largest first: each takes 1/(SHARE x slots)
    of the files left, down to one file, so that the slots run out of work together (the
    last batches are a file or two) while a table of n files costs only ~SHARE x slots x
    ln(n) batches. The first batches hold the first files: results are wanted in file order.
    """
    cut, start = [], 0
    while start < len(paths):
        size = -(-(len(paths) - start) // (SHARE * max(1, slots)))  # ceiling division
        cut.append(paths[start:start + size])
        start += size
    return cut


def _fingerprint(path: Path) -> Fingerprint | None:
    try:
        return Fingerprint.of(path)
    except OSError:
        return None
